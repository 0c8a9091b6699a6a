"""Where (b)'s extra work goes, query by query: the executors' CPU seconds of every SQL execution of (a) and (b)
of ``ingest_bench`` (Spark's task metrics, read from the status REST API), per table, repetition after
repetition in one JVM. Task CPU time is less moved by the machine's other load than wall time, and it leaves out
the driver, the archive (Python) and the JIT compiler: it says which queries cost more, not the whole ratio.

Families are worked on one at a time by default (``--parallel-families``), so that each query runs alone. (b)'s
queries are named as the product names them in Spark's UI (``delivery D: ER_PRS_F keys and links``: its family and
step, the deferred links' included), (a)'s by their table.

    .venv/bin/python bench/ingest_queries.py --workdir /tmp/cur_bench --reps 3
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ingest_bench as bench  # noqa: E402

UI_PORT = 4079


class TaskMetrics:
    """Executors' CPU seconds per SQL execution, from the Spark UI's REST API of this session."""

    def __init__(self, spark):
        # The UI's own address: Spark takes the next port when UI_PORT is busy (another session's UI).
        self._base = f"{spark.sparkContext.uiWebUrl}/api/v1/applications/{spark.sparkContext.applicationId}"
        self._seen: set[int] = set()

    def _get(self, path: str):
        with urllib.request.urlopen(f"{self._base}/{path}") as answer:
            return json.load(answer)

    def new_executions(self) -> list[tuple[str, float]]:
        """(description, task CPU seconds) of each execution started since the last call, in order."""
        stages = defaultdict(float)
        for s in self._get("stages"):
            stages[s["stageId"]] += (s["executorCpuTime"] + s["executorDeserializeCpuTime"]) / 1e9
        jobs = {j["jobId"]: j["stageIds"] for j in self._get("jobs")}
        out = []
        for e in sorted(self._get("sql?details=false&length=1000000"), key=lambda e: e["id"]):
            if e["id"] in self._seen:
                continue
            self._seen.add(e["id"])
            stage_ids = {s for j in e["runningJobIds"] + e["successJobIds"] + e["failedJobIds"] for s in jobs.get(j, [])}
            out.append((e["description"], sum(stages[s] for s in stage_ids)))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.delivery_arguments(parser, reps=3, parallel_families=1)
    parser.add_argument("--min-seconds", type=float, default=0.1, help="leave out queries cheaper than this")
    args = parser.parse_args()

    from snds_assets.spark import build_session

    workdir = Path(args.workdir)
    settings, catalog, manifest = bench.prepare(workdir, args.patients, args.seed, None, args.parallel_families)
    spark = build_session("local[*]", conf={
        "spark.ui.enabled": "true", "spark.ui.port": str(UI_PORT), "spark.ui.retainedJobs": "1000000",
        "spark.ui.retainedStages": "1000000", "spark.sql.ui.retainedExecutions": "1000000"})
    metrics = TaskMetrics(spark)
    schemas = bench.read_schemas(catalog, manifest, settings.landing)
    bench.warm_page_cache(manifest, settings.landing)
    rows: dict[tuple[str, int, str], list[float]] = {}
    try:
        for rep in range(args.reps):
            metrics.new_executions()
            bench.plain(spark, schemas, manifest, workdir / "plain")
            a = metrics.new_executions()
            bench.ours(spark, settings, catalog, manifest)
            b = metrics.new_executions()
            print(f"rep {rep + 1}: task CPU s (a) {sum(c for _, c in a):.1f} in {len(a)} queries, "
                  f"(b) {sum(c for _, c in b):.1f} in {len(b)}", flush=True)
            for side, executions in (("a", a), ("b", b)):
                seen: dict[str, int] = defaultdict(int)
                for description, cpu in executions:
                    rows.setdefault((side, seen[description], description), []).append(cpu)
                    seen[description] += 1
    finally:
        spark.stop()
    print("\nquery (n-th of its table) | task CPU s per repetition")
    for (side, nth, description), cpus in rows.items():
        if max(cpus) >= args.min_seconds:
            print(f"({side}) {description} #{nth + 1} | " + " ".join(f"{c:.2f}" for c in cpus))


if __name__ == "__main__":
    main()
