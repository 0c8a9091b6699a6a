"""Ingestion cost, side by side in one run, on a delivery written by ``snds_assets.generator``:

  (a) plain Spark: every delivered CSV read with the same schema as curation reads it, written as Parquet;
  (b) ours: the raw archive (``reception.archive.archive_family``) and ``curation.curate_family`` for every
      family, in foreign-key order: typed Parquet, rejects, every curated check (type, not_null, primary_key,
      primary_key_state, foreign_key, range, domain, rows_reconciled, orphaned_children, which a first delivery
      decides without a query; nomenclature when --nomenclatures), then the links of a cycle
      (``curation.curate.check_deferred_links``);
  (c) pandera.pyspark evaluating the same row-level rules (not_null, unique keys, ranges, domain values,
      enums) on the same typed DataFrames, cached in memory first (the caching is timed apart and not counted).

Ratios: (b)/(a), target <= 1.3; (c)/(validation part of b), target >= 3, where the validation part of (b) is
its curation time minus the plain job's time (what checking adds to typing and writing the same data). (b) does
not time the reception report, its fragments and mark (small JSON and HTML writes) nor a Dagster run's own start.
The memory peak is the resident memory of this process and its Spark JVM, sampled every 0.2 s: (a)'s from its first
repetition (later ones run in the JVM whose heap (b) grew), (c)'s of the pandera worker and its JVM alone.

pandera.pyspark imports pyspark.pandas, which does not import with pandas 3 (the project's venv). Part (c)
therefore runs in a child process of a Python that has pandas 2 on top of the project's packages, made with:

    python3 -m venv /tmp/pandera-venv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/pandera-venv/lib/python3.11/site-packages/zz_main.pth
    /tmp/pandera-venv/bin/pip install "pandas<3"

Usage:
    .venv/bin/python bench/ingest_bench.py --patients 100000 --workdir /tmp/snds-ingest-bench \
        --pandera-python /tmp/pandera-venv/bin/python --out bench/results/ingest.md
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
import threading
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchenv, when this file is imported rather than run

from benchenv import generator_version  # noqa: E402

from snds_assets import domain  # noqa: E402
from snds_assets.catalog import Catalog  # noqa: E402
from snds_assets.config import Settings  # noqa: E402
from snds_assets.curation.columns import csv_options, family_columns, file_columns  # noqa: E402
from snds_assets.reception.manifest import Manifest  # noqa: E402
from snds_assets.reception.storage import read_manifest  # noqa: E402

DELIVERY_ID = "2024-03-01"


# --- memory ---------------------------------------------------------------------------------------------------
class MemorySampler:
    """Peak resident memory of this process and all its children (the Spark JVM), per labelled phase; of one
    process and its children alone while ``root`` names it (the pandera worker, beside the bench's idle JVM)."""

    def __init__(self, interval: float = 0.2):
        import psutil

        self._psutil = psutil
        self.interval = interval
        self.phase = "start"
        self.root: int | None = None
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _rss(self, root: int | None) -> int:
        try:
            me = self._psutil.Process(root)
        except self._psutil.Error:
            return 0
        total = 0
        for p in [me] + me.children(recursive=True):
            try:
                total += p.memory_info().rss
            except self._psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            phase, root = self.phase, self.root  # one reading of both: set root before a phase that needs it
            rss = self._rss(root)
            self.peaks[phase] = max(self.peaks.get(phase, 0), rss)
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def cpu(self) -> float:
        """CPU seconds used so far by this process and its children (user + system)."""
        me = self._psutil.Process()
        total = 0.0
        for p in [me] + me.children(recursive=True):
            try:
                times = p.cpu_times()
            except self._psutil.Error:
                continue
            total += times.user + times.system
        return total


# --- the delivery ----------------------------------------------------------------------------------------------
def delivery_arguments(parser: argparse.ArgumentParser, reps: int, parallel_families: int) -> None:
    """The options this bench and its companions (``ingest_pair``, ``ingest_queries``, ``ingest_threads``) take to
    name the same generated delivery and repeat its measure."""
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reps", type=int, default=reps, help="alternate (a) and (b) this many times")
    parser.add_argument("--workdir", default="/tmp/snds-ingest-bench")
    parser.add_argument("--parallel-families", type=int, default=parallel_families,
                        help="SNDS_PARALLEL_FAMILIES for (b)")


def prepare(workdir: Path, patients: int, seed: int, nomenclatures: str | None,
            parallel_families: int = 2) -> tuple[Settings, Catalog, Manifest]:
    from snds_assets.generator import GenerateOptions, generate

    landing = workdir / "landing"
    settings = Settings.from_env(env={}, home=str(workdir / "home"), landing=str(landing), nomenclatures=nomenclatures,
                                 parallel_families=str(parallel_families))
    catalog = Catalog.load(settings.schemas)
    stamp = workdir / "delivery.json"
    wanted = {"patients": patients, "seed": seed, "nomenclatures": nomenclatures, "generator": generator_version()}
    if not (stamp.exists() and json.loads(stamp.read_text()) == wanted and (landing / DELIVERY_ID / "manifest.json").exists()):
        shutil.rmtree(landing, ignore_errors=True)
        t0 = time.perf_counter()
        generate(GenerateOptions(out=landing, delivery_id=DELIVERY_ID, patients=patients, seed=seed,
                                 catalog=catalog, nomenclatures=nomenclatures))
        print(f"generated {patients} patients in {time.perf_counter() - t0:.0f} s", flush=True)
        stamp.write_text(json.dumps(wanted))
    return settings, catalog, read_manifest(settings.landing, DELIVERY_ID)


def read_schemas(catalog: Catalog, manifest: Manifest, landing: str) -> dict[str, tuple[list[str], object]]:
    """Delivered table -> (files, Spark schema) exactly as curation's CSV read sees them."""
    from pyspark.sql import types as T

    from snds_assets.reception.archive import parse_header

    out = {}
    for delivered in manifest.tables:
        table, _ = catalog.resolve(delivered.table)
        paths = [str(Path(landing) / DELIVERY_ID / f.path) for f in delivered.files]
        with open(paths[0], "rb") as handle:
            header = parse_header(handle.readline(), manifest.format.encoding, manifest.format.delimiter)
        names = file_columns(header, table)
        plans = {p.name: p for p in family_columns(table, manifest.format, names)}
        out[delivered.table] = (paths, T.StructType([T.StructField(n, plans[n].read_type) for n in names]))
    return out


def warm_page_cache(manifest: Manifest, landing: str) -> None:
    for delivered in manifest.tables:
        for f in delivered.files:
            with open(Path(landing) / DELIVERY_ID / f.path, "rb") as handle:
                while handle.read(1 << 24):
                    pass


# --- (a) plain ----------------------------------------------------------------------------------------------------
def plain(spark, schemas: dict, manifest: Manifest, out: Path) -> float:
    opts = {"sep": manifest.format.delimiter, "header": "true", "encoding": csv_options(manifest.format)["encoding"],
            "dateFormat": csv_options(manifest.format)["dateFormat"], "quote": '"', "escape": '"'}
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    for name, (paths, schema) in schemas.items():
        spark.sparkContext.setJobDescription(name)  # names its queries for ingest_queries.py
        spark.read.schema(schema).options(**opts).csv(paths).write.mode("overwrite").parquet(str(out / name))
    elapsed = time.perf_counter() - t0
    spark.sparkContext.setJobDescription(None)
    return elapsed


# --- (b) ours -----------------------------------------------------------------------------------------------------
def ours(spark, settings: Settings, catalog: Catalog, manifest: Manifest) -> dict:
    """What the reception run does (see ``reception.assets.receive``): families archived, curated and checked in
    foreign-key order, ``settings.parallel_families`` at a time, a worker that no family is ready for archiving
    the next one ahead.

    The lake is emptied first, before the clock starts, as ``plain`` empties its output: each repetition is the
    first reception of the delivery, not a reception again over the last repetition's lake, which paid for
    removing that lake's 1.1 GB archive and partitions once the new ones were written and, on a VM whose host
    takes freed memory back (``page_reporting``), for page-cache memory faulted in again (forty-first session: a
    Python copy of ER_PRS_F's 739 MB file took 0.2-1.0 s once its earlier copy was removed, 2.9-6.1 s, nearly all
    system CPU, beside it)."""
    from snds_assets.curation.curate import check_deferred_links, curate_family
    from snds_assets.curation.state import CurrentState
    from snds_assets.reception.archive import archive_family, archive_manifest, families_of
    from snds_assets.domain import acyclic_parents
    from snds_assets.reception.assets import curation_order
    from snds_assets.families import in_dependency_order

    shutil.rmtree(settings.lake, ignore_errors=True)  # the bench's own lake (``prepare``: <workdir>/home/lake)
    parents = acyclic_parents(catalog)
    order = curation_order(list(families_of(catalog, manifest)), parents)
    state = CurrentState(spark, settings, catalog)
    per_family, verdicts, phases = {}, {}, {"archive": 0.0, "curate": 0.0}

    ahead: dict[str, tuple[list, float]] = {}  # families archived before their parents were curated

    def archive(family: str) -> None:
        t0 = time.perf_counter()
        ahead[family] = archive_family(settings, catalog, manifest, family), time.perf_counter() - t0

    def receive(family: str):
        spark.sparkContext.setJobDescription(family)  # this worker thread's queries, for ingest_queries.py
        if family not in ahead:
            archive(family)
        archived, archive_s = ahead.pop(family)
        t1 = time.perf_counter()
        results = curate_family(spark, settings, catalog, manifest, archived, state)
        return results, archive_s, time.perf_counter() - t1

    t_all = time.perf_counter()
    archive_manifest(settings, manifest.delivery_id)
    done: dict[str, list] = {}
    for family, (results, archive_s, curate_s) in in_dependency_order(order, parents, receive,
                                                                      settings.parallel_families, ahead=archive):
        phases["archive"] += archive_s
        phases["curate"] += curate_s
        per_family[family] = round(curate_s, 2)
        done[family] = results
    for family, results in done.items():  # the links of a cycle (T_MCOaaC -> T_MCOaaB), as the run checks them
        t0 = time.perf_counter()
        if check_deferred_links(spark, settings, catalog, manifest, results, state, list(done)):
            seconds = time.perf_counter() - t0
            phases["curate"] += seconds
            per_family[family] = round(per_family[family] + seconds, 2)
    for results in done.values():
        for r in results:
            verdicts[r.delivered_name] = {
                "read": r.rows_read, "curated": r.rows_curated, "rejected": r.rows_rejected,
                "failed": [f"{c.name}:{c.failures}:{c.severity}" for c in r.checks if not c.passed],
            }
    state.close()  # as the run does: a later repetition must not find this one's cached key hashes
    total = time.perf_counter() - t_all
    # With families worked on concurrently, the phases overlap: split the wall time in their proportions.
    share = phases["archive"] / ((phases["archive"] + phases["curate"]) or 1)
    return {"total": total, "archive": total * share, "curate": total * (1 - share),
            "per_family": per_family, "verdicts": verdicts}


# --- (c) pandera ----------------------------------------------------------------------------------------------------
def alternate(spark, settings: Settings, catalog: Catalog, manifest: Manifest, schemas: dict, workdir: Path,
              meter: MemorySampler, reps: int):
    """(a) then (b), ``reps`` times in the same session: per repetition, (a)'s seconds and CPU seconds, (b)'s
    result (see ``ours``) and CPU seconds. The meter's phase names the measure running, for the memory peaks."""
    for rep in range(reps):
        # (a) after a (b) runs in the JVM whose heap (b) grew, which G1 keeps: only the first (a) is its own peak.
        meter.phase = "a" if rep == 0 else "a after b"
        before = meter.cpu()
        a = plain(spark, schemas, manifest, workdir / "plain")
        a_cpu = meter.cpu() - before
        meter.phase = "b"
        before = meter.cpu()
        b = ours(spark, settings, catalog, manifest)
        yield a, a_cpu, b, meter.cpu() - before


def pandera_schema(table, names: list[str], manifest: Manifest):
    """The row-level rules of curation, as pandera.pyspark checks (built-in checks only)."""
    from pandera.pyspark import Check, Column, DataFrameSchema
    from pyspark.sql import types as T

    delivery = date.fromisoformat(manifest.delivery_id[:10])
    plans = {p.name: p for p in family_columns(table, manifest.format, names)}
    required = set(domain.required_columns(table))
    rules = {r.column: r for r in domain.domain_rules(table)}
    columns, evaluated = {}, 0
    for name in names:
        p = plans[name]
        checks = []
        if p.read_type == p.dtype and p.field is not None:  # read as curated by the CSV read (c) and (d) start from
            if isinstance(p.dtype, T.DateType):
                checks.append(Check.in_range(domain.UNKNOWN_DATE, delivery))
            elif isinstance(p.dtype, (T.IntegerType, T.LongType, T.DoubleType)):
                lo, hi = p.field.constraints.get("minimum"), p.field.constraints.get("maximum")
                if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
                    checks.append(Check.in_range(lo, hi))
                elif isinstance(lo, (int, float)):
                    checks.append(Check.ge(lo))
                elif isinstance(hi, (int, float)):
                    checks.append(Check.le(hi))
            if p.field is not None and domain.enum_checked(p.field):
                allowed = [str(v) for v in p.field.constraints["enum"]]
                if not isinstance(p.dtype, T.StringType):
                    allowed = [int(v) for v in allowed if v.lstrip("-").isdigit()]
                checks.append(Check.isin(allowed))
            rule = rules.get(name)
            if rule is not None:
                if rule.values:
                    checks.append(Check.isin(list(rule.values)) if isinstance(p.dtype, T.StringType)
                                  else Check.isin([int(v) for v in rule.values]))
                elif rule.name == "pseudo_nir_length":
                    checks.append(Check.str_length(17, 17))
                elif rule.name == "nir_code":
                    checks.append(Check.str_length(2, 2))
                elif rule.name == "dpn_qlf":
                    checks.append(Check.in_range(0, 99))
        evaluated += len(checks) + (name in required)
        columns[name] = Column(p.read_type, checks=checks, nullable=name not in required)
    unique = list(table.primary_key) if table.primary_key and all(c in names for c in table.primary_key) else None
    evaluated += bool(unique)
    return DataFrameSchema(columns, unique=unique, strict=False), evaluated


def pandera_worker(args) -> None:
    os.environ.setdefault("PANDERA_VALIDATION_DEPTH", "SCHEMA_AND_DATA")
    from snds_assets.spark import build_session

    settings, catalog, manifest = prepare(Path(args.workdir), args.patients, args.seed, args.nomenclatures)
    spark = build_session("local[*]")
    schemas = read_schemas(catalog, manifest, settings.landing)
    opts = {"sep": manifest.format.delimiter, "header": "true", "dateFormat": csv_options(manifest.format)["dateFormat"]}
    cache_s = validate_s = ours_s = 0.0
    checks_total, failed, ours_failed = 0, {}, {}
    for name, (paths, schema) in schemas.items():
        table, _ = catalog.resolve(name)
        t0 = time.perf_counter()
        df = spark.read.schema(schema).options(**opts).csv(paths).cache()
        rows = df.count()
        t1 = time.perf_counter()
        pschema, n = pandera_schema(table, [f.name for f in schema.fields], manifest)
        checked = pschema.validate(df)
        errors = dict(checked.pandera.errors)
        t2 = time.perf_counter()
        found = our_validation(df, table, manifest, rows)
        t3 = time.perf_counter()
        df.unpersist()
        cache_s += t1 - t0
        validate_s += t2 - t1
        ours_s += t3 - t2
        checks_total += n
        if errors:
            failed[name] = sorted({e["check"] for kind in errors.values() for v in kind.values() for e in v})
        if found:
            ours_failed[name] = found
    print(json.dumps({"cache": cache_s, "validate": validate_s, "ours": ours_s, "checks": checks_total,
                      "failed": failed, "ours_failed": ours_failed}))


def our_validation(df, table, manifest: Manifest, rows: int) -> dict[str, int]:
    """(d): the same rules as ``pandera_schema`` the way curation evaluates them, on the same cached DataFrame:
    every row-level rule and not-null count in one aggregation, then the key check (``curation.keys``)."""
    from pyspark.sql import functions as F

    from snds_assets.curation import keys
    from snds_assets.curation.rules import domain_rules, range_rules

    names = df.columns
    delivery = date.fromisoformat(manifest.delivery_id[:10])
    plans = [p for p in family_columns(table, manifest.format, names) if p.name in names and p.read_type == p.dtype]
    delivered = {p.name for p in plans}
    rules = range_rules(plans, delivered, delivery, table) + domain_rules(table, plans, delivered)
    required = [c for c in domain.required_columns(table) if c in names]
    aggs = [F.expr(f"count_if({r.fail})").alias(r.name) for r in rules]
    aggs += [F.count_if(F.col(c).isNull()).alias(f"not_null:{c}") for c in required]
    counts = df.agg(*aggs).collect()[0].asDict() if aggs else {}
    found = {k: int(v) for k, v in counts.items() if v}
    if table.primary_key and all(c in names for c in table.primary_key):
        dup = keys.duplicates(df, list(table.primary_key), yearly=False, rows=rows)
        if dup:
            found["primary_key"] = sum(r.failures for r in dup.values())
    return found


# --- main -----------------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    delivery_arguments(parser, reps=1, parallel_families=2)
    parser.add_argument("--nomenclatures", default=None)
    parser.add_argument("--pandera-python", default=None, help="a Python that imports pandera.pyspark (see above)")
    parser.add_argument("--out", default=None, help="write the results as markdown here")
    parser.add_argument("--pandera-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pandera_worker:
        pandera_worker(args)
        return

    from snds_assets.spark import build_session

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    settings, catalog, manifest = prepare(workdir, args.patients, args.seed, args.nomenclatures, args.parallel_families)
    rows = sum(f.rows for t in manifest.tables for f in t.files)
    size = sum(f.bytes for t in manifest.tables for f in t.files)
    load_before = os.getloadavg()
    memory = MemorySampler()
    spark = build_session("local[*]")
    schemas = read_schemas(catalog, manifest, settings.landing)
    warm_page_cache(manifest, settings.landing)
    plain_runs, our_runs, cpu = [], [], {"a": [], "b": []}
    for rep, (a, a_cpu, b, b_cpu) in enumerate(alternate(spark, settings, catalog, manifest, schemas, workdir, memory,
                                                         args.reps)):
        plain_runs.append(a)
        our_runs.append(b)
        cpu["a"].append(a_cpu)
        cpu["b"].append(b_cpu)
        print(f"rep {rep + 1}: (a) plain {a:.1f} s, {a_cpu:.0f} CPU s; (b) ours {b['total']:.1f} s, {b_cpu:.0f} CPU s "
              f"(archive {b['archive']:.1f}, curate {b['curate']:.1f})", flush=True)
    spark.stop()
    pandera = None
    if args.pandera_python:
        cmd = [args.pandera_python, __file__, "--pandera-worker", "--workdir", args.workdir, "--patients",
               str(args.patients), "--seed", str(args.seed)] + (["--nomenclatures", args.nomenclatures] if args.nomenclatures else [])
        worker = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        memory.root = worker.pid  # spark.stop() leaves the bench's JVM running: not pandera's memory
        memory.phase = "c"
        stdout, stderr = worker.communicate()
        if worker.returncode != 0:
            sys.exit(f"the pandera worker failed ({worker.returncode}): {stderr.strip()[-2000:]}")
        pandera = json.loads(stdout.strip().splitlines()[-1])
        print(f"(c) pandera: validate {pandera['validate']:.1f} s (cache {pandera['cache']:.1f} s); "
              f"(d) ours on the same cached data {pandera['ours']:.1f} s", flush=True)
    memory.stop()
    load_after = os.getloadavg()
    report = render(args, rows, size, plain_runs, our_runs, pandera, memory.peaks, load_before, load_after, cpu)
    print(report)
    if args.out:
        Path(args.out).write_text(report)


def render(args, rows, size, plain_runs, our_runs, pandera, peaks, load_before, load_after, cpu) -> str:
    a = min(plain_runs)
    best = min(our_runs, key=lambda r: r["total"])
    b = best["total"]
    validation = best["curate"] - a
    gib = 1024 ** 3
    plain_list = ", ".join(f"{x:.1f}" for x in plain_runs)
    ours_list = ", ".join(f"{r['total']:.1f}" for r in our_runs)
    lines = [
        "# Ingestion benchmark", "",
        "Command:", "",
        "```",
        f".venv/bin/python bench/ingest_bench.py --patients {args.patients} --seed {args.seed} --reps {args.reps} "
        f"--workdir {args.workdir} --parallel-families {args.parallel_families}" + (f" --pandera-python {args.pandera_python}" if args.pandera_python else "")
        + (f" --nomenclatures {args.nomenclatures}" if args.nomenclatures else "") + (f" --out {args.out}" if args.out else ""),
        "```", "",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine: {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, Spark local[*]; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (the machine is shared: other jobs ran meanwhile).", "",
        f"Delivery: generated, {args.patients} patients, {rows:,} rows in {size / 1e6:,.0f} MB of CSV "
        f"(no defects{', nomenclatures set' if args.nomenclatures else ', SNDS_NOMENCLATURES unset'}).", "",
        "| measure | seconds (best of runs) | runs |", "|---|---|---|",
        f"| (a) plain Spark: read the CSVs with the same schema, write Parquet | {a:.1f} | {plain_list} |",
        f"| (b) ours: raw archive + curated + every check | {b:.1f} | {ours_list} |",
        f"| (b) of which raw archive (copy, SHA-256, row count, header) | {best['archive']:.1f} | |",
        f"| (b) of which curation and checks | {best['curate']:.1f} | |",
    ]
    if pandera:
        lines.append(f"| (c) pandera.pyspark validation of the same row-level rules ({pandera['checks']} checks), on cached DataFrames | "
                     f"{pandera['validate']:.1f} | (+{pandera['cache']:.1f} s to read and cache, not counted) |")
        lines.append(f"| (d) our validation of the same rules on the same cached DataFrames (one aggregation per table + "
                     f"the key check) | {pandera['ours']:.1f} | same process as (c), table by table side by side |")
    cpu_a, cpu_b = min(cpu["a"]), min(cpu["b"])
    lines.append(f"| CPU seconds of (a), this process + its JVM (user + system), least of runs | {cpu_a:.0f} | "
                 + ", ".join(f"{x:.0f}" for x in cpu["a"]) + " |")
    lines.append(f"| CPU seconds of (b), least of runs | {cpu_b:.0f} | " + ", ".join(f"{x:.0f}" for x in cpu["b"]) + " |")
    lines += ["", "Ratios:", "",
              f"- (b)/(a) = {b / a:.2f} (target <= 1.3); curation and checks alone / (a) = {best['curate'] / a:.2f}",
              f"- CPU seconds (b)/(a) = {cpu_b / cpu_a:.2f}: the work done, whatever the machine's other load and "
              f"however well the cores were kept busy ({cpu_a / a:.2f} cores busy on average in (a), "
              f"{cpu_b / b:.2f} in (b))"]
    paired = [r["total"] / x for x, r in zip(plain_runs, our_runs)]
    paired_cpu = [y / x for x, y in zip(cpu["a"], cpu["b"])]
    lines.append(f"- (b)/(a) per repetition, each pair run back to back: {', '.join(f'{x:.2f}' for x in paired)} (median "
                 f"{statistics.median(paired):.2f}); CPU seconds {', '.join(f'{x:.2f}' for x in paired_cpu)} (median "
                 f"{statistics.median(paired_cpu):.2f}). The machine's other load moves a single pair by 10-30%: the "
                 "best of each measure and the median pair are two readings of the same runs")
    if pandera:
        ratio = pandera["validate"] / validation if validation > 0 else float("inf")
        lines.append(f"- (c)/(d) = {pandera['validate']:.1f} / {pandera['ours']:.1f} = "
                     f"{pandera['validate'] / max(pandera['ours'], 1e-9):.1f}x (target >= 3x): the same rules on the same "
                     "data in memory, pandera.pyspark against our single-pass evaluation")
        lines.append(f"- (c)/(validation part of b) = {pandera['validate']:.1f} / {validation:.1f} = {ratio:.1f}x: what "
                     "checking adds to (a) in the whole ingestion (typing with bad-row detection, observed rules, key and "
                     "foreign-key joins, rejects, reports), against pandera's checks alone on cached data")
        if pandera.get("failed") or pandera.get("ours_failed"):
            lines.append(f"- failures found: pandera {pandera.get('failed')}, ours {pandera.get('ours_failed')}")
    lines += ["", "Memory peak (resident; this process + its Spark JVM, the pandera worker + its JVM for c; a in the "
              "first repetition, before any (b), a after b in the JVM (b) grew): "
              + ", ".join(f"{k} {v / gib:.2f} GiB" for k, v in sorted(peaks.items())), "",
              "Curation time per family (s): " + ", ".join(f"{k} {v}" for k, v in best["per_family"].items()), "",
              "Verdicts (failed checks): " + (", ".join(f"{k}: {v['failed']}" for k, v in best["verdicts"].items() if v["failed"])
                                             or "none"), ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
