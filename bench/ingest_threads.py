"""Where (b)'s extra CPU goes beyond its queries: the CPU seconds of (a) and (b) of ``ingest_bench`` per kind of
thread of the Spark JVM (tasks, the driver's own threads, the JIT compilers, the garbage collector, the rest) and of
this Python process (the archive, the driver's Python), repetition after repetition in one JVM.

``ingest_queries.py`` gives the executors' task CPU per query; it leaves out the driver (planning, optimising,
generating code), the JIT compiler and the collector, which this counts from ``/proc/<jvm>/task/*/stat``, sampled
every ``--interval`` seconds and at each phase's start and end (a thread that ends between two samples loses at most
one interval of its CPU).

    .venv/bin/python bench/ingest_threads.py --workdir /tmp/cur_bench --reps 3 --out /tmp/threads.md
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ingest_bench as bench  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
# JVM thread names as Linux keeps them (15 characters), to the groups reported.
GROUPS = [
    (r"Executor task", "tasks (executor threads)"),
    (r"C2 CompilerThre", "JIT: C2"),
    (r"C1 CompilerThre", "JIT: C1"),
    (r"GC Thread|G1 ", "garbage collector"),
    (r"Thread-\d+$", "driver (Py4J calls: plan, optimise, generate code, schedule)"),
    (r"dag-scheduler|dispatcher|task-result|spark-listener|shuffle-|broadcast-|element-track",
     "Spark scheduler and services"),
]
PYTHON = "Python process (archive, driver's Python)"
ORDER = [g for _, g in GROUPS] + ["other JVM threads", PYTHON]


def group(name: str) -> str:
    for pattern, label in GROUPS:
        if re.match(pattern, name):
            return label
    return "other JVM threads"


class ThreadCpu:
    """CPU seconds of a process's threads, summed per group while a phase is set."""

    def __init__(self, pid: int, interval: float):
        self.pid, self.interval = pid, interval
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self._last: dict[int, int] = {}
        self._phase: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self) -> dict[int, tuple[str, int]]:
        out = {}
        folder = f"/proc/{self.pid}/task"
        for tid in os.listdir(folder):
            try:
                with open(f"{folder}/{tid}/stat") as handle:
                    stat = handle.read()
            except OSError:  # the thread ended meanwhile
                continue
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            out[int(tid)] = (name, int(fields[11]) + int(fields[12]))  # utime + stime, in clock ticks
        return out

    def _sample(self) -> None:
        now = self._read()
        with self._lock:
            if self._phase is not None:
                for tid, (name, ticks) in now.items():
                    self.seconds[(self._phase, group(name))] += (ticks - self._last.get(tid, 0)) / TICKS
            self._last = {tid: ticks for tid, (_, ticks) in now.items()}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def phase(self, name: str | None) -> None:
        """Close the running phase (its last CPU counted) and start ``name`` (None: none)."""
        self._sample()
        with self._lock:
            self._phase = name

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def jvm_pid() -> int:
    import psutil

    return next(p.pid for p in psutil.Process().children(recursive=True) if p.name() == "java")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.delivery_arguments(parser, reps=3, parallel_families=2)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between two samples of the threads")
    parser.add_argument("--out", default=None, help="write the table as markdown here")
    args = parser.parse_args()

    from snds_assets.spark import build_session

    workdir = Path(args.workdir)
    settings, catalog, manifest = bench.prepare(workdir, args.patients, args.seed, None, args.parallel_families)
    load_before = os.getloadavg()
    spark = build_session("local[*]")
    schemas = bench.read_schemas(catalog, manifest, settings.landing)
    bench.warm_page_cache(manifest, settings.landing)
    meter = ThreadCpu(jvm_pid(), args.interval)
    wall: dict[str, float] = {}
    try:
        for rep in range(1, args.reps + 1):
            for side, run in (("a", lambda: bench.plain(spark, schemas, manifest, workdir / "plain")),
                              ("b", lambda: bench.ours(spark, settings, catalog, manifest))):
                label = f"{side}{rep}"
                before = os.times()
                t0 = time.perf_counter()
                meter.phase(label)
                run()
                meter.phase(None)
                wall[label] = time.perf_counter() - t0
                after = os.times()
                meter.seconds[(label, PYTHON)] += (after.user - before.user) + (after.system - before.system)
                print(f"{label}: {wall[label]:.1f} s", flush=True)
    finally:
        meter.stop()
        spark.stop()
    report = render(args, meter.seconds, wall, load_before, os.getloadavg())
    print(report)
    if args.out:
        Path(args.out).write_text(report)


def render(args, seconds: dict, wall: dict, load_before, load_after) -> str:
    reps = range(1, args.reps + 1)
    labels = [f"{side}{rep}" for rep in reps for side in "ab"]
    head = "| CPU seconds | " + " | ".join(f"({label[0]}) rep {label[1:]}" for label in labels) + " | (b) - (a), last rep |"
    lines = [
        "# Ingestion CPU by thread", "", "Command:", "", "```",
        f".venv/bin/python bench/ingest_threads.py --patients {args.patients} --seed {args.seed} --reps {args.reps} "
        f"--workdir {args.workdir} --parallel-families {args.parallel_families} --interval {args.interval}"
        + (f" --out {args.out}" if args.out else ""),
        "```", "",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine: {os.cpu_count()} cores; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after.", "",
        head, "|---" * (len(labels) + 2) + "|",
    ]
    last_a, last_b = f"a{args.reps}", f"b{args.reps}"
    for name in ORDER:
        cells = [seconds.get((label, name), 0.0) for label in labels]
        diff = seconds.get((last_b, name), 0.0) - seconds.get((last_a, name), 0.0)
        lines.append(f"| {name} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {diff:+.1f} |")
    totals = {label: sum(v for (p, _), v in seconds.items() if p == label) for label in labels}
    lines.append("| **total** | " + " | ".join(f"{totals[label]:.1f}" for label in labels)
                 + f" | {totals[last_b] - totals[last_a]:+.1f} |")
    lines.append("| wall seconds | " + " | ".join(f"{wall[label]:.1f}" for label in labels)
                 + f" | {wall[last_b] - wall[last_a]:+.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
