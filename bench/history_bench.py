"""What a reception's key checks cost as the lake's history grows: monthly DCIR deliveries, side by side in one run.

``--months`` deliveries of ER_PRS_F and ER_PHA_F are generated, one month of care each (``snds generate --start
--end --tables``; a month's flows are dated from the next month on, so two months in a row share a flow date), and
all but the last are received with ``snds ingest`` (the real reception run). The last is then archived once and
curated again and again in one Spark session, ER_PRS_F then ER_PHA_F, once each way to warm the JVM, then
alternating:

  (pruned) as the product does it: ``primary_key_state`` and ER_PHA_F's foreign key to ER_PRS_F read the earlier
           partitions whose footers' flow-date ranges meet this delivery's (``CurrentState.meeting``);
  (whole)  the same with ``CurrentState.meeting`` made to keep every partition: the whole current state is read,
           as before the change.

Printed: each variant's seconds per family, the checks' details (how many partitions were read) and verdicts.
ER_PHA_F's link is pruned only when ER_PRS_F's state exceeds ``keys.PROBED_PARENT_ROWS`` (1 M rows): a smaller
parent is probed whole during the child's write.

Usage:
    .venv/bin/python bench/history_bench.py --patients 200000 --months 8 --reps 3 --workdir /tmp/snds-history-bench \
        --out bench/results/history.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)

from benchenv import cli_env, generator_version  # noqa: E402
from snds_assets.catalog import Catalog  # noqa: E402
from snds_assets.config import Settings  # noqa: E402
from snds_assets.reception.storage import read_manifest  # noqa: E402

FAMILIES = ("ER_PRS_F", "ER_PHA_F")
SNDS = str(Path(sys.executable).with_name("snds"))


def months(count: int, first: date = date(2023, 1, 1)) -> list[tuple[date, date, str]]:
    """(care start, care end, delivery id) per month: the delivery comes on the first day of the third month."""
    out = []
    for i in range(count):
        year, month = divmod(first.month - 1 + i, 12)
        start = date(first.year + year, month + 1, 1)
        year2, month2 = divmod(start.month - 1 + 1, 12)
        end = date.fromordinal(date(start.year + year2, month2 + 1, 1).toordinal() - 1)
        year3, month3 = divmod(start.month - 1 + 2, 12)
        out.append((start, end, date(start.year + year3, month3 + 1, 1).isoformat()))
    return out


def prepare(workdir: Path, patients: int, count: int, seed: int) -> tuple[dict, list[str]]:
    """Generate the deliveries and receive all but the last (what the same arguments made already is kept)."""
    env = cli_env(workdir)
    stamp = workdir / "history.json"
    wanted = {"patients": patients, "seed": seed, "generator": generator_version()}  # more months later add to those made
    plan = months(count)
    ids = [delivery_id for _, _, delivery_id in plan]
    if not stamp.exists() or json.loads(stamp.read_text()) != wanted:
        shutil.rmtree(workdir / "home", ignore_errors=True)
        shutil.rmtree(workdir / "landing", ignore_errors=True)
        stamp.write_text(json.dumps(wanted))
    for start, end, delivery_id in plan:  # what an interrupted preparation made is kept
        if (workdir / "landing" / delivery_id / "manifest.json").exists():
            continue
        subprocess.run([SNDS, "generate", "--delivery-id", delivery_id, "--patients", str(patients), "--seed",
                        str(seed), "--start", start.isoformat(), "--end", end.isoformat(), "--tables",
                        ",".join(FAMILIES)], env=env, check=True, stdout=subprocess.DEVNULL)
    reports = workdir / "home" / "lake" / "reports" / "deliveries"
    for delivery_id in ids[:-1]:
        report = reports / f"{delivery_id}.json"
        if report.exists() and json.loads(report.read_text()).get("status") == "accepted":
            continue
        t0 = time.perf_counter()
        subprocess.run([SNDS, "ingest", delivery_id], env=env, check=True, stdout=subprocess.DEVNULL)
        print(f"received {delivery_id} in {time.perf_counter() - t0:.0f} s", flush=True)
    return env, ids


def receive_last(spark, settings: Settings, catalog: Catalog, manifest, archived: dict, whole: bool) -> dict:
    """ER_PRS_F then ER_PHA_F of the last delivery curated with a fresh state; seconds and key checks per family."""
    from snds_assets.curation.curate import curate_family
    from snds_assets.curation.state import CurrentState

    state = CurrentState(spark, settings, catalog)
    if whole:
        state.meeting = lambda family, kept, ranges: dict(kept)
    out = {}
    try:
        for family in FAMILIES:
            t0 = time.perf_counter()
            (result,) = curate_family(spark, settings, catalog, manifest, archived[family], state)
            checks = {c.name: c for c in result.checks}
            out[family] = {"seconds": time.perf_counter() - t0, "rows": result.rows_curated,
                           "primary_key_state": (checks["primary_key_state"].failures,
                                                 checks["primary_key_state"].details),
                           "foreign_key": (checks["foreign_key"].failures, checks["foreign_key"].details)}
    finally:
        state.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=200_000)
    parser.add_argument("--months", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3, help="alternate (pruned) and (whole) this many times")
    parser.add_argument("--workdir", default="/tmp/snds-history-bench")
    parser.add_argument("--out", default=None, help="write the results as markdown here")
    args = parser.parse_args()

    from snds_assets.reception.archive import archive_family, archive_manifest
    from snds_assets.spark import build_session

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    env, ids = prepare(workdir, args.patients, args.months, args.seed)
    settings = Settings.from_env(env={}, home=env["SNDS_HOME"], landing=env["SNDS_LANDING"])
    catalog = Catalog.load(settings.schemas)
    manifest = read_manifest(settings.landing, ids[-1])
    load_before = os.getloadavg()
    spark = build_session("local[*]")
    archive_manifest(settings, manifest.delivery_id)
    archived = {family: archive_family(settings, catalog, manifest, family) for family in FAMILIES}
    for variant in ("pruned", "whole"):  # warm-up, not counted: the JVM compiles Spark's code on first use
        receive_last(spark, settings, catalog, manifest, archived, variant == "whole")
    runs: dict[str, list[dict]] = {"pruned": [], "whole": []}
    for rep in range(args.reps):
        for variant in (("pruned", "whole") if rep % 2 == 0 else ("whole", "pruned")):
            run = receive_last(spark, settings, catalog, manifest, archived, variant == "whole")
            runs[variant].append(run)
            print(f"rep {rep + 1} {variant}: " + ", ".join(f"{f} {r['seconds']:.1f} s" for f, r in run.items()),
                  flush=True)
    spark.stop()
    report = render(args, ids, runs, load_before, os.getloadavg())
    print(report)
    if args.out:
        Path(args.out).write_text(report)


def render(args, ids: list[str], runs: dict[str, list[dict]], load_before, load_after) -> str:
    last = runs["pruned"][-1]
    lines = [
        "# Key checks against a growing history", "",
        "Command:", "", "```",
        f".venv/bin/python bench/history_bench.py --patients {args.patients} --months {args.months} --seed {args.seed} "
        f"--reps {args.reps} --workdir {args.workdir}" + (f" --out {args.out}" if args.out else ""), "```", "",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine: {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, Spark local[*]; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after.", "",
        f"Deliveries: {', '.join(ids)} (one month of care each, ER_PRS_F and ER_PHA_F); the first {len(ids) - 1} "
        f"received, then the last curated again and again (once each way first, not counted). Rows curated in the last: "
        + ", ".join(f"{f} {r['rows']:,}" for f, r in last.items()) + ".", "",
        "| family | pruned (s) | whole state (s) | whole / pruned (median of pairs) |", "|---|---|---|---|",
    ]
    for family in FAMILIES:
        pruned = [r[family]["seconds"] for r in runs["pruned"]]
        whole = [r[family]["seconds"] for r in runs["whole"]]
        ratio = statistics.median(w / p for w, p in zip(whole, pruned))
        lines.append(f"| {family} | {', '.join(f'{s:.1f}' for s in pruned)} | {', '.join(f'{s:.1f}' for s in whole)} "
                     f"| {ratio:.2f} |")
    lines += ["", "Verdicts (failures, details), the same both ways:", ""]
    for family in FAMILIES:
        for variant in ("pruned", "whole"):
            r = runs[variant][-1][family]
            lines.append(f"- {family} {variant}: primary_key_state {r['primary_key_state']}; "
                         f"foreign_key {r['foreign_key']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
