"""(a) and (b) of ``ingest_bench`` alone, in a fresh JVM, with optional extra JVM options: a quick side-by-side
check of one change to the Spark session (a garbage collector, a setting) without the pandera part.

Run it once per variant; each run prints, per repetition, both wall times and CPU seconds and their ratios.

    .venv/bin/python bench/ingest_pair.py --workdir /tmp/cur_bench --reps 2
    .venv/bin/python bench/ingest_pair.py --workdir /tmp/cur_bench --reps 2 --java-options="-XX:+UseParallelGC"
    .venv/bin/python bench/ingest_pair.py --workdir /tmp/cur_bench --reps 2 --conf spark.sql.ui.retainedExecutions=1000
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ingest_bench as bench  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.delivery_arguments(parser, reps=2, parallel_families=2)
    parser.add_argument("--java-options", default="", help="added to the driver's JVM options")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="a Spark setting over the session's own (repeatable)")
    args = parser.parse_args()

    conf = {}
    for setting in args.conf:
        key, sep, value = setting.partition("=")
        if not sep:
            parser.error(f"--conf {setting}: KEY=VALUE expected")
        conf[key] = value

    from snds_assets.spark import QUIET_LOG4J, build_session

    workdir = Path(args.workdir)
    settings, catalog, manifest = bench.prepare(workdir, args.patients, args.seed, None, args.parallel_families)
    if args.java_options:
        conf["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile=file:{QUIET_LOG4J} {args.java_options}"
    spark = build_session("local[*]", conf=conf)
    schemas = bench.read_schemas(catalog, manifest, settings.landing)
    bench.warm_page_cache(manifest, settings.landing)
    meter = bench.MemorySampler()
    label = " ".join([args.java_options] + args.conf).strip() or "default"
    try:
        for rep, (plain, plain_cpu, ours, ours_cpu) in enumerate(
                bench.alternate(spark, settings, catalog, manifest, schemas, workdir, meter, args.reps)):
            ours = ours["total"]
            print(f"{label} rep {rep + 1}: (a) {plain:.1f} s {plain_cpu:.0f} CPU s, (b) {ours:.1f} s {ours_cpu:.0f} CPU s,"
                  f" (b)/(a) {ours / plain:.2f}, CPU {ours_cpu / plain_cpu:.2f}", flush=True)
    finally:
        meter.stop()
        spark.stop()


if __name__ == "__main__":
    main()
