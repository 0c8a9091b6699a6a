"""What ``orphaned_children`` adds to the reception of a full IR_BEN_R, side by side in one run.

A delivery of ``--patients`` generated patients (every packaged family) is received with ``snds ingest`` (the real
reception run). Two deliveries of IR_BEN_R alone, ``full``, then follow, made from its file: (same) every identity
again, the usual case, where the check is one query comparing the state without and with this delivery on every
link's columns at once and reads no child; (dropped) ``--drop`` of the identities left out, where the keys that left
the state are then found per kind of link and the children's partitions read for them. Each is archived once,
then, in one Spark session, curated (IR_BEN_R) and checked (``check_orphaned_children``) again and again with a
fresh state, the two alternating (once each first, not counted).

Printed (and written as markdown to ``--out``): seconds of IR_BEN_R's curation and of the check per variant, the
check's share of the two, and its verdicts.

Usage:
    .venv/bin/python bench/orphans_bench.py --patients 100000 --reps 3 --workdir /tmp/snds-orphans-bench \
        --out bench/results/orphans.md
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)

from benchenv import cli_env, generator_version  # noqa: E402
from snds_assets.catalog import Catalog  # noqa: E402
from snds_assets.config import Settings  # noqa: E402
from snds_assets.reception.storage import read_manifest  # noqa: E402

FIRST = "2024-01-01"
VARIANTS = {"same": "2024-02-01", "dropped": "2024-03-01"}
SNDS = str(Path(sys.executable).with_name("snds"))


def prepare(workdir: Path, patients: int, seed: int, drop: float) -> dict:
    """Generate and receive the first delivery, then write the two IR_BEN_R deliveries (what is made is kept)."""
    env = cli_env(workdir)
    stamp = workdir / "orphans.json"
    wanted = {"patients": patients, "seed": seed, "generator": generator_version(), "drop": drop}
    if not stamp.exists() or json.loads(stamp.read_text()) != wanted:
        shutil.rmtree(workdir / "home", ignore_errors=True)
        shutil.rmtree(workdir / "landing", ignore_errors=True)
        stamp.write_text(json.dumps(wanted))
    landing = workdir / "landing"
    if not (landing / FIRST / "manifest.json").exists():
        subprocess.run([SNDS, "generate", "--delivery-id", FIRST, "--patients", str(patients), "--seed", str(seed)],
                       env=env, check=True, stdout=subprocess.DEVNULL)
    report = workdir / "home" / "lake" / "reports" / "deliveries" / f"{FIRST}.json"
    if not report.exists() or json.loads(report.read_text()).get("status") != "accepted":
        t0 = time.perf_counter()
        subprocess.run([SNDS, "ingest", FIRST], env=env, check=True, stdout=subprocess.DEVNULL)
        print(f"received {FIRST} in {time.perf_counter() - t0:.0f} s", flush=True)
    manifest = json.loads((landing / FIRST / "manifest.json").read_text())
    (entry,) = [t for t in manifest["tables"] if t["table"] == "IR_BEN_R"]
    lines: list[bytes] = []
    for f in entry["files"]:
        data = (landing / FIRST / f["path"]).read_bytes()
        data = gzip.decompress(data) if f["path"].endswith(".gz") else data
        rows = data.splitlines(keepends=True)
        header, lines = rows[0], lines + rows[1:]
    rng = random.Random(seed)
    for variant, delivery_id in VARIANTS.items():
        folder = landing / delivery_id
        if (folder / "manifest.json").exists():
            continue
        kept = [line for line in lines if variant == "same" or rng.random() >= drop]
        data = header + b"".join(kept)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "IR_BEN_R.csv").write_bytes(data)
        (folder / "manifest.json").write_text(json.dumps({
            "delivery_id": delivery_id, "producer": "CNAM", "format": manifest.get("format", {}),
            "tables": [{"table": "IR_BEN_R", "mode": "full", "files": [{
                "path": "IR_BEN_R.csv", "rows": len(kept), "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data)}]}]}))
    return env


def receive(spark, settings: Settings, catalog: Catalog, manifest, archived: list) -> dict:
    """IR_BEN_R curated with a fresh state, then its orphaned_children check: seconds of each and the verdict."""
    from snds_assets.curation.curate import curate_family
    from snds_assets.curation.orphaned import check_orphaned_children
    from snds_assets.curation.state import CurrentState

    state = CurrentState(spark, settings, catalog)
    try:
        t0 = time.perf_counter()
        results = curate_family(spark, settings, catalog, manifest, archived, state)
        t1 = time.perf_counter()
        check_orphaned_children(settings, catalog, manifest, results, state, ["IR_BEN_R"])
        t2 = time.perf_counter()
    finally:
        state.close()
    (check,) = [c for c in results[0].checks if c.name == "orphaned_children"]
    return {"curation": t1 - t0, "check": t2 - t1, "rows": results[0].rows_curated,
            "verdict": (check.evaluated, check.failures, check.details)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--drop", type=float, default=0.01, help="share of IR_BEN_R's identities left out")
    parser.add_argument("--reps", type=int, default=3, help="alternate the two variants this many times")
    parser.add_argument("--workdir", default="/tmp/snds-orphans-bench")
    parser.add_argument("--out", default=None, help="write the results as markdown here")
    args = parser.parse_args()

    from snds_assets.reception.archive import archive_family, archive_manifest
    from snds_assets.spark import build_session

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    env = prepare(workdir, args.patients, args.seed, args.drop)
    settings = Settings.from_env(env={}, home=env["SNDS_HOME"], landing=env["SNDS_LANDING"])
    catalog = Catalog.load(settings.schemas)
    load_before = os.getloadavg()
    spark = build_session("local[*]")
    deliveries = {}
    for variant, delivery_id in VARIANTS.items():
        manifest = read_manifest(settings.landing, delivery_id)
        archive_manifest(settings, delivery_id)
        deliveries[variant] = (manifest, archive_family(settings, catalog, manifest, "IR_BEN_R"))
    for variant in VARIANTS:  # warm-up, not counted: the JVM compiles Spark's code on first use
        receive(spark, settings, catalog, *deliveries[variant])
    runs: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
    for rep in range(args.reps):
        for variant in (list(VARIANTS) if rep % 2 == 0 else list(reversed(VARIANTS))):
            run = receive(spark, settings, catalog, *deliveries[variant])
            runs[variant].append(run)
            print(f"rep {rep + 1} {variant}: curation {run['curation']:.1f} s, check {run['check']:.1f} s", flush=True)
    spark.stop()
    report = render(args, runs, load_before, os.getloadavg())
    print(report)
    if args.out:
        Path(args.out).write_text(report)


def render(args, runs: dict[str, list[dict]], load_before, load_after) -> str:
    lines = [
        "# orphaned_children: its cost on a full IR_BEN_R", "",
        "Command:", "", "```",
        f".venv/bin/python bench/orphans_bench.py --patients {args.patients} --seed {args.seed} --drop {args.drop} "
        f"--reps {args.reps} --workdir {args.workdir}" + (f" --out {args.out}" if args.out else ""), "```", "",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine: {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, Spark local[*]; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after.", "",
        f"State: delivery {FIRST} of {args.patients:,} generated patients, every packaged family, received. Then "
        f"IR_BEN_R alone, full: {VARIANTS['same']} every identity again ({runs['same'][-1]['rows']:,} rows), "
        f"{VARIANTS['dropped']} without {100 * args.drop:g} % of them ({runs['dropped'][-1]['rows']:,} rows); "
        "each curated and checked again and again, alternating (once each first, not counted).", "",
        "| variant | IR_BEN_R curation (s) | orphaned_children (s) | check / (curation + check), median |",
        "|---|---|---|---|",
    ]
    for variant, rows in runs.items():
        share = statistics.median(r["check"] / (r["curation"] + r["check"]) for r in rows)
        curation = ", ".join(f"{r['curation']:.1f}" for r in rows)
        check = ", ".join(f"{r['check']:.1f}" for r in rows)
        lines.append(f"| {variant} | {curation} | {check} | {100 * share:.0f} % |")
    lines += ["", "Verdicts (evaluated, failures, details):", ""]
    for variant, rows in runs.items():
        lines.append(f"- {variant}: {rows[-1]['verdict']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
