"""Regenerate the README's screenshots: `snds ui` on a throw-away SNDS_HOME, one synthetic delivery received
through the UI's GraphQL API, then the pages photographed in headless Debian Chromium.

    .venv/bin/python docs/screenshots/make.py [--patients 200] [--tables all] [--no-defects] [--keep]

Needs /usr/bin/chromium (apt-get install -y chromium) and the dev extras (playwright). The same page helpers
as snds_assets_tests/test_browser.py take the pictures, so what the README shows is what the tests check.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from snds_assets.lake import Lake  # noqa: E402
from snds_assets_tests import ui_support  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200, help="persons in the synthetic delivery (default 200)")
    parser.add_argument("--tables", default=",".join(ui_support.TABLES),
                        help="families to deliver, comma-separated, or 'all' (default: the tests' few families)")
    parser.add_argument("--defects", action=argparse.BooleanOptionalAction, default=True,
                        help="inject the generator's documented defects, so that checks fail and show their "
                             "samples (default: yes)")
    parser.add_argument("--check", default="primary_key", help="the check of curated/ER_PRS_F to open")
    parser.add_argument("--out", type=Path, default=HERE, help="where the PNG files go (default: this folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary SNDS_HOME and print where it is")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    tables = None if args.tables == "all" else tuple(t.strip() for t in args.tables.split(",") if t.strip())
    home = Path(tempfile.mkdtemp(prefix="snds-screenshots-")) / "snds"
    server = ui_support.start_ui(home)
    try:
        for name in ("cnam_deliveries", "project_requests"):
            server.stop_sensor(name)
        ui_support.generate_delivery(home, patients=args.patients, tables=tables, defects=args.defects)
        delivery = ui_support.DELIVERY_ID
        server.add_partition("deliveries", delivery)
        print(f"receiving delivery {delivery} through the UI ({server.url})", flush=True)
        run = server.wait_for_run(server.launch(
            "reception", delivery, ui_support.reception_selection(server.settings, delivery)))
        if run["status"] != "SUCCESS":
            print("\n".join(server.run_failures(run["runId"])), file=sys.stderr)
            return 1
        args.out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = ui_support.launch_chromium(playwright)
            page = ui_support.new_ui_page(browser, server)
            ui_support.show_asset_graph(page, server, args.out / "asset-graph.png")
            ui_support.show_lineage(page, server, ["curated", "ER_PHA_F"], args.out / "asset-lineage.png")
            ui_support.show_checks(page, server, ["curated", "ER_PRS_F"], args.check, args.out / "checks.png")
            ui_support.show_check_explanation(page, args.out / "check-sample.png")
            report = Path(Lake(server.settings.lake).delivery_report(delivery, "html"))
            ui_support.show_report(browser, report, args.out / "report.png")
            browser.close()
        for name in ("asset-graph", "asset-lineage", "checks", "check-sample", "report"):
            print(args.out / f"{name}.png")
    finally:
        server.stop()
        if args.keep:
            print(f"SNDS_HOME kept: {home}")
        else:
            shutil.rmtree(home.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
