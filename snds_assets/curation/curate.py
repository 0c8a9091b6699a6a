"""Curation of one family of one delivery: typed Parquet, rejects, and every curated check (SPEC §5, §6).

How the work is laid out, to read each delivered CSV as few times as possible:

1. **One pass writes the curated partition.** Spark's CSV parser types the columns itself (see ``columns``); a
   row is *bad* when the parser could not type it (or the line has the wrong number of fields), when a converted
   value fails, or when a key / identifier column (``domain.required_columns``) is empty. The parser first drops
   the rows it cannot type (DROPMALFORMED): when every table then read as many rows as the archive counted, none
   was dropped and that pass stands; otherwise the pass is written again with a corrupt-record column (PERMISSIVE
   mode), which keeps those rows and flags them (``write_curated``). ``DataFrame.observe`` counts, during that
   same write, the rows read, the bad rows (and which files hold them) and, per row-level check (range, domain,
   short nomenclatures), the good rows failing any of its rules; good rows alone are written. Only a check that
   failed has its count per rule and its samples taken afterwards, from the written partition. A foreign key to a
   small parent is checked in that pass too: the parent's key hashes are broadcast and probed (``keys.probe``);
   only a link that found orphans is anti-joined afterwards, for its counts per year and its samples. A small table
   (``keys.OBSERVED_HASH_ROWS``) observes its key and link hashes instead: the driver finds duplicates and
   orphans among them (a small parent's key hashes serve its small children, see ``_share_observed_key``), and the
   partition is read again only when it found some.
2. **Rejects come from the files that hold bad rows only** (none for a clean delivery): their lines are read
   back raw, parsed again with the same parser so that exactly the same rows are bad, and written with every
   original value as a string, the reason, the delivered table, the source file and the raw line. The type and
   not_null counts per column are observed during that write.
3. **Key checks read the written Parquet**, key columns only: one aggregation for duplicate keys, one semi-join
   with the current state, one anti-join per foreign-key link to a large parent, one anti-join for long
   nomenclatures. A link to a parent of this delivery that is curated *after* the family (the edge curation
   order drops to break a cycle, T_MCOaaC -> T_MCOaaB) is left pending: ``check_deferred_links`` anti-joins it
   once the run has curated that parent, so that it is never checked against an earlier run's partition.
4. Both partitions are **published by rename** once everything succeeded (see ``publish``), the delivery's earlier
   report withdrawn first (``report.withdraw_report``), then each delivered table's verdict is saved as the
   ``curated`` fragment of the reception report.

Every delivered table gets exactly the checks of ``checks.CURATED_CHECKS``, evaluated or not (with the reason).
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import date
from itertools import zip_longest
from typing import Callable, Collection

import numpy as np
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from .. import domain
from ..catalog import Catalog, Table
from ..checks import CURATED_CHECKS, DEFAULT_SEVERITY, ORPHANS_CHECK, CheckOutcome, tolerate
from ..config import Settings
from ..lake import Lake, join
from ..reception.archive import ArchivedFile, ArchivedTable, families_of
from ..reception.manifest import Format, Manifest
from ..reception.report import save_fragment, withdraw_report
from . import keys, orphaned
from .columns import (
    BAD, CORRUPT, FILE, REJECT_FILE, REJECT_LINE, REJECT_REASON, REJECT_TABLE, ColumnPlan, csv_options,
    family_columns, file_columns, sql_name,
)
from ..reception.storage import ParquetSummary, ValueRange, parquet_summary, remove_lake_tree
from ..spark import described
from .publish import publish
from .rules import RowRule, domain_rules, nomenclature_plan, range_rules
from .state import DELIVERY_COLUMN, CurrentState, Part, delivered_parts, family_rows

SAMPLE_SIZE = 5
LINE_SAMPLE = 300  # characters of a raw line kept in a sample
SAMPLE_LOCATORS = 3  # first columns shown in the samples of a table without key or identifier
FILE_BITS = 63  # files holding bad rows are observed as bits of a long (file index modulo 63: a superset at worst)
HASHES = "_HASHES"  # prefix of the observed hash lists of a small table (``keys.OBSERVED_HASH_ROWS``)
KEY_HASHES = f"{HASHES}_KEY"


@dataclass
class LinkVerdict:
    """One foreign-key link's verdict on one delivered table; the ``foreign_key`` check sums its links'."""

    label: str
    link: domain.Link
    result: keys.KeyResult | None  # None: not evaluated
    why: str  # "checked against ...", or, not evaluated, the whole reason
    deferred: bool = False  # a cycle's link, evaluated once its parent is curated (``check_deferred_links``)


@dataclass
class CuratedTable:
    """What curation did with one delivered table (``T_MCO23B``): counts, checks and the curated columns."""

    delivered_name: str
    family: str
    year: int | None
    rows_read: int
    rows_curated: int
    rows_rejected: int
    checks: list[CheckOutcome]
    column_schema: list[tuple[str, str]] = field(default_factory=list)
    links: list[LinkVerdict] = field(default_factory=list)  # of a readable table, behind its foreign_key check
    orphans_pending: bool = False  # its orphaned_children check waits for the run's end (``orphaned``)

    def check(self, name: str) -> CheckOutcome:
        return next(c for c in self.checks if c.name == name)

    @property
    def pending(self) -> list[LinkVerdict]:
        """Links whose verdict waits for ``check_deferred_links``."""
        return [v for v in self.links if v.deferred]

    def fragment(self) -> dict:
        """The ``curated`` fragment of the reception report (see ``reception.report``)."""
        return {"rows_read": self.rows_read, "rows_curated": self.rows_curated, "rows_rejected": self.rows_rejected,
                "checks": [c.to_report() for c in self.checks]}


def curated_check_names() -> list[tuple[str, str]]:
    """(check name, rule) of every curated check, the same for every family: one verdict each per delivered table."""
    return list(CURATED_CHECKS)


# --- Reading plans ------------------------------------------------------------------------------------------
@dataclass
class _File:
    index: int
    archived: ArchivedFile
    names: list[str]  # column names in file order


@dataclass
class _Table:
    archived: ArchivedTable
    files: list[_File]
    observation: Observation | None = None
    metrics: dict = field(default_factory=dict)
    hashes: dict[str, np.ndarray] = field(default_factory=dict)  # observed hash lists, taken out of ``metrics``
    reject_observation: Observation | None = None
    reject_metrics: dict = field(default_factory=dict)
    reject_flags: list[str] = field(default_factory=list)
    required: tuple[str, ...] = ()  # the key and identifier columns its files must fill (``domain.required_columns``)

    @property
    def name(self) -> str:
        return self.archived.delivered.table

    @property
    def columns(self) -> set[str]:
        return {n for f in self.files for n in f.names}


def literal_path(path: str) -> str:
    """A path Spark reads as it is written: Hadoop takes ``*?[]{}`` and ``\\`` in a path as a pattern, so a delivered
    ``part[1].csv`` read ``part1.csv`` instead, and ``p?x.csv`` every file it matched."""
    return re.sub(r"([\\*?\[\]{}])", r"\\\1", path)


def _not_in_use(columns: list[str], year) -> str:
    return (f"key/identifier column(s) {', '.join(columns)} not in files of {year} by the schema's history: "
            "not required of them")


def _ddl(names: list[str], types: list[T.DataType]) -> str:
    return ", ".join(f"{sql_name(n)} {t.simpleString()}" for n, t in zip(names, types))


def _from_csv_options(fmt: Format) -> dict[str, str]:
    opts = csv_options(fmt)
    return {k: opts[k] for k in ("sep", "nullValue", "emptyValue", "quote", "escape", "dateFormat", "mode",
                                 "columnNameOfCorruptRecord")}


class _Typing:
    """Typed values and bad-row flags of one file's columns, as Spark SQL text over the raw value expressions
    ``get`` gives: the CSV source's own columns (pass 1) or the fields of a ``from_csv`` struct (pass 2). Both
    passes share this code, so that both find exactly the same bad rows."""

    def __init__(self, names: list[str], plans: dict[str, ColumnPlan], required: tuple[str, ...],
                 get: Callable[[str], str], corrupt: bool = True):
        self.names = names
        self.plans = plans
        self.get = get
        self.required = required
        self.corrupt = corrupt  # whether the parser flags the rows it could not type in a corrupt-record column

    def typed(self, name: str) -> str:
        plan = self.plans[name]
        raw = self.get(name)
        return plan.convert(raw) if plan.convert is not None else raw

    def conversion_failed(self, name: str) -> str:
        return f"({self.get(name)} IS NOT NULL AND ({self.typed(name)}) IS NULL)"

    @property
    def converted(self) -> list[str]:
        return [n for n in self.names if self.plans[n].convert is not None]

    def required_null(self, name: str) -> str:
        return f"(({self.typed(name)}) IS NULL)" if name in self.names else "true"

    def bad(self) -> str:
        """Whether a row is bad: false for every row of a file whose parser types everything itself and that has
        no key or identifier column to fill (EB_BIO_F in schema-snds: strings, integers and dates, no key)."""
        parts = [f"{self.get(CORRUPT)} IS NOT NULL"] if self.corrupt else []
        parts += [self.conversion_failed(n) for n in self.converted]
        parts += [self.required_null(n) for n in self.required]
        return f"coalesce({' OR '.join(parts)}, true)" if parts else "false"


# --- Entry point ------------------------------------------------------------------------------------------
def curate_family(spark: SparkSession, settings: Settings, catalog: Catalog, manifest: Manifest,
                  archived: list[ArchivedTable], state: CurrentState | None = None) -> list[CuratedTable]:
    """Curate and check the delivered tables of one family (several years for a PMSI family).

    Writes ``<lake>/curated/<FAMILY>/delivery_id=<ID>/`` and ``<lake>/rejects/<FAMILY>/delivery_id=<ID>/``
    (replacing an earlier ingestion of the same delivery, atomically), saves each table's ``curated`` report
    fragment and returns one CuratedTable per delivered table.
    """
    archived = [a for a in archived if a.family is not None]
    if not archived:
        return []
    families = {a.family for a in archived}
    if len(families) != 1:
        raise ValueError(f"curate_family takes the tables of one family, got {sorted(families)}")
    table = catalog[archived[0].family]
    state = state or CurrentState(spark, settings, catalog)
    run = _Run(spark, settings, catalog, manifest, table, archived, state)
    stage = Lake(settings.lake).staging("curation", manifest.delivery_id, table.name, uuid.uuid4().hex)
    try:
        results = run.execute(stage)
    finally:
        remove_lake_tree(stage)
    with described(spark, step_description(manifest.delivery_id, table.name, "rows breaking several links")):
        count_rows_breaking_links(spark, settings, catalog, manifest, state, results)
    for result in results:
        save_fragment(settings, manifest.delivery_id, result.delivered_name, "curated", result.fragment())
    return results


class _Run:
    def __init__(self, spark, settings: Settings, catalog: Catalog, manifest: Manifest, table: Table,
                 archived: list[ArchivedTable], state: CurrentState):
        self.spark = spark
        self.settings = settings
        self.catalog = catalog
        self.manifest = manifest
        self.fmt = manifest.format
        self.table = table
        self.state = state
        self.lake = Lake(settings.lake)
        self.delivery_date = date.fromisoformat(manifest.delivery_id[:10])
        self.required = domain.required_columns(table)
        self.yearly = table.is_yearly
        self.deferred = set(domain.cyclic_parents(catalog).get(table.name, ()))
        self.kept_years: set[int | None] | None = None  # this delivery's years in the state it joins
        self.state_note = ""  # which partitions of the state ``primary_key_state`` read
        self.curated_path: str | None = None  # the partition written, in staging
        self.written: ParquetSummary | None = None  # its footers, read when a key check needs its value ranges
        index = 0
        self.tables: list[_Table] = []
        for a in archived:
            files = []
            for f in a.files:
                if f.present and f.readable:
                    files.append(_File(index, f, file_columns(f.header if self.fmt.header else None, table,
                                                              a.year if self.yearly else None)))
                    index += 1
            required = domain.required_columns(table, a.year if self.yearly else None)
            self.tables.append(_Table(a, files, required=required))
        extra = [n for t in self.tables for f in t.files for n in f.names]
        self.plans = family_columns(table, self.fmt, extra)
        self.plan_by_name = {p.name: p for p in self.plans}
        self.delivered = {n for t in self.tables for n in t.columns}
        counted = [f.archived.rows for t in self.tables for f in t.files]
        self.counted = None not in counted  # the archive counted every file's rows (see ``write_curated``)
        self.small = self.counted and sum(counted) <= keys.OBSERVED_HASH_ROWS
        pk = list(table.primary_key)
        self.observed_key = bool(self.small and pk and all(c in self.delivered for c in pk))
        # A table with neither key nor identifier (KI_CCI_R, PMSI supplements) shows its first columns instead, where
        # the schemas put what names a row (DCD_IDT_ENC, ETA_NUM...): a sample must lead back to its row.
        located = table.primary_key or self.required or table.columns[:SAMPLE_LOCATORS]
        self.sample_keys = [c for c in located if c in self.delivered]
        self.rules: list[RowRule] = (range_rules(self.plans, self.delivered, self.delivery_date, table)
                                     + domain_rules(table, self.plans, self.delivered))
        self.nomenclatures = nomenclature_plan(self.plans, self.delivered, settings.nomenclatures)
        self.rules += self.nomenclatures.rules
        self.rule_samples: dict[tuple[int | None, int], list] = {}
        self.rule_counts: dict[tuple[int | None, int], int] = {}

    # --- pass 1 -------------------------------------------------------------------------------------------
    def _typed_file(self, t: _Table, f: _File, strict: bool) -> DataFrame:
        """One file's curated columns, its bad-row flag and its index. ``strict``: the parser drops the rows it
        cannot type (``csv_options(drop_malformed=True)``; measured: a typed write 1.15-1.25x faster on ER_PHA_F
        and ER_PRS_F than with the corrupt-record column)."""
        read_types = [self.plan_by_name[n].read_type for n in f.names]
        fields = [T.StructField(n, ty) for n, ty in zip(f.names, read_types)]
        if not strict:
            fields.append(T.StructField(CORRUPT, T.StringType()))
        options = csv_options(self.fmt, drop_malformed=strict, multiline=f.archived.multiline)
        raw = self.spark.read.schema(T.StructType(fields)).options(**options).csv(literal_path(f.archived.lake_path))
        typing = _Typing(f.names, self.plan_by_name, t.required, sql_name, corrupt=not strict)
        present = set(f.names)
        out = []
        for p in self.plans:
            if p.name == domain.YEAR_COLUMN and self.yearly:
                value = f"{int(t.archived.year)}"
            elif p.name in present:
                value = typing.typed(p.name)
            else:
                value = "NULL"
            out.append(f"CAST({value} AS {p.dtype.simpleString()}) AS {sql_name(p.name)}")
        return raw.selectExpr(*out, f"{typing.bad()} AS {BAD}", f"{f.index} AS {FILE}")

    def _observed(self, t: _Table, df: DataFrame, links: list[_LinkPlan]) -> DataFrame:
        """Counts of the write pass: rows read, bad rows and the files holding them, the rows failing each
        row-level check, and the rows whose small parent was not found (probed links); a small table observes,
        rather than probes, the hashes of its good rows' keys and links (lists: ``keys.OBSERVED_HASH_ROWS``).
        A clean table costs one aggregate per check whatever its number of rules; the count of each rule is
        taken after the write, from the curated partition, only for a check that failed."""
        file_bit = F.expr(f"shiftleft(CAST(1 AS BIGINT), {FILE} % {FILE_BITS})")
        metrics = [F.count(F.lit(1)).alias("rows"), F.count_if(F.col(BAD)).alias("bad"),
                   F.bit_or(F.when(F.col(BAD), file_bit)).alias("bad_files")]
        for check in ("range", "domain", "nomenclature"):
            fails = [r.fail for r in self.rules if r.check == check]
            if fails:
                metrics.append(F.expr(f"count_if(NOT {BAD} AND ({' OR '.join(fails)}))").alias(f"{check}_rows"))
        for plan in links:
            if plan.found:
                orphan = ~F.col(BAD) & keys.child_link_checked(plan.link) & ~F.col(plan.found)
                metrics.append(F.count_if(orphan).alias(plan.found))
            elif plan.observed:
                hashed = keys.child_link_hash(plan.link, plan.casts, plan.same_year)
                keep = ~F.col(BAD) & keys.child_link_checked(plan.link)
                metrics.append(keys.observed_hashes(hashed, keep).alias(plan.observed))
        if self.observed_key:
            hashed = keys.key_hash(df, list(self.table.primary_key), self.yearly)
            metrics.append(keys.observed_hashes(hashed, ~F.col(BAD)).alias(KEY_HASHES))
        t.observation = Observation(f"curate_{uuid.uuid4().hex}")
        return df.observe(t.observation, *metrics)

    def write_curated(self, path: str, links: list[_LinkPlan]) -> None:
        """Write the good rows and observe the pass's counts. First with the parser dropping the rows it cannot
        type, when the archive counted every file's rows: the archive counts the records Spark reads (blank lines
        skipped as Spark skips them), so a table that read as many rows as counted lost none and the pass stands;
        a delivery with such rows has the pass written again, flagging them (``_typed_file``)."""
        if self.counted and self._write(path, links, strict=True):
            return
        remove_lake_tree(path)
        self._write(path, links, strict=False)

    def _write(self, path: str, links: list[_LinkPlan], strict: bool) -> bool:
        """One write pass; False when, strict, a table read another number of rows than the archive counted."""
        frames = []
        for t in self.tables:
            if not t.files:
                continue
            df = None
            for f in t.files:
                one = self._typed_file(t, f, strict)
                df = one if df is None else df.unionByName(one)
            for plan in links:
                if plan.found:
                    df = keys.probe(df, plan.theirs, plan.link, plan.casts, plan.same_year, plan.found)
            frames.append(self._observed(t, df, links))
        names = [p.name for p in self.plans]
        if frames:
            union = frames[0]
            for df in frames[1:]:
                union = union.unionByName(df)
            # quoted: a delivered name is any text (``A.B`` is no field B of A, ``X`Y`` no syntax error)
            union.filter(~F.col(BAD)).select(*[F.col(sql_name(n)) for n in names]).write.mode("error").parquet(path)
            for t in self.tables:
                if t.observation is not None:
                    t.metrics, t.hashes = keys.read_observation(t.observation, HASHES)
        else:
            schema = T.StructType([T.StructField(p.name, p.dtype) for p in self.plans])
            self.spark.createDataFrame([], schema).write.mode("error").parquet(path)
        return not strict or all(int(t.metrics.get("rows") or 0) == sum(f.archived.rows for f in t.files)
                                 for t in self.tables if t.files)

    # --- pass 2 -------------------------------------------------------------------------------------------
    def _lines(self, f: _File) -> DataFrame:
        """The raw records of a file as Spark's CSV source splits them (header dropped, blank lines skipped): its
        lines, or, for a file read with multiLine, its records, which a one-column read of the file's own
        delimiter and quote keeps whole as corrupt records. A record of one field is no corrupt record there: it
        comes back unquoted, and is quoted again where it holds a delimiter, quote or line end, so that ``"a;b"``
        stays one field (a malformed row)."""
        opts = {"sep": "\u0001", "quote": "", "header": str(self.fmt.header).lower(),
                "encoding": csv_options(self.fmt)["encoding"], "nullValue": "\u0002\u0003", "mode": "PERMISSIVE",
                "columnNameOfCorruptRecord": "_LINE_CORRUPT", "enforceSchema": "true"}
        line = F.col("_LINE")
        if f.archived.multiline:
            q = self.fmt.quote
            opts.update(sep=self.fmt.delimiter, quote=q, escape=q, multiLine="true")
            spread = [line.contains(c) for c in (self.fmt.delimiter, q, "\n", "\r")]
            line = F.when(_any(spread),
                          F.concat(F.lit(q), F.replace(line, F.lit(q), F.lit(q + q)), F.lit(q))).otherwise(line)
        df = (self.spark.read.schema("_LINE string, _LINE_CORRUPT string").options(**opts)
              .csv(literal_path(f.archived.lake_path)))
        return df.select(F.coalesce(F.col("_LINE_CORRUPT"), line).alias("line"))

    def _rejected_file(self, t: _Table, f: _File) -> tuple[DataFrame, list[str]]:
        """The bad rows of one file: original values as strings, reason, table, file, raw line, and one
        boolean column per failure kind (``type:<COL>``, ``malformed``, ``not_null:<COL>``) for the counts."""
        read_types = [self.plan_by_name[n].read_type for n in f.names]
        typed_ddl = _ddl(f.names + [CORRUPT], read_types + [T.StringType()])
        text_ddl = _ddl(f.names + [CORRUPT], [T.StringType()] * (len(f.names) + 1))
        opts = _from_csv_options(self.fmt)
        df = self._lines(f).select(
            "line", F.from_csv(F.col("line"), typed_ddl, opts).alias("_P"),
            F.from_csv(F.col("line"), text_ddl, opts).alias("_T"))
        typing = _Typing(f.names, self.plan_by_name, t.required, lambda n: f"_P.{sql_name(n)}")
        token = lambda n: F.col("_T").getField(n)  # noqa: E731 - a tiny accessor
        corrupt = F.col("_P").getField(CORRUPT).isNotNull()
        type_fail: dict[str, Column] = {}
        native: list[Column] = []  # values the parser could not type: the row is corrupt but not malformed
        for n in f.names:
            plan = self.plan_by_name[n]
            if not plan.can_fail:
                continue
            fails = []
            if plan.parsed:
                fails.append(F.coalesce(corrupt & F.col("_P").getField(n).isNull() & token(n).isNotNull(), F.lit(False)))
                native.append(fails[-1])
            if plan.convert is not None:
                fails.append(F.coalesce(F.expr(typing.conversion_failed(n)), F.lit(False)))
            type_fail[n] = _any(fails)
        malformed = corrupt & ~_any(native)
        not_null = {n: F.coalesce(F.expr(typing.required_null(n)) & ~type_fail.get(n, F.lit(False)), F.lit(False))
                    for n in t.required}
        flags = {**{f"type:{n}": c for n, c in type_fail.items()}, "malformed": malformed,
                 **{f"not_null:{n}": c for n, c in not_null.items()}}
        reason = F.concat_ws("; ", F.array_compact(F.array(
            F.when(_any(list(type_fail.values())), F.concat(F.lit("type: "), _names_where(type_fail))),
            F.when(malformed, F.lit("malformed line: its number of fields differs from the header")),
            F.when(_any(list(not_null.values())), F.concat(F.lit("not_null: "), _names_where(not_null))),
        )))
        out = [token(n).alias(n) for n in f.names] + [
            reason.alias(REJECT_REASON), F.lit(t.name).alias(REJECT_TABLE), F.lit(f.archived.path).alias(REJECT_FILE),
            F.col("line").alias(REJECT_LINE)]
        out += [c.alias(name) for name, c in flags.items()]
        return df.filter(F.expr(typing.bad())).select(*out), list(flags)

    def write_rejects(self, path: str) -> bool:
        frames = []
        for t in self.tables:
            bad_files = int(t.metrics.get("bad_files") or 0)
            if not t.metrics.get("bad"):
                continue
            table_df, flag_names = None, []
            for f in t.files:
                if not bad_files >> (f.index % FILE_BITS) & 1:
                    continue
                df, flags = self._rejected_file(t, f)
                flag_names += [n for n in flags if n not in flag_names]
                table_df = df if table_df is None else table_df.unionByName(df, allowMissingColumns=True)
            if table_df is None:
                continue
            metrics = [F.count(F.lit(1)).alias("rows")]
            line = F.substring(F.col(REJECT_LINE), 1, LINE_SAMPLE)
            for i, name in enumerate(flag_names):
                hit = F.coalesce(F.col(sql_name(name)), F.lit(False))
                column = name.split(":", 1)[1] if ":" in name else None
                value = F.col(sql_name(column)) if column and column in table_df.columns else F.lit(None).cast("string")
                sample = F.to_json(F.struct(F.lit(column).alias("column"), value.alias("value"),
                                            F.col(REJECT_FILE).alias("file"), line.alias("line")))
                metrics += [F.sum(F.when(hit, 1).otherwise(0)).alias(f"f{i}"),
                            keys.sample_agg(F.when(hit, sample)).alias(f"f{i}_s")]
            type_any = _any([F.coalesce(F.col(sql_name(n)), F.lit(False)) for n in flag_names
                             if n.startswith("type:") or n == "malformed"])
            null_any = _any([F.coalesce(F.col(sql_name(n)), F.lit(False)) for n in flag_names if n.startswith("not_null:")])
            metrics += [F.sum(F.when(type_any, 1).otherwise(0)).alias("type_rows"),
                        F.sum(F.when(null_any, 1).otherwise(0)).alias("not_null_rows")]
            t.reject_observation = Observation(f"rejects_{uuid.uuid4().hex}")
            t.reject_flags = flag_names
            frames.append(table_df.observe(t.reject_observation, *metrics).drop(*flag_names))
        if not frames:
            return False
        union = frames[0]
        for df in frames[1:]:
            union = union.unionByName(df, allowMissingColumns=True)
        union.write.mode("error").parquet(path)
        for t in self.tables:
            if t.reject_observation is not None:
                t.reject_metrics = t.reject_observation.get
        return True

    # --- orchestration ----------------------------------------------------------------------------------
    def execute(self, stage: str) -> list[CuratedTable]:
        curated_path, rejects_path = join(stage, "curated"), join(stage, "rejects")
        self.curated_path = curated_path
        with self._step("keys and links"):
            links = self._links() if any(t.files for t in self.tables) else []
        with self._step("curated write"):
            self.write_curated(curated_path, links)
        with self._step("rejects"):
            has_rejects = self.write_rejects(rejects_path)
        schema = T.StructType([T.StructField(p.name, p.dtype) for p in self.plans])
        curated = self.spark.read.schema(schema).parquet(curated_path)
        with self._step("keys and links"):
            shared = self._hashes_for_children(curated)
        try:
            with self._step("keys and links"):
                key_checks = self._key_checks(curated, shared, links)
            with self._step("failing rows' samples"):
                self._rule_details(curated)
                results = [self._result(t, key_checks) for t in self.tables]
            delivery_id = self.manifest.delivery_id
            withdraw_report(self.settings, delivery_id)  # its verdict was on the data about to be replaced
            publish(curated_path, self.lake.curated(self.table.name, delivery_id))
            publish(rejects_path if has_rejects else None, self.lake.rejects(self.table.name, delivery_id))
            self.state.invalidate(self.table.name)
            self._share_observed_key()
            if shared:
                self.state.share(self.table.name, shared.signature, shared.frame)
                shared = None
        finally:
            if shared:
                shared.frame.unpersist()
        return results

    def _step(self, what: str):
        return described(self.spark, step_description(self.manifest.delivery_id, self.table.name, what))

    # --- checks on the written partition -------------------------------------------------------------------
    def _hashes_for_children(self, curated: DataFrame) -> _SharedHashes | None:
        """The key hashes that this delivery's child families will check their foreign key against, when that
        key is this family's primary key and this delivery is the family's whole state (a first or full
        delivery): the duplicate check counts the same hashes, so they are shuffled once, persisted, and handed
        to the children (``CurrentState.share``) under the signature their check looks for (``_signature``).
        Measured on ER_PRS_F (4.5 M rows): about 5 s saved of the 10 s that the duplicate check and the
        children's first foreign-key check spent hashing the nine DCIR keys each. The hashes are read from the
        staging partition, which publishing then renames: should Spark lose their cached blocks (an executor
        lost on a cluster), a child's check fails with a missing file rather than reading anything else."""
        pk = set(self.table.primary_key)
        readable = any(t.files for t in self.tables)
        if self.small:
            return None  # its children probe it or compare their observed hashes with its own (``_share_observed_key``)
        if self.yearly or not readable or not pk or not pk <= set(self.required) or not pk <= self.delivered:
            return None
        children = [self.catalog[f] for f in families_of(self.catalog, self.manifest) if f != self.table.name]
        for link in [link for child in children for link in domain.check_links(self.catalog, child)]:
            if link.parent != self.table.name or link.same_year or set(link.parent_columns) != pk:
                continue
            kept = self._whole_state()
            if kept is None:
                return None
            casts = (False,) * len(link.parent_columns)
            frame = keys.parent_hashes(curated, link, casts, False).persist()
            return _SharedHashes(_signature(kept, link.parent_columns, casts, False), frame, list(link.parent_columns))
        return None

    def _whole_state(self) -> dict[str, set[int | None]] | None:
        """The family's state once this delivery is accepted, when this delivery is all of it (a first or full
        delivery): only then are hashes of the partition just written the parent hashes a child looks for."""
        delivery_id = self.manifest.delivery_id
        kept = self.state.plan(self.table.name, after=(delivery_id, self._delivered_parts(self.table.name)))
        return kept if list(kept) == [delivery_id] else None

    def _share_observed_key(self) -> None:
        """A small family's key hashes, observed by its write, handed to its small children's foreign-key checks
        (``CurrentState.distinct_hashes``) under the signature of a link to the whole key without casts: they are
        ``keys.link_hashes`` of such a link (the same columns, the year for a PMSI family, no empty key value in a
        curated row). Only when this delivery is the family's whole state; it saves each such parent a query."""
        pk = tuple(self.table.primary_key)
        if not self.observed_key or not set(pk) <= set(self.required):
            return
        kept = self._whole_state()
        if kept is None:
            return
        signature = _signature(kept, pk, (False,) * len(pk), self.yearly)
        self.state.share_hashes(self.table.name, signature, np.unique(self._observed_hashes(KEY_HASHES)))

    def _key_checks(self, curated: DataFrame, shared: _SharedHashes | None = None,
                    links: list[_LinkPlan] | None = None) -> dict[str, dict]:
        out: dict[str, dict] = {}
        pk = list(self.table.primary_key)
        readable = any(t.files for t in self.tables)
        if shared is not None:
            out["primary_key"] = keys.duplicates(curated, shared.columns, self.yearly, shared.frame)
        elif self.observed_key:
            seen_twice = keys.repeated(self._observed_hashes(KEY_HASHES))
            out["primary_key"] = keys.duplicates(curated, pk, self.yearly, seen_twice=seen_twice)
        elif pk and readable and all(c in self.delivered for c in pk):
            rows = sum(int(t.metrics.get("rows") or 0) - int(t.metrics.get("bad") or 0) for t in self.tables)
            out["primary_key"] = keys.duplicates(curated, pk, self.yearly, rows=rows)
        if pk and readable and all(c in self.delivered for c in pk):
            # The state once this delivery is accepted: its tables that a later full delivery replaces are not in
            # it (ingested late, or again), so their keys duplicate nothing (``_pk_state_check``). A full one
            # replaces what came before it, not the later incremental deliveries that stay above it: only those, in
            # its own years (a PMSI key holds its year), can hold its keys.
            delivery_id = self.manifest.delivery_id
            kept = self.state.plan(self.table.name, after=(delivery_id, self._delivered_parts(self.table.name)))
            self.kept_years = kept.get(delivery_id, set())
            others = {d: years for d, years in kept.items() if d != delivery_id}
            if all(t.archived.mode == domain.FULL for t in self.tables):
                others = {d: years & self.kept_years for d, years in others.items() if years & self.kept_years}
            current = None
            if others:
                self.state.verify(self.table.name, others)
                ranged = pk + [domain.YEAR_COLUMN] * self.yearly
                met = self.state.meeting(self.table.name, others, self._written_ranges({c: c for c in ranged}))
                self.state_note = _partitions_read(len(met), len(others), "key")
                if not met:
                    out["primary_key_state"] = {}
                current = self.state.read_plan(self.table.name, met, columns=pk) if met else None
            if current is not None and all(c in current.columns for c in pk):
                out["primary_key_state"] = keys.already_in_state(curated, current, pk, self.yearly)
        out["foreign_key"] = self._foreign_keys(curated, links or []) if readable else {}
        out["nomenclature"] = keys.off_nomenclature(self.spark, curated, self.nomenclatures.large, self.yearly,
                                                    self.sample_keys)
        out["nomenclature_rows"] = self._rows_off_nomenclatures(curated, out["nomenclature"])
        return out

    def _rows_off_nomenclatures(self, curated: DataFrame, large: dict) -> dict[int | None, int]:
        """The failing rows of ``nomenclature`` in each year where a row may fail two lists: several long lists
        failed there, or a long one and the inline ones (whose count the write observed)."""
        sources: dict[int | None, int] = {}
        for (year, _), r in large.items():
            if r.failures:
                sources[year] = sources.get(year, 0) + 1
        for t in self.tables:
            if int(t.metrics.get("nomenclature_rows") or 0):
                year = t.archived.year if self.yearly else None
                sources[year] = sources.get(year, 0) + 1
        years = {year for year, n in sources.items() if n > 1}
        if not years:
            return {}
        inline = [r.fail for r in self.rules if r.check == "nomenclature"]
        return keys.rows_off_nomenclatures(self.spark, curated, self.nomenclatures.large,
                                           " OR ".join(f"({f})" for f in inline) or None, self.yearly, years)

    def _rule_details(self, curated: DataFrame) -> None:
        """Per rule of a check that failed somewhere: its failing-row count and a few failing rows, per year.
        One job over the written partition, and only when a row-level check failed (its count was observed
        during the write); curated rows are exactly the good rows the write pass evaluated."""
        failed = sorted({i for t in self.tables for i, r in enumerate(self.rules) if t.metrics.get(f"{r.check}_rows")})
        if not failed:
            return
        year = F.col(domain.YEAR_COLUMN) if self.yearly else F.lit(None).cast("int")
        keys_json = [F.col(k) for k in self.sample_keys]
        aggs = []
        for i in failed:
            rule = self.rules[i]
            fail = F.expr(rule.fail)
            compared = [F.col(c) for c in rule.context if c not in self.sample_keys]
            sample = F.to_json(F.struct(F.lit(rule.column).alias("column"), F.expr(rule.value).alias("value"),
                                        *compared, *keys_json))
            aggs += [F.count_if(fail).alias(f"n{i}"), keys.sample_agg(F.when(fail, sample)).alias(f"s{i}")]
        for r in curated.groupBy(year.alias("_Y")).agg(*aggs).collect():
            for i in failed:
                self.rule_counts[(r["_Y"], i)] = int(r[f"n{i}"] or 0)
                self.rule_samples[(r["_Y"], i)] = [json.loads(x) for x in (r[f"s{i}"] or [])]

    def _links(self) -> list[_LinkPlan]:
        """How each foreign-key link of the family is checked, decided before the write: against which parent
        hashes, and whether the parent is small enough to be probed during the write (``keys.probe``)."""
        out = []
        child_types = {p.name: p.dtype.simpleString() for p in self.plans}
        links = domain.check_links(self.catalog, self.table)
        for i, link in enumerate(links):
            label = link_label(link, links)
            if not all(c in self.delivered for c in link.columns):
                out.append(_LinkPlan(link, label, f"{label}: not evaluated, the delivery lacks {', '.join(link.columns)}"))
                continue
            if link.parent in self.deferred and self._delivered_parts(link.parent):
                out.append(_LinkPlan(link, label, f"{label}: not evaluated, waits for {link.parent} of this delivery "
                                                  "to be curated in this run", deferred=True))
                continue
            parent, why, kept, archived = self._parent(link)
            if parent is None:
                out.append(_LinkPlan(link, label, f"{label}: not evaluated, {why}"))
                continue
            casts = keys.link_casts(child_types, dict(parent.dtypes), link)
            same_year = link.same_year and self.yearly and domain.YEAR_COLUMN in parent.columns
            held = held_years(kept) if same_year else None
            signature = _signature(kept, link.parent_columns, casts, same_year) + tuple(
                (archive, _signature(k, (), (), False)[0]) for archive, k in sorted(archived.items()))
            # A small parent is only probed: its hashes are broadcast as read, with no shuffle nor sort (the parent's
            # own run may have shared them already, prepared for anti-joins; either kind serves both checks).
            rows = self.state.rows(link.parent, kept) + sum(self.state.rows(a, k) for a, k in archived.items())
            small = rows <= keys.PROBED_PARENT_ROWS
            if not small:  # anti-joined after the write, with the partitions its rows can meet (``_narrowed``)
                out.append(_LinkPlan(link, label, why, None, casts, same_year, kept=kept, parent=parent,
                                     signature=signature, years=held))
                continue
            theirs = self.state.cached(link.parent, signature, lambda: keys.link_hashes(parent, link, casts, same_year))
            if self.small:
                known = self.state.distinct_hashes(link.parent, signature, theirs)
                out.append(_LinkPlan(link, label, why, theirs, casts, same_year, observed=f"{HASHES}_{i}", known=known,
                                     years=held))
            else:
                out.append(_LinkPlan(link, label, why, theirs, casts, same_year, f"_FOUND{i}", years=held))
        return out

    def _observed_hashes(self, name: str) -> np.ndarray:
        return np.concatenate([t.hashes.get(name, keys.hash_array(None)) for t in self.tables])

    def _foreign_keys(self, curated: DataFrame, links: list[_LinkPlan]) -> dict:
        """Per link: its result by year (None when not evaluated) and why. A probed link whose write pass found
        no orphan, or whose observed hashes are all among the parent's, needs nothing more; otherwise the
        anti-join counts orphans by year and samples them."""
        out = {}
        for plan in links:
            if plan.theirs is None and plan.parent is None:
                out[plan.label] = (plan.link, None, plan.why, plan.deferred, None)
            elif plan.found and not any(int(t.metrics.get(plan.found) or 0) for t in self.tables):
                out[plan.label] = (plan.link, {}, plan.why, False, plan.years)
            elif plan.observed and not keys.missing(self._observed_hashes(plan.observed), plan.known):
                out[plan.label] = (plan.link, {}, plan.why, False, plan.years)
            else:
                theirs, why = (plan.theirs, plan.why) if plan.theirs is not None else self._narrowed(plan)
                found = keys.orphans(curated, theirs, plan.link, self.yearly, plan.casts, plan.same_year)
                out[plan.label] = (plan.link, found, why, False, plan.years)
        return out

    def _delivered_parts(self, family: str) -> list[Part]:
        return delivered_parts(self.catalog, self.manifest, family)

    def _parent(self, link: domain.Link) -> tuple[DataFrame | None, str, dict, dict]:
        return _parent_rows(self.state, self.catalog, self.manifest, link)

    # --- verdicts -------------------------------------------------------------------------------------
    def _result(self, t: _Table, key_checks: dict) -> CuratedTable:
        year = t.archived.year if self.yearly else None
        m, rm = t.metrics, t.reject_metrics
        rows_read = int(m.get("rows") or 0)
        bad = int(m.get("bad") or 0)
        rows_rejected = int(rm.get("rows") or 0)
        rows_curated = rows_read - bad
        readable = bool(t.files)
        flags = t.reject_flags
        flag = {name: (int(rm.get(f"f{i}") or 0), rm.get(f"f{i}_s")) for i, name in enumerate(flags)}
        links = (key_checks.get("foreign_key") or {}).items() if readable else []
        verdicts = [_unless_carried(_unless_parent_year(self.catalog, LinkVerdict(
            label, link, None if found is None else found.get(year, keys.KeyResult()), why, deferred), year, held), t)
            for label, (link, found, why, deferred, held) in links]
        checks = {
            "type": self._type_check(t, flag, readable),
            "not_null": self._not_null_check(t, flag, readable),
            "primary_key": self._pk_check(key_checks.get("primary_key"), year, readable, "primary_key"),
            "primary_key_state": self._pk_state_check(t, key_checks.get("primary_key_state"), year, readable),
            "foreign_key": self._fk_check(verdicts, readable),
            "nomenclature": self._rule_check(t, "nomenclature", readable, key_checks.get("nomenclature") or {}, year,
                                             key_checks.get("nomenclature_rows") or {}),
            "range": self._rule_check(t, "range", readable, year=year),
            "domain": self._rule_check(t, "domain", readable, year=year),
            "rows_reconciled": self._reconciled(t, rows_read, rows_curated, rows_rejected, bad),
        }
        checks[ORPHANS_CHECK], orphans_pending = orphaned.first_verdict(
            self.state, self.catalog, self.manifest, self.table.name, t.archived.mode, readable)
        outcomes = [checks[name] for name, _ in CURATED_CHECKS]
        tolerate(outcomes, rows_read, rows_rejected, self.settings.reject_tolerance)
        schema = [(p.name, p.dtype.simpleString()) for p in self.plans]
        return CuratedTable(t.name, self.table.name, t.archived.year, rows_read, rows_curated, rows_rejected,
                            outcomes, schema, verdicts, orphans_pending)

    @staticmethod
    def _outcome(name: str, rule: str, failures: int, columns: list[str], sample: list, evaluated: bool = True,
                 details: str = "") -> CheckOutcome:
        return CheckOutcome(name=name, rule=rule, severity=DEFAULT_SEVERITY[name], passed=failures == 0,
                            failures=int(failures), columns=list(columns), sample=list(sample)[:SAMPLE_SIZE],
                            evaluated=evaluated, details=details)

    def _not_evaluated(self, name: str, rule: str, details: str, columns: list[str] | None = None) -> CheckOutcome:
        return self._outcome(name, rule, 0, columns or [], [], evaluated=False, details=details)

    def _type_check(self, t: _Table, flag: dict, readable: bool) -> CheckOutcome:
        if not readable:
            return self._not_evaluated("type", "type", "no readable file")
        rows = int(t.reject_metrics.get("type_rows") or 0)
        per = {n.split(":", 1)[1]: v for n, v in flag.items() if n.startswith("type:") and v[0]}
        malformed = flag.get("malformed", (0, None))
        sample = _interleaved([malformed[1]] + [s for _, s in per.values()])
        parts = [f"{n}: {c}" for n, (c, _) in per.items()]
        if malformed[0]:
            parts.append(f"{malformed[0]} malformed line(s) (wrong number of fields)")
        return self._outcome("type", "type", rows, list(per), sample, details="; ".join(parts))

    def _not_null_check(self, t: _Table, flag: dict, readable: bool) -> CheckOutcome:
        if not self.required:
            return self._not_evaluated("not_null", "not_null", "the table has no key or identifier column")
        dated = [c for c in self.required if c not in t.required]
        if not t.required:
            return self._not_evaluated("not_null", "not_null", _not_in_use(dated, t.archived.year), list(dated))
        if not readable:
            return self._not_evaluated("not_null", "not_null", "no readable file", list(t.required))
        rows = int(t.reject_metrics.get("not_null_rows") or 0)
        per = {n.split(":", 1)[1]: v for n, v in flag.items() if n.startswith("not_null:") and v[0]}
        sample = _interleaved([s for _, s in per.values()])
        missing = [c for c in t.required if c not in t.columns]
        details = "; ".join([f"{n}: {c} empty" for n, (c, _) in per.items()]
                            + ([f"column(s) {', '.join(missing)} missing from the files"] if missing else [])
                            + ([_not_in_use(dated, t.archived.year)] if dated else []))
        return self._outcome("not_null", "not_null", rows, list(t.required), sample, details=details)

    def _pk_check(self, result: dict | None, year, readable: bool, name: str) -> CheckOutcome:
        pk = list(self.table.primary_key)
        if not pk:
            return self._not_evaluated(name, "primary_key", "the schema declares no primary key")
        dated = self.table.absent_in(pk, year)
        if dated:  # the key is not whole in files of that year: repeated partial keys are no duplicates
            return self._not_evaluated(name, "primary_key", _not_in_use(dated, year), pk)
        if not readable:
            return self._not_evaluated(name, "primary_key", "no readable file", pk)
        if result is None:
            missing = [c for c in pk if c not in self.delivered]
            return self._not_evaluated(name, "primary_key", f"key column(s) {', '.join(missing)} not delivered", pk)
        r = result.get(year, keys.KeyResult())
        key = pk + ([domain.YEAR_COLUMN] if self.yearly else [])
        return self._outcome(name, "primary_key", r.failures, pk, r.sample or [],
                             details=f"{r.failures} row(s) repeat a key ({', '.join(key)}) of this delivery"
                             if r.failures else "")

    def _pk_state_check(self, t: _Table, result: dict | None, year, readable: bool) -> CheckOutcome:
        pk = list(self.table.primary_key)
        if not pk:
            return self._not_evaluated("primary_key_state", "primary_key", "the schema declares no primary key")
        if self.kept_years is not None and year not in self.kept_years:
            return self._not_evaluated("primary_key_state", "primary_key",
                                       "a later full delivery of the family replaces this table: its rows are not "
                                       "in the current state", pk)
        dated = self.table.absent_in(pk, year)
        if dated:
            return self._not_evaluated("primary_key_state", "primary_key", _not_in_use(dated, year), pk)
        if not readable:
            return self._not_evaluated("primary_key_state", "primary_key", "no readable file", pk)
        if result is None and t.archived.mode == domain.FULL:
            return self._not_evaluated("primary_key_state", "primary_key",
                                       "full delivery: it replaces the current state", pk)
        if result is None:
            return self._not_evaluated("primary_key_state", "primary_key",
                                       "no current state of the family (no earlier accepted delivery)", pk)
        r = result.get(year, keys.KeyResult())
        details = [f"{r.failures} row(s) have a key already in the current state"] * bool(r.failures)
        return self._outcome("primary_key_state", "primary_key", r.failures, pk, r.sample or [],
                             details="; ".join(details + [self.state_note] * bool(self.state_note)))

    def _written_ranges(self, columns: dict[str, str]) -> dict[str, ValueRange]:
        """Value ranges of the partition written, from its footers: this run's column -> the name to give it."""
        if self.written is None:
            self.written = parquet_summary(self.curated_path)
        return self.written.renamed(columns)

    def _narrowed(self, plan: "_LinkPlan") -> tuple[DataFrame, str]:
        """The parent hashes an anti-joined link is checked against: those of the parent's partitions whose link
        values can meet the values this delivery's rows hold (``CurrentState.meeting``), the rest not read."""
        link = plan.link
        rows, kept, note = _meeting_rows(self.state, self.manifest.delivery_id, link, plan.casts, plan.same_year,
                                         plan.kept, plan.parent, self._written_ranges)
        signature = _signature(kept, link.parent_columns, plan.casts, plan.same_year) if note else plan.signature
        theirs = self.state.cached(link.parent, signature,
                                   lambda: keys.parent_hashes(rows, link, plan.casts, plan.same_year))
        return theirs, f"{plan.why} ({note})" if note else plan.why

    def _fk_check(self, verdicts: list[LinkVerdict], readable: bool) -> CheckOutcome:
        if not readable:
            return self._not_evaluated("foreign_key", "foreign_key", "no readable file")
        return _fk_outcome(verdicts)

    def _rule_check(self, t: _Table, check: str, readable: bool, large: dict | None = None,
                    year=None, rows: dict | None = None) -> CheckOutcome:
        rules = [(i, r) for i, r in enumerate(self.rules) if r.check == check]
        large = large or {}
        if check == "nomenclature" and self.settings.nomenclatures is None:
            return self._not_evaluated(check, check, "SNDS_NOMENCLATURES not set")
        if not readable:
            return self._not_evaluated(check, check, "no readable file")
        checked_large = list(self.nomenclatures.large) if check == "nomenclature" else []
        # The family's rules read the columns of all its files; a PMSI year's files may lack some (the schema's
        # history: COH_NAI_RET from 2013): a rule on them has nothing of this table to check.
        absent = list(dict.fromkeys(
            [r.column for _, r in rules if not {r.column, *r.context} <= t.columns]
            + [n.column for n in checked_large if n.column not in t.columns]))
        rules = [(i, r) for i, r in rules if {r.column, *r.context} <= t.columns]
        checked_large = [n for n in checked_large if n.column in t.columns]
        unchecked = f"{', '.join(absent)} not in the files of {t.name}" if absent else ""
        if not rules and not checked_large:
            notes = "; ".join(self.nomenclatures.notes) if check == "nomenclature" else ""
            why = {"range": "no date, year or bounded numeric column delivered",
                   "domain": "no documented SNDS rule nor enum applies to the delivered columns",
                   "nomenclature": "no coded column with an available nomenclature delivered"}[check]
            return self._not_evaluated(check, check, "; ".join(x for x in (unchecked or why, notes) if x))
        m = t.metrics
        failures = int(m.get(f"{check}_rows") or 0)
        sample, parts, columns = [], [], []
        for i, r in rules:
            if r.column not in columns:
                columns.append(r.column)
            n = self.rule_counts.get((year, i), 0)
            if n:
                parts.append(f"{r.name.split(':', 1)[1]}: {n}")
                sample += self.rule_samples.get((year, i), [])[:2]
        for n in checked_large:
            columns.append(n.column)
            r = large.get((year, n.column))
            if r and r.failures:
                failures += r.failures
                parts.append(f"{n.nomenclature}:{n.column}: {r.failures}")
                sample += r.sample or []
        if rows and year in rows:
            failures = rows[year]  # rows off two lists count once
        if check == "nomenclature" and self.nomenclatures.notes:
            parts.append("not checked: " + "; ".join(self.nomenclatures.notes))
        if unchecked:
            parts.append(f"not checked: {unchecked}")
        unique = []
        for s in sample:
            if s not in unique:
                unique.append(s)
        return self._outcome(check, check, failures, columns, unique, details="; ".join(parts))

    def _reconciled(self, t: _Table, rows_read: int, rows_curated: int, rows_rejected: int, bad: int) -> CheckOutcome:
        """Rows read = curated + rejected, and Spark read the rows the archive counted in the files: a file Spark
        reads otherwise than as delivered (rows it skips, a compression it applies) loses rows no other check sees."""
        failures = abs(rows_read - rows_curated - rows_rejected)
        counted = [f.archived.rows for f in t.files]
        details = f"{rows_read} read = {rows_curated} curated + {rows_rejected} rejected"
        if failures:
            details = (f"{rows_read} read but {rows_curated} curated + {rows_rejected} rejected "
                       f"({bad} rows found bad while curating)")
        if counted and all(c is not None for c in counted) and sum(counted) != rows_read:
            failures = max(failures, abs(sum(counted) - rows_read))
            details += f"; the archive counted {sum(counted)} rows in the files Spark read"
        unreadable = [f.path for f in t.archived.files if not (f.present and f.readable)]
        if unreadable:
            details += f"; {len(unreadable)} unreadable or missing file(s) not read: {', '.join(unreadable[:5])}"
        return self._outcome("rows_reconciled", "rows_reconciled", failures, [], [], details=details)


def step_description(delivery_id: str, family: str, what: str) -> str:
    """How Spark's UI names the jobs of one step of a family's reception (``spark.described``)."""
    return f"delivery {delivery_id}: {family} {what}"


def link_label(link: domain.Link, links: list[domain.Link]) -> str:
    """A link's name in its table's ``foreign_key`` check, unique among ``links`` (the table's): the parent and its
    columns, then the child's columns where another link names the same (ER_PRS_F's executing, prescribing and
    attending practitioners, three links to DA_PRA_R(PFS_PFS_NUM))."""
    label = f"{link.parent}({', '.join(link.parent_columns)})"
    if sum(l.parent == link.parent and l.parent_columns == link.parent_columns for l in links) > 1:
        label += f" on {', '.join(link.columns)}"
    return label


def held_years(kept: dict[str, set[int | None]]) -> frozenset[int | None]:
    """The years a yearly family's partitions ``kept`` (delivery -> years, ``CurrentState.plan``) hold."""
    return frozenset().union(*kept.values())


def _unless_parent_year(catalog: Catalog, verdict: LinkVerdict, year: int | None,
                        held: frozenset[int | None] | None = None) -> LinkVerdict:
    """A link to the same year of a parent is not evaluated for a year whose parent table is neither in this
    delivery nor in the current state (``held``, the parent's years: a T_MCO21D delivered before any T_MCO21B, as
    for a parent family absent whole, SPEC §6), nor for one whose parent files do not carry its key by the schema's
    history (T_RIPaaFB begins in 2010: T_RIP09C's rows can have no parent there)."""
    link = verdict.link
    parent = catalog.tables.get(link.parent)
    dated = parent.absent_in(link.parent_columns, year) if link.same_year and parent is not None else []
    if dated:
        return LinkVerdict(verdict.label, link, None, f"{verdict.label}: not evaluated, {link.parent}'s files of "
                                                      f"{year} carry no {', '.join(dated)} by its schema's history")
    if verdict.result is not None and held is not None and year not in held:
        return LinkVerdict(verdict.label, link, None, f"{verdict.label}: not evaluated, {link.parent} of {year} is "
                                                      "neither in this delivery nor in the current state")
    return verdict


def _unless_carried(verdict: LinkVerdict, t: _Table) -> LinkVerdict:
    """A link whose columns the table's files do not carry, where other files of its family do (a 2022 MCO C file
    without NIR_ANO_17 beside a 2023 one with it), is not evaluated for that table: its rows' link values are all
    empty, which no link checks, and "0 orphan rows" would say they were checked."""
    absent = [c for c in verdict.link.columns if c not in t.columns]
    if not absent or (verdict.result is None and not verdict.deferred):  # already told why (none delivered them)
        return verdict
    return LinkVerdict(verdict.label, verdict.link, None,
                       f"{verdict.label}: not evaluated, the files of {t.name} carry no {', '.join(absent)}")


def _fk_outcome(verdicts: list[LinkVerdict], rows: int | None = None) -> CheckOutcome:
    """The ``foreign_key`` check of one delivered table from its links' verdicts: its failures are the sum of
    theirs, or ``rows``, the rows that break any of them, where several links found orphans."""
    if not verdicts:
        return _Run._outcome("foreign_key", "foreign_key", 0, [], [], evaluated=False,
                             details="the table has no foreign key to check")
    failures, sample, columns, evaluated = 0, [], [], False
    details = [] if rows is None else [f"{rows} row(s) break at least one link"]
    for v in verdicts:
        columns += [c for c in v.link.columns if c not in columns]
        if v.result is None:
            details.append(v.why)
            continue
        evaluated = True
        failures += v.result.failures
        sample += [{"link": v.label, **s} for s in (v.result.sample or [])]
        details.append(f"{v.label}: {v.result.failures} orphan row(s), {v.why}")
    if rows is not None:
        failures = rows
    return _Run._outcome("foreign_key", "foreign_key", failures if evaluated else 0, columns, sample,
                         evaluated=evaluated, details="; ".join(details))


def count_rows_breaking_links(spark: SparkSession, settings: Settings, catalog: Catalog, manifest: Manifest,
                              state: CurrentState, results: list[CuratedTable]) -> None:
    """Where two or more links of a delivered table found orphans (a PMSI child row whose stay is in neither B
    nor C, a death whose person is unknown by both identifiers), its ``foreign_key`` check counts the rows that
    break any of them, from the published partition, instead of the sum of the links' counts, which could pass
    the table's rows. Verdicts are unchanged (a failure either way); a clean delivery runs no query."""
    child = None
    for r in results:
        failing = [v for v in r.links if v.result is not None and v.result.failures]
        if len(failing) < 2:
            continue
        table = catalog[r.family]
        if child is None:
            child = spark.read.parquet(Lake(settings.lake).curated(table.name, manifest.delivery_id))
        links = []
        for v in failing:
            parent = _parent_rows(state, catalog, manifest, v.link)[0]
            if parent is None:
                break
            casts = keys.link_casts(dict(child.dtypes), dict(parent.dtypes), v.link)
            same_year = v.link.same_year and table.is_yearly and domain.YEAR_COLUMN in parent.columns
            links.append((keys.link_hashes(parent, v.link, casts, same_year), v.link, casts, same_year))
        else:
            rows = child.filter(F.col(domain.YEAR_COLUMN) == r.year) if table.is_yearly else child
            found = keys.orphans_of_any(rows, links, table.is_yearly)
            outcome = _fk_outcome(r.links, sum(found.values()))
            tolerate([outcome], r.rows_read, r.rows_rejected, settings.reject_tolerance)
            r.checks = [outcome if c.name == "foreign_key" else c for c in r.checks]


def _parent_rows(state: CurrentState, catalog: Catalog, manifest: Manifest,
                 link: domain.Link) -> tuple[DataFrame | None, str, dict, dict]:
    """The parent rows a link is checked against, why (or why not), which partitions they come from, and those
    of the parent's archives read with it (IR_BEN_R_ARC for an identity link to IR_BEN_R: an identity found only
    in the archive is not an orphan)."""
    df, why, kept = family_rows(state, catalog, manifest, link.parent, list(link.parent_columns))
    if df is None:
        return None, why, {}, {}
    parent_table = catalog[link.parent]
    if link.same_year and parent_table.is_yearly and domain.YEAR_COLUMN not in df.columns:
        return None, f"{link.parent} has no {domain.YEAR_COLUMN} column", {}, {}
    archived = {}
    for archive in domain.archives_of(link.parent):
        if archive not in catalog:
            continue
        rows, _, archive_kept = family_rows(state, catalog, manifest, archive, list(link.parent_columns))
        if rows is not None:
            columns = [*link.parent_columns] + [domain.YEAR_COLUMN] * (domain.YEAR_COLUMN in df.columns)
            df = df.select(*columns).unionByName(rows.select(*columns), allowMissingColumns=True)
            archived[archive] = archive_kept
            why += f" and {archive}"
    return df, why, kept, archived


def check_deferred_links(spark: SparkSession, settings: Settings, catalog: Catalog, manifest: Manifest,
                         results: list[CuratedTable], state: CurrentState, curated: Collection[str]) -> bool:
    """Evaluate the links that ``curate_family`` left pending in ``results`` (one family's), the edges curation
    order drops to break a cycle (``domain.cyclic_parents``), once this run has curated their parent: the child's
    and the parent's partitions of this delivery are then both this run's own, so that the verdict is the same on
    a first ingestion and a re-ingestion. ``curated``: the families this run curated. Updates each table's
    ``foreign_key`` check and its report fragment; False when nothing was pending."""
    family = results[0].family if results else ""
    with described(spark, step_description(manifest.delivery_id, family, "links to parents curated after it")):
        return _check_deferred_links(spark, settings, catalog, manifest, results, state, curated)


def _check_deferred_links(spark: SparkSession, settings: Settings, catalog: Catalog, manifest: Manifest,
                          results: list[CuratedTable], state: CurrentState, curated: Collection[str]) -> bool:
    pending = {v.label: v.link for r in results for v in r.pending}
    if not pending:
        return False
    table = catalog[results[0].family]
    delivery_id = manifest.delivery_id
    found: dict[str, tuple[dict | None, str, frozenset | None]] = {}
    child = None
    path = Lake(settings.lake).curated(table.name, delivery_id)
    written: list[ParquetSummary] = []

    def ranges(columns: dict[str, str]) -> dict[str, ValueRange]:
        if not written:
            written.append(parquet_summary(path))
        return written[0].renamed(columns)

    for label, link in pending.items():
        if link.parent not in curated:
            found[label] = (None, f"{label}: not evaluated, {link.parent} of this delivery was not curated in this run",
                            None)
            continue
        parent, why, kept, _ = _parent_rows(state, catalog, manifest, link)
        if parent is None:
            found[label] = (None, f"{label}: not evaluated, {why}", None)
            continue
        if child is None:
            child = spark.read.parquet(path)
        casts = keys.link_casts(dict(child.dtypes), dict(parent.dtypes), link)
        same_year = link.same_year and table.is_yearly and domain.YEAR_COLUMN in parent.columns
        parent, _, note = _meeting_rows(state, delivery_id, link, casts, same_year, kept, parent, ranges)
        theirs = keys.parent_hashes(parent, link, casts, same_year)
        found[label] = (keys.orphans(child, theirs, link, table.is_yearly, casts, same_year),
                        f"{why} ({note})" if note else why, held_years(kept) if same_year else None)
    for r in results:
        if not r.pending:
            continue
        year = r.year if table.is_yearly else None
        r.links = [v if not v.deferred else _unless_parent_year(catalog, LinkVerdict(
            v.label, v.link, None if found[v.label][0] is None else found[v.label][0].get(year, keys.KeyResult()),
            found[v.label][1]), year, found[v.label][2]) for v in r.links]
        outcome = _fk_outcome(r.links)
        tolerate([outcome], r.rows_read, r.rows_rejected, settings.reject_tolerance)
        r.checks = [outcome if c.name == "foreign_key" else c for c in r.checks]
        count_rows_breaking_links(spark, settings, catalog, manifest, state, [r])
        save_fragment(settings, delivery_id, r.delivered_name, "curated", r.fragment())
    return True


@dataclass
class _LinkPlan:
    """How one foreign-key link of a family is checked (see ``_Run._links``)."""

    link: domain.Link
    label: str
    why: str  # "checked against ...", or why the link is not evaluated
    theirs: DataFrame | None = None  # the parent's key hashes; None: not evaluated
    casts: tuple[bool, ...] = ()
    same_year: bool = False
    found: str | None = None  # the write pass's column and metric for a probed (small) parent
    observed: str | None = None  # or, for a small child, the metric of its observed link hashes
    known: np.ndarray | None = None  # and the small parent's hashes they are compared with (``keys.missing``)
    deferred: bool = False  # a cycle's link: checked by ``check_deferred_links`` once its parent is curated
    kept: dict[str, set[int | None]] = field(default_factory=dict)  # an anti-joined parent's partitions,
    parent: DataFrame | None = None  # its rows (link columns), and the signature of their hashes (``_Run._narrowed``)
    signature: tuple = ()
    years: frozenset[int | None] | None = None  # a same-year link's: the years its parent holds (``held_years``)


@dataclass
class _SharedHashes:
    """A family's key hashes built by its own run for its children's foreign-key checks (see ``parent_hashes``)."""

    signature: tuple
    frame: DataFrame
    columns: list[str]  # in the order hashed


def _signature(kept: dict[str, set[int | None]], columns: tuple[str, ...], casts: tuple[bool, ...],
               same_year: bool) -> tuple:
    """What a parent's cached key hashes depend on: its partitions, the columns hashed and how."""
    return (tuple(sorted((d, tuple(sorted(y, key=str))) for d, y in kept.items())), tuple(columns), casts,
            same_year)


def _meeting_rows(state: CurrentState, delivery_id: str, link: domain.Link, casts: tuple[bool, ...], same_year: bool,
                  kept: dict[str, set[int | None]], parent: DataFrame,
                  ranges: Callable[[dict[str, str]], dict[str, ValueRange]]) -> tuple[DataFrame, dict, str]:
    """A link's parent rows from the partitions of ``kept`` whose link values can meet the child's (``ranges``: the
    child partition's value ranges of its columns, under the parent's names), those partitions, and a note saying
    how many other ones were read when some were not. This delivery's own partition is always read. Not with an
    archive read alongside (IR_BEN_R_ARC: the rows then lack their delivery)."""
    others = {d: years for d, years in kept.items() if d != delivery_id}
    if not others or DELIVERY_COLUMN not in parent.columns:
        return parent, kept, ""
    columns = {c: p for c, p, cast in zip(link.columns, link.parent_columns, casts) if not cast}
    if same_year:
        columns[domain.YEAR_COLUMN] = domain.YEAR_COLUMN
    met = state.meeting(link.parent, others, ranges(columns))
    if len(met) == len(others):
        return parent, kept, ""
    kept = {d: years for d, years in kept.items() if d == delivery_id or d in met}
    return (parent.where(F.col(DELIVERY_COLUMN).isin(sorted(kept))), kept,
            _partitions_read(len(met), len(others), "link"))


def _partitions_read(read: int, others: int, what: str) -> str:
    return (f"{read} of {others} other partition(s) of the state read: the {what} values of the rest, by "
            "their Parquet footers, cannot meet this delivery's") if read < others else ""


def _any(columns: list[Column]) -> Column:
    if not columns:
        return F.lit(False)
    out = columns[0]
    for c in columns[1:]:
        out = out | c
    return out


def _names_where(flags: dict[str, Column]) -> Column:
    return F.concat_ws(", ", F.array_compact(F.array(*[F.when(c, F.lit(n)) for n, c in flags.items()])))


def _interleaved(samples: list[list[str] | None]) -> list[dict]:
    """A check's sample from the few rows observed per failure kind, taken in turn, so that every failing column
    shows in the first rows and a single failing column still shows a few (SPEC §6)."""
    rows = [row for rank in zip_longest(*(s or [] for s in samples)) for row in rank if row is not None]
    return [json.loads(row) for row in rows[:SAMPLE_SIZE]]
