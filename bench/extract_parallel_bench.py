"""A project's extraction with its families one at a time and two at a time (``SNDS_PARALLEL_FAMILIES`` 1 and 2),
side by side in one run, through the real command (``snds extract``, so Dagster's run and the asset's checks are in).

A delivery of ``--patients`` generated patients (every packaged family) is received with ``snds ingest``; a project
(``wide``) is granted every family it brings, its cohort the persons with a diabetes ALD (E10, E11). The project is
then extracted again and again, the two settings alternating which goes first. The cohort step is the same in both
and is not counted: the seconds read are the ``extract`` step's, from the command's own timestamps.

Usage:
    .venv/bin/python bench/extract_parallel_bench.py --patients 100000 --reps 3 --workdir /tmp/snds-xpar-bench \
        --out bench/results/extract_parallel.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from benchenv import REPO, cli_env, generator_version

SNDS = str(Path(sys.executable).with_name("snds"))
DELIVERY = "2024-03-01"
PROJECT = "wide"
STEP = re.compile(r"^(\d\d:\d\d:\d\d)\s+(…|✓) extract$")


def prepare(workdir: Path, patients: int, seed: int) -> dict:
    """Generate and receive the delivery, write the project's request (what is made is kept for later runs)."""
    env = cli_env(workdir)
    stamp = workdir / "extract_parallel.json"
    wanted = {"patients": patients, "seed": seed, "generator": generator_version()}
    if not stamp.exists() or json.loads(stamp.read_text()) != wanted:
        shutil.rmtree(workdir / "home", ignore_errors=True)
        shutil.rmtree(workdir / "landing", ignore_errors=True)
        workdir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps(wanted))
    if not (workdir / "landing" / DELIVERY / "manifest.json").exists():
        subprocess.run([SNDS, "generate", "--delivery-id", DELIVERY, "--patients", str(patients), "--seed", str(seed)],
                       env=env, check=True, stdout=subprocess.DEVNULL)
    report = workdir / "home" / "lake" / "reports" / "deliveries" / f"{DELIVERY}.json"
    if not report.exists():
        subprocess.run([SNDS, "ingest", DELIVERY], env=env, check=True, stdout=subprocess.DEVNULL)
    families = sorted(json.loads(report.read_text())["tables"])
    sys.path.insert(0, str(REPO))
    from snds_assets.catalog import Catalog
    from snds_assets.config import Settings

    catalog = Catalog.load(Settings.from_env(env=env).schemas)  # the catalog the commands read
    granted = list(dict.fromkeys(catalog.resolve(name)[0].name for name in families))
    projects = workdir / "home" / "projects"
    projects.mkdir(parents=True, exist_ok=True)
    (projects / f"{PROJECT}.yaml").write_text(
        f"id: {PROJECT}\ntitle: Bench, every family of the delivery\nperiod: {{start: 2022-01-01, end: 2023-12-31}}\n"
        f"tables: [{', '.join(granted)}]\ncohort:\n  criteria:\n    any_of:\n      - ald: {{icd10: [E10, E11]}}\n")
    return {**env, "SNDS_PROJECTS": str(projects)}


def extract(env: dict, parallel: int) -> tuple[float, float, str]:
    """The extract step's seconds, the whole command's, and its summary line."""
    t0 = time.perf_counter()
    done = subprocess.run([SNDS, "extract", PROJECT], env={**env, "SNDS_PARALLEL_FAMILIES": str(parallel)},
                          capture_output=True, text=True)
    whole = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"snds extract failed ({done.returncode}): {done.stderr[-2000:]}")
    lines = (done.stdout + done.stderr).splitlines()
    stamps = {m.group(2): m.group(1) for m in map(STEP.match, lines) if m}
    start, end = (datetime.strptime(stamps[k], "%H:%M:%S") for k in ("…", "✓"))
    summary = next(line for line in lines if line.startswith(f"project {PROJECT}:"))
    return (end - start).total_seconds() % 86400, whole, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workdir", default="/tmp/snds-xpar-bench")
    parser.add_argument("--out", help="write the results as markdown here")
    args = parser.parse_args()
    env = prepare(Path(args.workdir), args.patients, args.seed)
    load_before = os.getloadavg()[0]
    runs: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    summaries = set()
    for rep in range(args.reps):
        for parallel in ((1, 2) if rep % 2 == 0 else (2, 1)):
            step, whole, summary = extract(env, parallel)
            runs[parallel].append((step, whole))
            summaries.add(summary)
            print(f"rep {rep + 1}, {parallel} at a time: extract step {step:.0f} s, command {whole:.1f} s", flush=True)
    load_after = os.getloadavg()[0]
    median = {p: statistics.median(s for s, _ in r) for p, r in runs.items()}
    pairs = [f"{a[0] / b[0]:.2f}" for a, b in zip(runs[1], runs[2])]
    lines = [
        "# Extraction, families one at a time and two at a time",
        "",
        f"Command: `.venv/bin/python bench/extract_parallel_bench.py --patients {args.patients} --seed {args.seed} "
        f"--reps {args.reps} --workdir {args.workdir}`",
        "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, Spark local[*]; "
        f"{datetime.now().date()}; load average {load_before:.1f} before, {load_after:.1f} after.",
        "",
        f"Project: every family of a generated delivery of {args.patients:,} patients; "
        + "; ".join(sorted(summaries)),
        "",
        "| SNDS_PARALLEL_FAMILIES | extract step, s (each repetition) | median | whole command, s |",
        "|---|---|---|---|",
        *(f"| {p} | {', '.join(f'{s:.0f}' for s, _ in r)} | {median[p]:.0f} | {', '.join(f'{w:.1f}' for _, w in r)} |"
          for p, r in runs.items()),
        "",
        f"One at a time / two at a time, extract step: {median[1] / median[2]:.2f} (medians); per repetition "
        f"{', '.join(pairs)}. Timestamps are to the second.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
