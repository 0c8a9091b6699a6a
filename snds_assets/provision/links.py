"""How rows reach a person (SPEC §3), shared by identification and extraction.

Every rule here reads the domain model (keys, links, return codes, placeholders) instead of naming tables, so
that a family added to the catalog is linked the same way as its siblings.
"""
from __future__ import annotations

from datetime import date
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from .. import domain
from ..catalog import Table
from .source import DELIVERY_COLUMN, TableSource, read_optional

PSA, RNG, IDT, ANO, NIR17 = "BEN_NIR_PSA", domain.RANK_COLUMN, domain.PERSON_COLUMN, domain.NIR_ANO_COLUMN, "NIR_ANO_17"
YEAR = domain.YEAR_COLUMN
NIR_UNIQUE = "NIR_UNIQUE"  # the identity's pseudo-NIR names exactly one person in the base (PMSI can use it)
BENEFICIARIES = domain.BENEFICIARY_TABLE


class MissingTable(LookupError):
    """A table the provision needs is not in the current state."""


def as_date(df: DataFrame, column: str) -> Column:
    """A date view of a date, timestamp or text column (text that is not a date gives null, never an error)."""
    dtype = df.schema[column].dataType
    if isinstance(dtype, T.DateType):
        return F.col(column)
    if isinstance(dtype, (T.TimestampType, T.TimestampNTZType)):
        return F.to_date(F.col(column))
    return F.try_to_date(F.col(column).cast("string"))


def in_period(df: DataFrame, column: str, start: date, end: date) -> Column:
    """Inclusive on both edges; the 1600-01-01 convention is never in a real period."""
    return as_date(df, column).between(F.lit(start), F.lit(end))


def _eq(left: Column, ltype: T.DataType, right: Column, rtype: T.DataType) -> Column:
    """Equality across the type drift of the schemas (RSA_NUM is an integer in T_MCOaaC, text in T_MCOaaD)."""
    if ltype == rtype:
        return left == right
    numeric = (T.IntegralType, T.DecimalType, T.FractionalType)
    if isinstance(ltype, T.StringType) and isinstance(rtype, numeric):
        return left.try_cast(rtype) == right
    if isinstance(rtype, T.StringType) and isinstance(ltype, numeric):
        return left == right.try_cast(ltype)
    if isinstance(ltype, numeric) and isinstance(rtype, numeric):
        return left == right
    return left.cast("string") == right.cast("string")


def semi_join(rows: DataFrame, keys: DataFrame, columns: tuple[str, ...] | list[str], how: str = "left_semi",
              broadcast: bool = False) -> DataFrame:
    """``rows`` that have (``left_semi``) or lack (``left_anti``) a match in ``keys`` on ``columns``."""
    columns = list(columns)
    right = keys.select(*[F.col(c).alias(f"__k{i}") for i, c in enumerate(columns)])
    if broadcast:
        right = F.broadcast(right)
    cond = reduce(lambda a, b: a & b, [
        _eq(rows[c], rows.schema[c].dataType, right[f"__k{i}"], keys.schema[c].dataType) for i, c in enumerate(columns)
    ])
    return rows.join(right, on=cond, how=how)


def link_columns(link: domain.Link) -> tuple[str, ...]:
    return link.columns + ((YEAR,) if link.same_year else ())


def unambiguous(rows: DataFrame, link: domain.Link, parent_table: Table, source: TableSource,
                found: dict[tuple[str, tuple[str, ...]], DataFrame]) -> DataFrame:
    """``rows`` of a child but those whose link values the parent's rows hold for more than one person: a key CNAM
    delivered again for another person (reception's ``primary_key_state`` reports it) names no one person, so such a
    row (a drug line of either person's care line) goes to no extract and matches no criterion. Rows are counted by
    person, so a line delivered again under another identity of the same person stays that person's. Only a link on
    the parent's whole primary key names one row (ER_DCT_F's seven keys name a statement's lines, which may be
    several persons'); asked of the parent's whole state only when the source says that it may repeat a key, once per
    caller: ``found`` (a ``Selector``'s, the cohort's event finder's) keeps the values found, cached, for the
    parent's other children, until ``release``. ``run_extract`` makes a ``Selector`` per family."""
    if set(link.parent_columns) != set(parent_table.primary_key) or not source.repeats_keys(parent_table.name):
        return rows
    columns = link_columns(link)
    if (parent_table.name, columns) not in found:
        found[(parent_table.name, columns)] = _held_by_two_persons(
            source.read(parent_table.name), columns, domain.identifier_columns(parent_table), source).cache()
    return semi_join(rows, found[(parent_table.name, columns)], columns, how="left_anti")


def release(found: dict[tuple[str, tuple[str, ...]], DataFrame]) -> None:
    """Unpersist what ``unambiguous`` cached for a run: a long-lived session (Dagster's, a test suite's) would
    otherwise keep it to its end."""
    for frame in found.values():
        frame.unpersist()
    found.clear()


def _held_by_two_persons(parent: DataFrame, columns: tuple[str, ...], ident: tuple[str, ...],
                         source: TableSource) -> DataFrame:
    """The link values of ``parent`` rows that name more than one person. Identities are counted first, in one
    aggregation: only the rows of values held by two identities (a repeated key; almost always none) are then
    matched to persons, so that the beneficiaries are never joined to the whole parent, nor broadcast whole."""
    identity = F.concat_ws("\u0001", *[F.col(c).cast("string") for c in ident])
    twice = (parent.groupBy(*columns).agg(F.count_distinct(identity).alias("_identities"))
             .where(F.col("_identities") > 1).select(*columns))
    candidates = semi_join(parent.select(*dict.fromkeys((*columns, *ident))), twice, columns)
    persons = _with_person(candidates, ident, identity, source)
    return (persons.groupBy(*columns).agg(F.count_distinct("_PERSON").alias("_persons"))
            .where(F.col("_persons") > 1).select(*columns))


def _with_person(rows: DataFrame, ident: tuple[str, ...], identity: Column, source: TableSource) -> DataFrame:
    """``rows`` with ``_PERSON``: the BEN_IDT_ANO their identity (or pseudo-NIR naming one person) resolves to, else
    the ``identity`` itself (a beneficiary the lake does not know is a person of its own). Only the beneficiaries
    of ``rows``' pseudo-NIRs are read into the join."""
    if ident == (PSA, RNG):
        known = beneficiary_rows(source).where(F.col(IDT).isNotNull()).select(
            F.col(PSA).alias("_P"), F.col(RNG).alias("_R"), F.col(IDT).alias("_I"))
        on = [(PSA, "_P"), (RNG, "_R")]
    elif len(ident) == 1:
        known = unique_nirs(beneficiary_rows(source)).select(F.col(PSA).alias("_P"), F.col(IDT).alias("_I"))
        on = [(ident[0], "_P")]
    else:
        return rows.withColumn("_PERSON", identity)
    known = known.join(rows.select(F.col(on[0][0]).alias("_P")).distinct(), "_P", "left_semi")
    cond = reduce(lambda a, b: a & b, [
        _eq(rows[mine], rows.schema[mine].dataType, known[theirs], known.schema[theirs].dataType)
        for mine, theirs in on])
    return rows.join(known, cond, "left").withColumn("_PERSON", F.coalesce(F.col("_I"), identity))


# --- Persons and identities -------------------------------------------------------------------------------
def beneficiary_rows(source: TableSource, archives: bool = True) -> DataFrame:
    """IR_BEN_R read together with its archive (unless ``archives`` is false): (BEN_NIR_PSA, BEN_RNG_GEM, BEN_IDT_ANO,
    BEN_NIR_ANO, birth, sex). A row without BEN_IDT_ANO is kept: it names no person, but an unknown beneficiary shares
    its pseudo-NIR."""
    archives = [read_optional(source, a) for a in domain.archives_of(BENEFICIARIES)] if archives else []
    frames = [f for f in [source.read(BENEFICIARIES), *archives] if f is not None]
    if not frames:
        raise MissingTable(f"{BENEFICIARIES} is not in the current state: no person can be identified (no accepted "
                           "delivery brought it: run snds ingest of a delivery that does)")
    wanted = [PSA, RNG, IDT, ANO, domain.BIRTH_YEAR_COLUMN, domain.SEX_COLUMN]
    cast = {RNG: "int", domain.BIRTH_YEAR_COLUMN: "int", domain.SEX_COLUMN: "int"}
    parts = []
    for frame in frames:
        cols = []
        for c in wanted:
            col = F.col(c) if c in frame.columns else F.lit(None)
            cols.append((col.try_cast(cast[c]) if c in cast else col.cast("string")).alias(c))
        parts.append(frame.select(*cols))
    rows = reduce(DataFrame.unionByName, parts)
    return rows.where(F.col(PSA).isNotNull())


def one_person() -> Column:
    """Aggregate over the rows of one pseudo-NIR: they name exactly one person, and none of them an unknown one
    (a row without BEN_IDT_ANO), so that a stay is never given to the wrong beneficiary."""
    return (F.countDistinct(IDT) == 1) & ~F.bool_or(F.col(IDT).isNull())


def identities(rows: DataFrame) -> DataFrame:
    """One row per (pseudo-NIR, rank, person), with NIR_UNIQUE: does that pseudo-NIR name only this person?"""
    ids = rows.where(F.col(IDT).isNotNull()).groupBy(PSA, RNG, IDT).agg(F.max(ANO).alias(ANO))
    per_nir = rows.groupBy(PSA).agg(one_person().alias(NIR_UNIQUE))
    return ids.join(per_nir, PSA)


def unique_nirs(rows: DataFrame) -> DataFrame:
    """(BEN_NIR_PSA, BEN_IDT_ANO) of the pseudo-NIRs that resolve to exactly one person (twins excluded)."""
    return (rows.groupBy(PSA).agg(one_person().alias("__one"), F.min(IDT).alias(IDT))
            .where(F.col("__one")).drop("__one"))


# --- Rows that count for a person -----------------------------------------------------------------------------
def valid_pmsi_links(table: Table, df: DataFrame, start: date, end: date,
                     absent: dict[tuple[str, int | None], frozenset[str]] | None = None) -> DataFrame:
    """Rows of a PMSI link table (C) whose patient link is good (SPEC §3), in the period.

    Good: NIR_ANO_17 present and not a placeholder, every return code '0' where the year's files carry it (SNDS.md:
    COH_NAI_RET and COH_SEX_RET from 2013). An empty code of a year whose files do not carry it by the schema's
    history (``Field.history``) is no bad link; an empty one of a later year is, as any code other than '0', but
    for COH_NAI_RET and COH_SEX_RET in the rows of a delivered table whose files did not bring them (``absent``,
    the source's: SPEC §3 "where present"), which would otherwise lose every stay of that year.
    """
    cond = in_period(df, domain.CARE_START, start, end) if domain.CARE_START in df.columns else F.lit(False)
    cond = cond & F.col(NIR17).isNotNull() & ~F.col(NIR17).isin(*sorted(domain.PLACEHOLDER_NIRS))
    for code in domain.PMSI_RETURN_CODES:
        if code in df.columns:
            value = F.trim(F.col(code).cast("string"))
            excused = _not_carried(table, code, df)
            if code in domain.RETURN_CODES_WHERE_PRESENT:
                excused = excused | _not_delivered(code, df, absent or {})
            cond = cond & ((value == "0") | (value.isNull() & excused))
    return df.where(cond)


def _not_delivered(column: str, df: DataFrame, absent: dict[tuple[str, int | None], frozenset[str]]) -> Column:
    """The row comes from a delivered table (delivery, year) some file of which did not bring ``column``."""
    out = F.lit(False)
    if DELIVERY_COLUMN not in df.columns:
        return out
    for (delivery_id, year), columns in sorted(absent.items(), key=str):
        if column in columns:
            same = F.col(DELIVERY_COLUMN) == F.lit(delivery_id)
            if year is not None and YEAR in df.columns:
                same = same & (F.col(YEAR) == F.lit(year))
            out = out | same
    return out


def _not_carried(table: Table, column: str, df: DataFrame) -> Column:
    """The row's year is one whose files do not carry ``column``, by the schema's history."""
    field = table.by_name.get(column)
    if field is None or YEAR not in df.columns:
        return F.lit(False)
    created, deleted = field.history
    year, out = F.col(YEAR), F.lit(False)
    if created is not None:
        out = out | (year < created)
    if deleted is not None:
        out = out | (year >= deleted)
    return out


def not_information_only(df: DataFrame) -> Column:
    """DPN_QLF 71 marks a line sent for information only; an empty DPN_QLF counts as a real line."""
    if domain.DPN_QLF_COLUMN not in df.columns:
        return F.lit(True)
    value = F.col(domain.DPN_QLF_COLUMN).cast("string").try_cast("int")
    return F.coalesce(value != F.lit(domain.INFORMATION_ONLY_DPN_QLF), F.lit(True))


def overlaps(df: DataFrame, start_col: str, end_col: str, start: date, end: date) -> Column:
    """[start_col, end_col] meets the period; an empty or 1600-01-01 end means ongoing, an unknown start always began."""
    begin, finish = as_date(df, start_col), as_date(df, end_col)
    started = begin.isNull() | (begin <= F.lit(end))
    ongoing = finish.isNull() | (finish == F.lit(domain.UNKNOWN_DATE)) | (finish >= F.lit(start))
    return started & ongoing


def dated_rows(table: Table, df: DataFrame, start: date, end: date, targeting: bool,
               source: TableSource | None = None) -> DataFrame:
    """Patient-bearing rows within the period: care lines by start of care (targeting also drops
    information-only DCIR lines), ALD rows by overlap, PMSI link rows by a good link (the columns ``source``'s
    delivered tables did not bring: see ``valid_pmsi_links``); referentials as they are."""
    if domain.is_link_table(table):
        return valid_pmsi_links(table, df, start, end, source.absent(table.name) if source is not None else None)
    if domain.ALD_START in df.columns and domain.ALD_END in df.columns and targeting:
        return df.where(overlaps(df, domain.ALD_START, domain.ALD_END, start, end))
    date_col = domain.care_date_column(table)
    if date_col and date_col in df.columns:
        df = df.where(in_period(df, date_col, start, end))
        if targeting:
            df = df.where(not_information_only(df))
    return df


def match_codes(df: DataFrame, columns: tuple[str, ...], codes: tuple[str, ...], mode: str) -> Column:
    """Any of ``columns`` holds one of ``codes`` (``prefix``: starts with one of them)."""
    conds = []
    for column in columns:
        if column not in df.columns:
            continue
        value = F.upper(F.trim(F.col(column).cast("string")))
        if mode == "prefix":
            conds.extend(value.startswith(code) for code in codes)
        else:
            conds.append(value.isin(*codes))
    return reduce(lambda a, b: a | b, conds) if conds else F.lit(False)
