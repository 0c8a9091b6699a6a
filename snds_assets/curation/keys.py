"""Checks that need more than one row at a time: one Spark job each, reading only the key columns.

- ``primary_key``: one aggregation over the curated partition (rows beyond the first of each duplicated key);
- ``primary_key_state``: one semi-join of the partition's keys with the family's current state (the partitions of
  it whose footers' value ranges can meet this delivery's keys: ``CurrentState.meeting``);
- ``foreign_key``: one anti-join per link of ``domain.check_links`` with a large parent; a small parent's hashes
  are probed (broadcast) during the child's write instead, and the anti-join only runs when that found orphans;
- long nomenclatures: one anti-join of the distinct coded values with the code lists.

Joins and aggregations shuffle 64-bit hashes of the key columns rather than the columns themselves (nine
DCIR keys are ~70 bytes a row, a hash 8): the full keys are read back only for the few failing rows, to count
duplicates exactly and to show samples. When there is nothing to report, each check is a single shuffle.

A small table (``OBSERVED_HASH_ROWS``) runs neither the duplicate aggregation nor the probe: its write pass hands
its key hashes to the driver (``observed_hashes``), which finds repeated hashes (``repeated``) and hashes absent
from a small parent's (``missing``); only a check that found something reads the partition again, as above.

Results are per year for PMSI families (a year is one delivered table), under ``None`` otherwise.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from .. import domain
from .rules import LargeNomenclature

SAMPLE_SIZE = 5
SMALL_TABLE = 200_000  # rows whose duplicate keys are counted in one partition (see ``duplicates``)
MAX_EXACT = 10_000  # duplicated key hashes re-counted exactly through a filter; beyond, one full-key aggregation
# A parent with at most this many rows is probed while its children are written (``probe``: a broadcast hash
# table of their 8-byte key hashes, some tens of MB); a larger one is anti-joined after the write (``orphans``).
# Measured on 100k generated patients: probing IR_BEN_R (110k keys) saves a query per child family; probing
# ER_PRS_F (4.5 M keys) made its DCIR children slower (84 s against 69 s), each building the broadcast again.
PROBED_PARENT_ROWS = 1_000_000
# A table of at most this many delivered rows observes, during its write, the hashes its duplicate check and its
# foreign keys to small parents need (8 bytes a row in the driver: at most 8 MB a check), and compares them there
# with no query of its own. Measured on generated PMSI and referential families, one at a time on a warm JVM: the
# broadcast probe of a small parent cost 0.4-1.1 s per family, the observed hashes 0.1-0.3 s.
OBSERVED_HASH_ROWS = 1_000_000
_YEAR = "_YEAR"


@dataclass
class KeyResult:
    failures: int = 0
    sample: list | None = None


def sample_agg(value: Column) -> Column:
    """Up to five distinct values of a group with bounded memory (no collect_list)."""
    picks = [F.min(value), F.max(value), F.min_by(value, F.xxhash64(value)), F.max_by(value, F.xxhash64(value)),
             F.min_by(value, F.hash(value))]
    return F.array_distinct(F.array_compact(F.array(*picks)))


def shuffle_partitions(session: SparkSession) -> int:
    """How many partitions key hashes are shuffled into: the session's ``spark.sql.shuffle.partitions``, or Spark's
    default (200) where a cluster lets Spark choose (Databricks' ``auto``)."""
    value = str(session.conf.get("spark.sql.shuffle.partitions", "200")).strip()
    return int(value) if value.isdigit() and int(value) > 0 else 200


def _year(df: DataFrame, yearly: bool) -> Column:
    return F.col(domain.YEAR_COLUMN) if yearly and domain.YEAR_COLUMN in df.columns else F.lit(None).cast("int")


def _collect(df: DataFrame, count: Column, sample: Column) -> dict[int | None, KeyResult]:
    rows = df.groupBy(_YEAR).agg(count.alias("n"), sample_agg(sample).alias("s")).collect()
    return {r[_YEAR]: KeyResult(int(r["n"] or 0), [json.loads(s) for s in (r["s"] or [])][:SAMPLE_SIZE])
            for r in rows}


def _hash(columns: list[Column]) -> Column:
    return F.xxhash64(*columns)


def key_hash(df: DataFrame, key: list[str], yearly: bool) -> Column:
    """The hash the duplicate check counts: the key's columns, plus the year of a PMSI family."""
    year = [F.col(domain.YEAR_COLUMN)] if yearly and domain.YEAR_COLUMN in df.columns else []
    return _hash([F.col(c) for c in key] + year)


def observed_hashes(hash: Column, keep: Column) -> Column:
    """An aggregate for ``DataFrame.observe``: the hashes of the rows kept, as a list handed to the driver."""
    return F.collect_list(F.when(keep, hash))


def hash_array(hashes: list | None) -> np.ndarray:
    return np.asarray(hashes or [], dtype=np.int64)


def read_observation(observation: Observation, lists: str) -> tuple[dict, dict[str, np.ndarray]]:
    """An observed write's metrics, and its hash lists (``observed_hashes``; names starting with ``lists``) as arrays.

    ``Observation.get`` hands the metrics over as one pickled row, which Py4J decodes in Python byte by byte
    (measured on the small tables of a 100k-patient delivery, 0.9 M hashes: 4.7 s of the driver's time). On a
    classic session the JVM joins each list into one string instead, which numpy parses (the same metrics: 1.4 s);
    Spark Connect's observations come over Arrow and are read as usual, as is any observation without PySpark's
    private handle on its JVM twin (``_jo``), should a later PySpark rename it."""
    java = getattr(observation, "_jo", None)
    if java is None:
        metrics = observation.get
        return metrics, {k: hash_array(metrics.pop(k)) for k in list(metrics) if k.startswith(lists)}
    jrow = java.getRow()
    metrics, arrays = {}, {}
    for i, name in enumerate(jrow.schema().fieldNames()):
        if name.startswith(lists):
            text = jrow.getSeq(i).mkString(",")
            arrays[name] = np.fromstring(text, dtype=np.int64, sep=",") if text else hash_array(None)
        else:
            metrics[name] = jrow.get(i)
    return metrics, arrays


def repeated(hashes: np.ndarray) -> list[int]:
    """The hashes seen more than once (at most ``MAX_EXACT`` + 1 of them, as the aggregation would give)."""
    ordered = np.sort(hashes)
    twice = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    return [int(h) for h in twice[:MAX_EXACT + 1]]


def distinct_hashes(hashes: DataFrame) -> np.ndarray:
    """A parent's hashes (column ``_H``) in the driver, sorted and distinct, for ``missing``."""
    return np.unique(hashes.toArrow().column("_H").to_numpy())


def missing(mine: np.ndarray, theirs: np.ndarray) -> int:
    """How many of ``mine`` are not among ``theirs`` (sorted and distinct, see ``distinct_hashes``)."""
    if not len(mine):
        return 0
    if not len(theirs):
        return len(mine)
    at = np.minimum(np.searchsorted(theirs, mine), len(theirs) - 1)
    return int(np.count_nonzero(theirs[at] != mine))


def duplicates(curated: DataFrame, key: list[str], yearly: bool, prepared: DataFrame | None = None,
               rows: int | None = None, seen_twice: list[int] | None = None) -> dict[int | None, KeyResult]:
    """Rows beyond the first of each key value, with a sample of duplicated keys and how often they occur.

    The aggregation shuffles a 64-bit hash of the key instead of the key columns; the (normally few) hashes seen
    twice are then counted exactly on their full keys, so a hash collision never makes a false duplicate.
    The hashes (of the key and, for a PMSI family, the year) are shuffled by hash before they are counted: key
    values are almost all distinct, so a map-side partial count would shrink nothing (measured on 4.5 M cached
    rows: 3.3 s, against 5.4 s for a group-by of hash and year).
    ``prepared``: those hashes already shuffled, sorted and cached, as ``parent_hashes`` makes them for the
    children's foreign-key checks (a family that is not yearly, ``key`` in the order hashed): counted as they
    stream (``repeated_hashes``). A table of at most
    ``SMALL_TABLE`` ``rows`` is counted in one partition, without a shuffle (a shuffle's stages cost about 0.3 s
    whatever the size: most of the check's time on a PMSI table). ``seen_twice``: the repeated hashes, already
    found from the write's observed hashes (``repeated``): only they are counted."""
    year = _year(curated, yearly)
    if seen_twice is None:
        if prepared is None:
            prepared = curated.select(key_hash(curated, key, yearly).alias("_H"))
            if rows is not None and rows <= SMALL_TABLE:
                prepared = prepared.coalesce(1)
            else:
                prepared = prepared.repartition(shuffle_partitions(curated.sparkSession), "_H")
        seen_twice = [r["_H"] for r in repeated_hashes(prepared).collect()]
    if not seen_twice:
        return {}
    df = curated
    if len(seen_twice) <= MAX_EXACT:
        df = df.filter(key_hash(curated, key, yearly).isin(seen_twice))
    df = df.select(*key, year.alias(_YEAR))
    dup = df.groupBy(_YEAR, *key).count().filter(F.col("count") > 1)
    return _collect(dup, F.sum(F.col("count") - 1), F.to_json(F.struct(*key, F.col("count").alias("rows"))))


def repeated_hashes(prepared: DataFrame) -> DataFrame:
    """The hashes (column ``_H``) seen more than once, at most ``MAX_EXACT`` + 1 of them. On hashes cached
    partitioned and sorted (``parent_hashes``, persisted for the children), Spark counts them as they stream by (a
    sort aggregation: ``spark.sql.execution.replaceHashWithSortAgg``, on by default in Spark 4) rather than in a
    hash table of millions of keys: measured on ER_PRS_F's 4.5 M hashes, 0.3 s against 1.0 s with the setting off.
    Uncached, Spark drops the sort that an aggregation does not need, and hashes them."""
    return prepared.groupBy("_H").count().filter(F.col("count") > 1).select("_H").limit(MAX_EXACT + 1)


def _matching(curated: DataFrame, key: list[str], yearly: bool, hashes: DataFrame,
              how: str) -> dict[int | None, KeyResult]:
    """Rows of ``curated`` whose key hash is (semi) or is not (anti) among ``hashes``; samples show full keys."""
    mine = curated
    year = _year(mine, yearly).alias(_YEAR)
    mine = mine.select(_hash([F.col(c) for c in key]).alias("_H"), year)
    found = mine.join(hashes, on="_H", how=how)
    rows = found.groupBy(_YEAR).agg(F.count(F.lit(1)).alias("n"), sample_agg(F.col("_H")).alias("s")).collect()
    out = {r[_YEAR]: KeyResult(int(r["n"]), []) for r in rows}
    picked = [h for r in rows for h in (r["s"] or [])]
    if picked:
        for r in curated.filter(_hash([F.col(c) for c in key]).isin(picked)).select(
                _year(curated, yearly).alias(_YEAR), F.to_json(F.struct(*key)).alias("j")).distinct().collect():
            if r[_YEAR] in out and len(out[r[_YEAR]].sample) < SAMPLE_SIZE:
                out[r[_YEAR]].sample.append(json.loads(r["j"]))
    return out


def already_in_state(curated: DataFrame, state: DataFrame, key: list[str], yearly: bool) -> dict[int | None, KeyResult]:
    """Rows of the delivery whose key is already in the family's current state (a semi-join on key hashes)."""
    same_year = yearly and domain.YEAR_COLUMN in state.columns
    theirs = state.select(_hash([F.col(c) for c in key] + ([F.col(domain.YEAR_COLUMN)] if same_year else []))
                          .alias("_H"))
    cols = list(key) + ([domain.YEAR_COLUMN] if same_year else [])
    return _matching(curated, cols, yearly, theirs, "left_semi")


def link_casts(child_types: dict[str, str], parent_types: dict[str, str], link: domain.Link) -> tuple[bool, ...]:
    """Per column pair of a link: whether both sides are compared as strings (their types differ). Types as
    ``DataFrame.dtypes`` gives them."""
    return tuple(parent_types.get(p) != child_types.get(c) for c, p in link.pairs)


def _link_hash(columns: tuple[str, ...], casts: tuple[bool, ...], same_year: bool) -> Column:
    """The hash of one side's link values (as strings where the two sides' types differ), plus the year for a
    same-year PMSI link: parent and child hashes are equal exactly when their values are."""
    cols = [F.col(c).cast("string") if cast else F.col(c) for c, cast in zip(columns, casts)]
    return _hash(cols + ([F.col(domain.YEAR_COLUMN)] if same_year else []))


def link_hashes(parent: DataFrame, link: domain.Link, casts: tuple[bool, ...], same_year: bool,
                keep_year: bool = False) -> DataFrame:
    """64-bit hashes of the parent's link values (plus the year for same-year PMSI links), one column ``_H``, in
    the parent's own partitioning: what a probe broadcasts. With ``keep_year``, the year column beside it."""
    theirs = parent
    for p in link.parent_columns:
        theirs = theirs.filter(F.col(p).isNotNull())
    return theirs.select(_link_hash(link.parent_columns, casts, same_year).alias("_H"),
                         *([F.col(domain.YEAR_COLUMN)] if keep_year else []))


def parent_hashes(parent: DataFrame, link: domain.Link, casts: tuple[bool, ...], same_year: bool) -> DataFrame:
    """``link_hashes`` hash-partitioned and sorted as the anti-joins want them: once cached, each child family
    that points to this parent shuffles and sorts only its own hashes (measured: about half the time of an
    unprepared parent)."""
    partitions = shuffle_partitions(parent.sparkSession)
    return link_hashes(parent, link, casts, same_year).repartition(partitions, "_H").sortWithinPartitions("_H")


def child_link_hash(link: domain.Link, casts: tuple[bool, ...], same_year: bool) -> Column:
    """The hash of a child row's link values, comparable with ``parent_hashes`` of the same casts and year."""
    return _link_hash(link.columns, casts, same_year)


def child_link_checked(link: domain.Link) -> Column:
    """Whether a child row's link is checked: every link value present, and no placeholder NIR."""
    keep = F.lit(True)
    for c in link.columns:
        keep = keep & F.col(c).isNotNull()
        if c in domain.PSEUDO_NIR_COLUMNS:
            keep = keep & ~F.col(c).isin(sorted(domain.PLACEHOLDER_NIRS))
    return keep


def probe(rows: DataFrame, theirs: DataFrame, link: domain.Link, casts: tuple[bool, ...], same_year: bool,
          found: str) -> DataFrame:
    """``rows`` with a boolean column ``found``: whether the row's link hash is among ``theirs``.

    An existence join with the parent's hashes broadcast (a repeated hash is harmless, so they are not
    de-duplicated first), so that a child checks a small parent during the pass that writes it, without a query
    of its own (see ``PROBED_PARENT_ROWS``)."""
    key = f"{found}_K"
    hit = F.broadcast(theirs).where(F.col("_H") == F.col(key).outer()).exists()
    return rows.withColumn(key, child_link_hash(link, casts, same_year)).withColumn(found, hit).drop(key)


def orphans(curated: DataFrame, theirs: DataFrame, link: domain.Link, yearly: bool, casts: tuple[bool, ...],
            same_year: bool, how: str = "left_anti") -> dict[int | None, KeyResult]:
    """Child rows whose link columns match no parent row (empty link values and placeholder NIRs excluded).

    An anti-join of the child's link-value hashes with ``parent_hashes``: only hashes are shuffled. A child row
    could only be missed if its hash equalled a parent's of other values (probability about parent rows / 2^64
    per orphan). With ``how="left_semi"``, the rows whose link values are among ``theirs`` instead (the keys
    a full delivery of the parent removed, ``orphaned``)."""
    mine = curated.filter(child_link_checked(link))
    year = _year(mine, yearly).alias(_YEAR)
    hashed = mine.select(child_link_hash(link, casts, same_year).alias("_H"), year)
    rows = (hashed.join(theirs, on="_H", how=how).groupBy(_YEAR)
            .agg(F.count(F.lit(1)).alias("n"), sample_agg(F.col("_H")).alias("s")).collect())
    out = {r[_YEAR]: KeyResult(int(r["n"]), []) for r in rows}
    picked = [h for r in rows for h in (r["s"] or [])]
    if picked:
        for r in mine.filter(child_link_hash(link, casts, same_year).isin(picked)).select(
                _year(mine, yearly).alias(_YEAR), F.to_json(F.struct(*link.columns)).alias("j")).distinct().collect():
            if r[_YEAR] in out and len(out[r[_YEAR]].sample) < SAMPLE_SIZE:
                out[r[_YEAR]].sample.append(json.loads(r["j"]))
    return out


def orphans_of_any(curated: DataFrame, links: list[tuple[DataFrame, domain.Link, tuple[bool, ...], bool]],
                   yearly: bool, how: str = "left_anti") -> dict[int | None, int]:
    """Child rows that match no parent row on at least one of ``links`` (each: the parent's ``link_hashes``, the
    link, its casts, whether it holds within a year), by year: a row breaking two links is one failing row of the
    ``foreign_key`` check, as SPEC §6 counts rows, not one per link. One query, an existence join per link. With
    ``how="left_semi"``, the rows whose values on at least one link are among the hashes (``orphans``)."""
    rows, broken = curated, F.lit(False)
    for i, (theirs, link, casts, same_year) in enumerate(links):
        key, found = f"_L{i}", f"_F{i}"
        hit = theirs.where(F.col("_H") == F.col(key).outer()).exists()
        rows = rows.withColumn(key, child_link_hash(link, casts, same_year)).withColumn(found, hit)
        broken = broken | (child_link_checked(link) & (F.col(found) if how == "left_semi" else ~F.col(found)))
    counted = rows.filter(broken).groupBy(_year(rows, yearly).alias(_YEAR)).count().collect()
    return {r[_YEAR]: int(r["count"]) for r in counted}


def off_nomenclature(spark: SparkSession, curated: DataFrame, large: list[LargeNomenclature],
                     yearly: bool, sample_keys: list[str] = ()) -> dict[tuple[int | None, str], KeyResult]:
    """Rows whose coded value is absent from a long nomenclature: one job for every such column of the table,
    on its distinct values; then, for a column that failed, one more to sample a row of each value sampled (its
    ``sample_keys``, as the other row rules' samples show them)."""
    if not large:
        return {}
    pairs = F.array(*[F.struct(F.lit(n.column).alias("c"), F.col(n.column).cast("string").alias("v")) for n in large])
    values = (curated.select(_year(curated, yearly).alias(_YEAR), F.explode(pairs).alias("p"))
              .select(_YEAR, "p.c", "p.v").filter(F.col("v").isNotNull())
              .groupBy(_YEAR, "c", "v").count())
    codes = spark.createDataFrame([(n.column, str(code)) for n in large for code in n.codes], "c string, v string")
    missing = values.join(codes, on=["c", "v"], how="left_anti")
    rows = (missing.groupBy(_YEAR, "c")
            .agg(F.sum("count").alias("n"), sample_agg(F.col("v")).alias("s"))
            .collect())
    return {(r[_YEAR], r["c"]): KeyResult(int(r["n"]), _rows_of_values(curated, r["c"], (r["s"] or [])[:SAMPLE_SIZE],
                                                                       r[_YEAR], yearly, sample_keys))
            for r in rows}


def _rows_of_values(curated: DataFrame, column: str, values: list[str], year: int | None, yearly: bool,
                    sample_keys: list[str]) -> list[dict]:
    """One row of each of ``values`` of ``column`` (in ``year``), for a sample: the column, the value and the keys."""
    value = F.col(column).cast("string")
    if not sample_keys:
        return [{"column": column, "value": v} for v in values]
    found = value.isin(*values)
    if yearly and year is not None and domain.YEAR_COLUMN in curated.columns:
        found = found & (F.col(domain.YEAR_COLUMN) == year)
    row = F.to_json(F.struct(F.lit(column).alias("column"), value.alias("value"), *[F.col(k) for k in sample_keys]))
    picked = {r["v"]: json.loads(r["s"]) for r in curated.where(found).groupBy(value.alias("v"))
              .agg(F.min(row).alias("s")).collect()}
    return [picked.get(v, {"column": column, "value": v}) for v in values]


def rows_off_nomenclatures(spark: SparkSession, curated: DataFrame, large: list[LargeNomenclature],
                           inline_fail: str | None, yearly: bool,
                           years: set[int | None]) -> dict[int | None, int]:
    """Rows failing at least one nomenclature, long or inline, in ``years``: a row off two lists is one failing
    row (SPEC §6 counts rows). Asked only for the years where two sources failed: one job, an existence join per
    long list."""
    rows, off = curated, F.coalesce(F.expr(inline_fail), F.lit(False)) if inline_fail else F.lit(False)
    for i, n in enumerate(large):
        codes = spark.createDataFrame([(str(code),) for code in n.codes], "v string")
        value = F.col(n.column).cast("string")
        rows = rows.withColumn(f"_N{i}", codes.where(F.col("v") == value.outer()).exists())
        off = off | (value.isNotNull() & ~F.col(f"_N{i}"))
    year = _year(curated, yearly)
    if None not in years:
        off = off & year.isin(*years)
    counted = rows.filter(off).groupBy(year.alias(_YEAR)).count().collect()
    return {r[_YEAR]: int(r["count"]) for r in counted}
