"""The operator's view in a real browser: headless Debian Chromium on `snds ui`, after a delivery was received.

The delivery carries the generator's documented defects (its ground truth says which checks must fail), so the
pages show what an operator looks for: the flow, a failed check with its failing count and sample, a rejected
delivery's report. Each page is checked for that and saved as a screenshot under the test's temporary output
(docs/screenshots/make.py takes the README's copies with the same helpers).
"""
import json
from pathlib import Path

import pytest

from snds_assets.checks import CURATED_CHECKS, RULE_DESCRIPTIONS
from snds_assets.lake import Lake

from .ui_support import (  # noqa: F401 - fixtures
    DELIVERY_ID, REPORT_VIEWPORT, check_statuses, delivery_run, ground_truth, launch_chromium, new_ui_page, png_size,
    show_asset_graph, show_check_explanation, show_checks, show_lineage, show_report, ui,
)

pytestmark = pytest.mark.timeout(1800)  # the first test waits for the server, the delivery and its Spark run
DEFECTS = True  # read by the `ui` fixture


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture()
def page(browser, ui):
    page = new_ui_page(browser, ui)
    yield page
    page.close()


@pytest.fixture(scope="module")
def defects(ui) -> list[dict]:
    """The injected defects on ER_PRS_F, the table whose dashboard is opened."""
    found = [d for d in ground_truth(ui.home)["defects"] if d["table"] == "ER_PRS_F"]
    assert found, "the generator injected no defect in ER_PRS_F: nothing for the check dashboard to show"
    return found


def _assert_screenshot(path: Path) -> None:
    width, height = png_size(path)
    assert width >= 1200 and height >= 800, (path, width, height)


def test_asset_graph_shows_the_flow(page, ui, delivery_run, shots):
    nodes = show_asset_graph(page, ui, shots / "asset-graph.png")
    assert sorted(nodes) == ["curated", "landing", "projects", "raw", "reports"]
    assert "Global asset lineage" in page.inner_text("body")
    _assert_screenshot(shots / "asset-graph.png")


def test_lineage_of_a_curated_table(page, ui, delivery_run, shots):
    nodes = " ".join(show_lineage(page, ui, ["curated", "ER_PHA_F"], shots / "asset-lineage.png"))
    for expected in ("raw", "ER_PHA_F", "ER_PRS_F", "cohort", "reception"):
        assert expected in nodes, (expected, nodes)
    _assert_screenshot(shots / "asset-lineage.png")


def test_check_dashboard_shows_the_failed_checks(page, ui, delivery_run, defects, shots):
    assert delivery_run["status"] == "SUCCESS", "\n".join(delivery_run["failures"])
    shown = defects[0]
    text = show_checks(page, ui, ["curated", "ER_PRS_F"], shown["rule"], shots / "checks.png")
    names = [name for name, _ in CURATED_CHECKS]
    assert f"Checks ({len(names)})" in text
    statuses = check_statuses(text, names)
    assert set(statuses) == set(names), f"checks without a status in the list: {set(names) - set(statuses)}"
    failed = {d["rule"] for d in defects}
    report = json.loads(Path(Lake(ui.settings.lake).delivery_report(DELIVERY_ID)).read_text(encoding="utf-8"))
    skipped = {"nomenclature", "primary_key_state"}  # SNDS_NOMENCLATURES unset; the family's first delivery
    assert {c["name"] for c in report["tables"]["ER_PRS_F"]["checks"] if not c["evaluated"]} == skipped
    assert not skipped & failed, (skipped, failed)
    for name in names:  # a check not evaluated is Skipped, not Succeeded
        expected = "Failed" if name in failed else "Skipped" if name in skipped else "Succeeded"
        assert statuses[name] == expected, (name, statuses[name])
    assert RULE_DESCRIPTIONS[shown["rule"]].split(".")[0] in text
    _assert_screenshot(shots / "checks.png")

    explanation = show_check_explanation(page, shots / "check-sample.png")
    assert f"{shown['failures']} failing" in explanation
    assert "Sample:" in explanation
    for column in shown["columns"]:
        assert column in explanation, column
    _assert_screenshot(shots / "check-sample.png")


def test_reception_report_opens_from_the_lake(browser, ui, delivery_run, defects, shots):
    assert delivery_run["status"] == "SUCCESS", "\n".join(delivery_run["failures"])
    lake = Lake(ui.settings.lake)
    html = Path(lake.delivery_report(DELIVERY_ID, "html"))
    report = json.loads(Path(lake.delivery_report(DELIVERY_ID)).read_text(encoding="utf-8"))
    text, requested = show_report(browser, html, shots / "report.png")
    assert requested == [html.resolve().as_uri()], "the report must be self-contained (no script, style or image fetched)"
    assert f"delivery {DELIVERY_ID}" in text
    assert report["status"] in text.splitlines()[0]
    for table in report["tables"]:
        assert table in text, table
    row = next(line for line in text.splitlines() if line.startswith("ER_PRS_F\t"))
    assert report["tables"]["ER_PRS_F"]["status"] in row
    for defect in defects:
        assert defect["rule"] in row, (defect["rule"], row)
    assert png_size(shots / "report.png") == (REPORT_VIEWPORT["width"], REPORT_VIEWPORT["height"])
