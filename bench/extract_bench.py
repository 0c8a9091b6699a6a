"""Extraction benchmark: the library's extraction of every family against a hand-written Spark plan doing the
same semi-joins, side by side in one run (issue 5: target ratio <= 1.2).

    .venv/bin/python bench/extract_bench.py [--patients 100000] [--share 0.01] [--reps 3]

Data: a delivery of ``--patients`` generated patients (``snds_assets.generator``), typed as the curation types
it and written once as Parquet under ``--workdir`` (reused by later runs). Cohort: about ``--share`` of the
persons, brought as BEN_IDT_ANO identifiers. For every family, both plans select the cohort's rows (broadcast
identities; DCIR affiliated tables through the selected ER_PRS_F lines; PMSI tables through the C table's good
links of the same year), replace SNDS pseudonyms by project pseudonyms (Spark ``hmac``) and write Parquet.
Runs alternate which plan goes first; the two plans' outputs must hold the same columns and the same rows (a
mismatch is printed and written, and the script exits 1). The library's full ``run_extract`` (with its checks) is
timed once per family as the cost an asset pays. Results go to ``--out`` (default ``bench/results/extract.md``,
overwritten).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # benchenv, when this file is imported rather than run

from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from benchenv import reference_schemas  # noqa: E402
from snds_assets import domain  # noqa: E402
from snds_assets.catalog import Catalog  # noqa: E402
from snds_assets.config import Settings  # noqa: E402
from snds_assets.curation.columns import csv_options, family_columns  # noqa: E402
from snds_assets.generator import GenerateOptions, generate  # noqa: E402
from snds_assets.provision.extract import extract_family  # noqa: E402
from snds_assets.provision.identify import build_cohort  # noqa: E402
from snds_assets.provision.pseudonymize import project_secret, subkey  # noqa: E402
from snds_assets.provision.request import load_request  # noqa: E402
from snds_assets.provision.run import run_cohort, run_extract  # noqa: E402
from snds_assets.reception.manifest import MANIFEST, parse_manifest  # noqa: E402
from snds_assets.spark import build_session  # noqa: E402

DELIVERY = "2024-06-01"
FAMILIES = ["IR_BEN_R", "IR_IMB_R", "IR_IBA_R", "KI_CCI_R", "KI_ECD_R", "ER_PRS_F", "ER_PHA_F", "ER_CAM_F",
            "ER_BIO_F", "ER_ETE_F", "T_MCOaaC", "T_MCOaaB", "T_MCOaaD", "T_MCOaaA", "T_MCOaaUM"]
PERIOD = (date(2022, 1, 1), date(2023, 12, 31))
KEYS9 = list(domain.DCIR_KEYS)


# --- Data ---------------------------------------------------------------------------------------------------
def prepare(spark, catalog: Catalog, workdir: Path, patients: int) -> dict[str, str]:
    """Generate the delivery (once) and type it into Parquet per family (once)."""
    landing = workdir / "landing"
    delivery = landing / DELIVERY
    if not (delivery / MANIFEST).is_file():
        t = time.time()
        generate(GenerateOptions(out=landing, delivery_id=DELIVERY, patients=patients, seed=5, catalog=catalog,
                                 tables=FAMILIES, overwrite=True, start=PERIOD[0], end=PERIOD[1]))
        print(f"generated {patients} patients in {time.time() - t:.0f}s", flush=True)
    manifest = parse_manifest((delivery / MANIFEST).read_text())
    by_family: dict[str, list] = {}
    for table in manifest.tables:
        family, year = catalog.resolve(table.table)
        by_family.setdefault(family.name, []).append((table, year))
    paths = {}
    for family, tables in by_family.items():
        target = workdir / "curated" / family
        paths[family] = str(target)
        if (target / "_SUCCESS").exists():
            continue
        t = time.time()
        frames = [_typed(spark, catalog, delivery, table, year, manifest.format) for table, year in tables]
        df = frames[0]
        for other in frames[1:]:
            df = df.unionByName(other)
        df.write.mode("overwrite").parquet(str(target))
        print(f"typed {family} in {time.time() - t:.0f}s", flush=True)
    return paths


def _typed(spark, catalog: Catalog, delivery: Path, table, year, fmt) -> DataFrame:
    family = catalog[table.table] if table.table in catalog else catalog.resolve(table.table)[0]
    files = [str(delivery / f.path) for f in table.files]
    raw = spark.read.options(**{**csv_options(fmt), "mode": "PERMISSIVE"}).csv(files)
    raw = raw.toDF(*[c.upper() for c in raw.columns])
    cols = []
    for plan in family_columns(family, fmt, []):
        if plan.name == domain.YEAR_COLUMN:
            cols.append(F.lit(year).cast("int").alias(plan.name))
        elif plan.name not in raw.columns:
            cols.append(F.lit(None).cast(plan.dtype).alias(plan.name))
        elif plan.convert is not None:
            cols.append(F.expr(plan.convert(f"`{plan.name}`")).alias(plan.name))  # conversions are SQL text
        else:
            cols.append(F.col(plan.name).try_cast(plan.dtype).alias(plan.name))
    return raw.select(*cols, F.lit(DELIVERY).alias("DELIVERY_ID"))


class ParquetSource:
    def __init__(self, spark, paths: dict[str, str]):
        self.spark, self.paths = spark, paths

    def read(self, family):
        return self.spark.read.parquet(self.paths[family]) if family in self.paths else None

    def deliveries(self, family):
        return [DELIVERY] if family in self.paths else []

    def receptions(self):
        return {}

    def absent(self, family: str) -> dict:
        return {}  # one delivery, every file typed with all the columns of its table

    def repeats_keys(self, family: str) -> bool:
        return False  # one delivery, whose generated keys are unique


# --- The hand-written plan --------------------------------------------------------------------------------------
def _hmac(column: str, secret: bytes, label: str):
    value = F.col(column).cast("string")
    digest = F.lower(F.hex(F.hmac(F.lit(subkey(secret, label)), F.encode(value, "UTF-8"))))
    return F.when(value.isNotNull() & (F.trim(value) != ""), digest)


def _hand_pseudonyms(df: DataFrame, secret: bytes) -> DataFrame:
    names = {"BEN_NIR_PSA": "NUM_ENQ", "NIR_ANO_17": "NUM_ENQ", "BEN_IDT_ANO": "NUM_ENQ_IDT", "BEN_NIR_ANO": "NUM_ENQ_ANO"}
    # other patient pseudonyms, hashed in place; an insured's NIR (ASS_NIR_ANO) with BEN_NIR_ANO's key
    others = {c: "NUM_ENQ_ANO" if c == "ASS_NIR_ANO" else c for c in domain.OTHER_PATIENT_PSEUDONYMS}
    out = []
    for c in df.columns:
        if c == "DELIVERY_ID":
            continue
        if c in names:
            out.append(_hmac(c, secret, names[c]).alias(names[c]))
        elif c in others:
            out.append(_hmac(c, secret, others[c]).alias(c))
        else:
            out.append(F.col(c))
    return df.select(*out)


def hand_extract(source: ParquetSource, family: str, ids: DataFrame, secret: bytes) -> DataFrame:
    """What an engineer would write for each family of this base, without the library's generic walk."""
    start, end = PERIOD
    pairs = F.broadcast(ids.select("BEN_NIR_PSA", "BEN_RNG_GEM"))
    persons = F.broadcast(ids.select("BEN_IDT_ANO").distinct())
    nirs = F.broadcast(ids.where("NIR_UNIQUE").select(F.col("BEN_NIR_PSA").alias("NIR_ANO_17")).distinct())

    def prs():
        p = source.read("ER_PRS_F")
        return p.where(F.col("EXE_SOI_DTD").between(F.lit(start), F.lit(end))).join(pairs, ["BEN_NIR_PSA", "BEN_RNG_GEM"], "left_semi")

    def mco_c():
        c = source.read("T_MCOaaC")
        good = (F.to_date("EXE_SOI_DTD").between(F.lit(start), F.lit(end)) & F.col("NIR_ANO_17").isNotNull()
                & ~F.col("NIR_ANO_17").isin("xxxxxxxxxxxxxxxxx", "XXXXXXXXXXXXXXXXS"))
        for code in ("NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET", "DAT_RET"):
            good = good & (F.col(code) == "0")
        for code in ("COH_NAI_RET", "COH_SEX_RET"):
            good = good & (F.col(code).isNull() | (F.col(code) == "0"))
        return c.where(good).join(nirs, "NIR_ANO_17", "left_semi")

    if family in ("IR_BEN_R", "IR_IMB_R"):
        rows = source.read(family).join(pairs, ["BEN_NIR_PSA", "BEN_RNG_GEM"], "left_semi")
    elif family in ("IR_IBA_R", "KI_CCI_R", "KI_ECD_R"):
        rows = source.read(family).join(persons, "BEN_IDT_ANO", "left_semi")
    elif family == "ER_PRS_F":
        rows = prs()
    elif family.startswith("ER_"):
        rows = source.read(family).join(prs().select(*KEYS9), KEYS9, "left_semi")
    elif family == "T_MCOaaC":
        rows = mco_c()
    else:
        keys = ["ETA_NUM", "RSA_NUM", domain.YEAR_COLUMN]
        rows = source.read(family).join(mco_c().select(*keys), keys, "left_semi")
    return _hand_pseudonyms(rows, secret)


# --- Run ------------------------------------------------------------------------------------------------------------
def timed_write(df: DataFrame, path: Path) -> float:
    t = time.perf_counter()
    df.write.mode("overwrite").parquet(str(path))
    return time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--share", type=float, default=0.01, help="share of persons in the cohort")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workdir", default=os.environ.get("SNDS_BENCH_DIR", str(REPO / ".snds" / "bench" / "extract")))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "extract.md"))
    parser.add_argument("--no-checks", action="store_true", help="skip timing run_extract with its checks")
    args = parser.parse_args()

    workdir = Path(args.workdir) / f"p{args.patients}"
    workdir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog.load(os.environ.get("SNDS_SCHEMAS") or str(reference_schemas()))
    args.load_before = os.getloadavg()[0]
    spark = build_session("local[*]")
    paths = prepare(spark, catalog, workdir, args.patients)
    source = ParquetSource(spark, paths)
    families = [f for f in FAMILIES if f in paths]

    # The project: ~share of the persons, by BEN_IDT_ANO.
    settings = Settings.from_env(env={}, home=str(workdir / "home"))
    projects = Path(settings.projects)
    projects.mkdir(parents=True, exist_ok=True)
    modulo = max(1, round(1 / args.share))
    chosen = (source.read("IR_BEN_R").select("BEN_IDT_ANO").distinct()
              .where(F.abs(F.xxhash64("BEN_IDT_ANO")) % modulo == 0).collect())
    (projects / "bench-ids.csv").write_text("BEN_IDT_ANO\n" + "".join(f"{r[0]}\n" for r in chosen))
    (projects / "bench.yaml").write_text(
        f"id: bench\ntitle: extraction benchmark\nperiod: {{start: {PERIOD[0]}, end: {PERIOD[1]}}}\n"
        f"tables: [{', '.join(families)}]\ncohort: {{identifiers: bench-ids.csv}}\n")
    request = load_request(settings, catalog, "bench")
    secret = project_secret(settings, "bench")

    t = time.perf_counter()
    cohort = build_cohort(spark, catalog, request, source)
    cohort_seconds = time.perf_counter() - t
    persons = source.read("IR_BEN_R").select("BEN_IDT_ANO").distinct().count()
    print(f"cohort: {cohort.counts['persons']} of {persons} persons, {cohort.counts['identities']} identities, "
          f"{cohort_seconds:.1f}s", flush=True)

    out = workdir / "out"
    lib_t: dict[str, list[float]] = {f: [] for f in families}
    hand_t: dict[str, list[float]] = {f: [] for f in families}
    rows: dict[str, tuple[int, int]] = {}
    for rep in range(args.reps):
        for family in families:
            def lib():
                df = extract_family(spark, catalog, request, family, cohort, source, secret=secret)
                lib_t[family].append(timed_write(df, out / "lib" / family))

            def hand():
                hand_t[family].append(timed_write(hand_extract(source, family, cohort.identities, secret),
                                                  out / "hand" / family))
            for step in ((lib, hand) if rep % 2 == 0 else (hand, lib)):
                step()
            print(f"rep {rep} {family}: library {lib_t[family][-1]:.2f}s, hand-written {hand_t[family][-1]:.2f}s",
                  flush=True)
    mismatches = []
    for family in families:  # the same columns and the same rows (as multisets: equal counts, nothing left over)
        a = spark.read.parquet(str(out / "lib" / family))
        b = spark.read.parquet(str(out / "hand" / family))
        rows[family] = (a.count(), b.count())
        same = sorted(a.columns) == sorted(b.columns)
        if same:
            same = rows[family][0] == rows[family][1] and a.exceptAll(b.select(*a.columns)).isEmpty()
        if not same:
            mismatches.append(family)
            print(f"MISMATCH {family}: rows {rows[family]}, columns {sorted(set(a.columns) ^ set(b.columns))}",
                  flush=True)

    checks_t: dict[str, float] = {}
    if not args.no_checks:
        run_cohort(spark, settings, catalog, request, source)
        for family in families:
            t = time.perf_counter()
            info = run_extract(spark, settings, catalog, request, family, source)
            checks_t[family] = time.perf_counter() - t
            failed = [c.name for c in info["checks"] if not c.passed]
            print(f"run_extract {family}: {checks_t[family]:.2f}s, {info['rows']} rows, failed checks: {failed}",
                  flush=True)

    write_results(Path(args.out), args, persons, cohort, cohort_seconds, families, source, lib_t, hand_t, rows, checks_t,
                  mismatches)
    shutil.rmtree(out, ignore_errors=True)
    return 1 if mismatches else 0


def write_results(path: Path, args, persons, cohort, cohort_seconds, families, source, lib_t, hand_t, rows, checks_t,
                  mismatches):
    med = statistics.median
    total_lib = sum(med(lib_t[f]) for f in families)
    total_hand = sum(med(hand_t[f]) for f in families)
    ratio = total_lib / total_hand
    lines = [
        "# Extraction benchmark",
        "",
        f"Run `{' '.join(['.venv/bin/python', 'bench/extract_bench.py'] + sys.argv[1:])}` on {time.strftime('%Y-%m-%d')}, "
        f"{platform.node()}, {os.cpu_count()} cores, Spark local[*], load average {args.load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after. Each figure is the median of {args.reps} runs; "
        "the library and the hand-written plan alternate which goes first.",
        "",
        f"- base: {args.patients:,} generated patients ({persons:,} persons in IR_BEN_R), one delivery typed as curated",
        f"- cohort: {cohort.counts['persons']:,} persons ({cohort.counts['persons'] / persons:.2%}), "
        f"{cohort.counts['identities']:,} identities, broadcast: {cohort.broadcastable}; "
        f"identification took {cohort_seconds:.1f}s",
        f"- **ratio library / hand-written, all families: {ratio:.2f}** (target <= 1.2): "
        f"{total_lib:.1f}s against {total_hand:.1f}s",
        "",
        "| family | rows in the base | rows extracted | library (s) | hand-written (s) | ratio |"
        + (" run_extract with checks (s) |" if checks_t else ""),
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if checks_t else ""),
    ]
    for f in families:
        base_rows = source.read(f).count()
        a, b = med(lib_t[f]), med(hand_t[f])
        row = f"| {f} | {base_rows:,} | {rows[f][0]:,} | {a:.2f} | {b:.2f} | {a / b:.2f} |"
        if checks_t:
            row += f" {checks_t[f]:.2f} |"
        lines.append(row)
    lines += [
        "",
        f"Cost per extracted family (library, median): {total_lib / len(families):.2f}s on average"
        + (f"; with the asset's checks (cohort membership, period, granted columns, no SNDS pseudonym, row count): "
           f"{sum(checks_t.values()) / len(checks_t):.2f}s on average." if checks_t else "."),
        "",
        "Rows extracted are the same in both plans (checked by the script: same columns, same rows)." if not mismatches
        else f"MISMATCH: the two plans did not extract the same rows of {', '.join(mismatches)}.",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
