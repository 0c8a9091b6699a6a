"""Generation throughput (rows per second) and peak memory of the synthetic delivery generator.

    .venv/bin/python bench/generate_bench.py [--patients 10000 100000] [--gzip] [--workdir /tmp/snds-generate-bench]
        [--out bench/results/generate.md]

Each run is a fresh interpreter generating one delivery with the packaged catalog (all its tables, PMSI per
year), so that its peak resident memory (``ru_maxrss`` of the child) is that run's alone. Generation streams
chunks of 2,000 patients: the peak memory should not grow with the number of patients. Results are appended
to ``--out`` (default ``bench/results/generate.md``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import json, resource, sys, time
from snds_assets.catalog import Catalog
from snds_assets.config import PACKAGED_SCHEMAS
from snds_assets.generator import GenerateOptions, generate
patients, out, gz = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
t0 = time.perf_counter()
r = generate(GenerateOptions(out=out, delivery_id="2024-03-01", patients=patients, seed=0,
                             catalog=Catalog.load(PACKAGED_SCHEMAS), gzip=gz))
seconds = time.perf_counter() - t0
size = sum(f.bytes for t in r.manifest.tables for f in t.files)
print(json.dumps({"seconds": seconds, "rows": sum(r.rows.values()), "bytes": size, "tables": len(r.rows),
                  "er_prs_f": r.rows.get("ER_PRS_F", 0),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def run(patients: int, workdir: Path, gz: bool) -> dict:
    out = workdir / f"p{patients}{'-gz' if gz else ''}"
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-c", PROBE, str(patients), str(out), "1" if gz else "0"],
                          capture_output=True, text=True, cwd=REPO, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--workdir", default="/tmp/snds-generate-bench")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "generate.md"), help="results appended here")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    lines = []
    for n in sorted(args.patients):
        load = os.getloadavg()[0]
        r = run(n, workdir, args.gzip)
        line = (f"| {n:,} | {'yes' if args.gzip else 'no'} | {r['tables']} | {r['rows']:,} | {r['er_prs_f']:,} | "
                f"{r['bytes'] / 1e6:,.0f} MB | {r['seconds']:.0f} s | {r['rows'] / r['seconds']:,.0f} | "
                f"{r['peak_rss_mb']} MB | {load:.1f} |")
        print(line, flush=True)
        lines.append(line)
    results = Path(args.out)
    results.parent.mkdir(parents=True, exist_ok=True)
    header = ""
    if not results.exists():
        header = ("# Generator benchmark\n\nCommand: `.venv/bin/python bench/generate_bench.py "
                  "--patients 10000 100000` (packaged catalog, all its tables, care 2022-2023, one process, "
                  "one core).\nPeak RSS: maximum resident memory of the generating process (imports included). "
                  "The machine is shared: the load average at the start of each run is recorded.\n")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with results.open("a", encoding="utf-8") as f:
        f.write(header + f"\n## {stamp} - {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                f"Python {platform.python_version()}\n\n"
                f"`.venv/bin/python bench/generate_bench.py {' '.join(sys.argv[1:])}`\n\n"
                "| patients | gzip | tables | rows | ER_PRS_F rows | size | time | rows/s | peak RSS | load avg |\n"
                "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
