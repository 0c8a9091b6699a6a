"""Row-level rules evaluated on curated rows, all in the Spark pass that writes the curated table.

Each rule is a boolean Spark expression that is true on a failing row; the curation step sums them (and keeps
a couple of failing values as a sample) through ``DataFrame.observe`` while it writes, so adding a rule adds
an aggregate to that pass, never a Spark job. Rules belong to a check (SPEC §6):

- ``range``: dates and datetimes between 1900-01-01 and the delivery date (1600-01-01, the SNDS "unknown date",
  is fine), years likewise, numeric ``minimum`` / ``maximum`` constraints of the schema;
- ``domain``: the documented SNDS rules of ``domain.domain_rules`` and the schema's ``enum`` constraints;
- ``nomenclature``: coded values present in their nomenclature (``SNDS_NOMENCLATURES``). Code lists up to
  ``SMALL_CODE_LIST`` codes are checked inline; longer ones by one anti-join on distinct values after the write.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from .. import domain
from ..catalog import Table, locate_nomenclature
from .columns import ColumnPlan

SMALL_CODE_LIST = 5000
NUMERIC = (T.IntegerType, T.LongType, T.DoubleType)


@dataclass(frozen=True)
class RowRule:
    check: str  # range | domain | nomenclature
    name: str  # unique within a table, e.g. "range:EXE_SOI_DTD", "domain:dpn_qlf"
    column: str
    fail: Column  # true on a failing row (never null)
    value: Column  # the failing value as text, for samples


@dataclass(frozen=True)
class LargeNomenclature:
    """A coded column whose nomenclature is too long to inline: checked by an anti-join after the write."""

    column: str
    nomenclature: str
    codes: frozenset
    numeric: bool


@dataclass
class NomenclaturePlan:
    rules: list[RowRule]
    large: list[LargeNomenclature]
    checked: list[str]  # columns checked (inline or by anti-join)
    notes: list[str]  # why some coded columns are not checked


def range_rules(plans: list[ColumnPlan], delivered: set[str], delivery: date) -> list[RowRule]:
    rules = []
    first, unknown = F.lit(domain.PLAUSIBLE_FIRST_DATE), F.lit(domain.UNKNOWN_DATE)
    for p in plans:
        if p.field is None or p.name not in delivered:
            continue
        c = F.col(p.name)
        if isinstance(p.dtype, (T.DateType, T.TimestampType)):
            day = F.to_date(c) if isinstance(p.dtype, T.TimestampType) else c
            fail = ((day < first) & (day != unknown)) | (day > F.lit(delivery))
            rules.append(RowRule("range", f"range:{p.name}", p.name, F.coalesce(fail, F.lit(False)), c.cast("string")))
        elif p.kind == "year":
            fail = ((c < domain.PLAUSIBLE_FIRST_DATE.year) & (c != domain.UNKNOWN_YEAR)) | (c > delivery.year)
            rules.append(RowRule("range", f"range:{p.name}", p.name, F.coalesce(fail, F.lit(False)), c.cast("string")))
        elif isinstance(p.dtype, NUMERIC):
            lo, hi = p.field.constraints.get("minimum"), p.field.constraints.get("maximum")
            conds = []
            if isinstance(lo, (int, float)):
                conds.append(c < F.lit(lo))
            if isinstance(hi, (int, float)):
                conds.append(c > F.lit(hi))
            if conds:
                fail = conds[0] if len(conds) == 1 else conds[0] | conds[1]
                rules.append(RowRule("range", f"range:{p.name}", p.name, F.coalesce(fail, F.lit(False)),
                                     c.cast("string")))
    return rules


def domain_rules(table: Table, plans: list[ColumnPlan], delivered: set[str]) -> list[RowRule]:
    rules = []
    for rule in domain.domain_rules(table):
        if rule.column not in delivered:
            continue
        c = F.col(rule.column)
        if rule.values:
            fail = c.isNotNull() & ~c.cast("string").isin(list(rule.values))
        else:
            fail = ~F.coalesce(F.expr(rule.expr), F.lit(True))
        rules.append(RowRule("domain", f"domain:{rule.name}:{rule.column}", rule.column,
                             F.coalesce(fail, F.lit(False)), c.cast("string")))
    for p in plans:
        if p.field is None or p.name not in delivered or not domain.enum_checked(p.field):
            continue
        allowed = [str(v) for v in p.field.constraints["enum"]]
        c = F.col(p.name)
        fail = c.isNotNull() & ~c.cast("string").isin(allowed)
        rules.append(RowRule("domain", f"domain:enum:{p.name}", p.name, F.coalesce(fail, F.lit(False)),
                             c.cast("string")))
    return rules


def nomenclature_plan(plans: list[ColumnPlan], delivered: set[str], root: str | None) -> NomenclaturePlan:
    """Inline rules for short code lists, anti-join work for long ones, and notes on what is not checked."""
    out = NomenclaturePlan([], [], [], [])
    if root is None:
        return out
    for p in plans:
        f = p.field
        if f is None or p.name not in delivered or not domain.nomenclature_checked(f):
            continue
        located = locate_nomenclature(root, f.nomenclature)
        if located is None:
            out.notes.append(f"{p.name}: nomenclature {f.nomenclature[0]} not found")
            continue
        numeric = isinstance(p.dtype, (T.IntegerType, T.LongType))
        codes = load_codes(str(located.path), located.code_column, numeric)
        if codes is None:
            out.notes.append(f"{p.name}: column {located.code_column} not in {located.path.name}")
            continue
        out.checked.append(p.name)
        c = F.col(p.name)
        if len(codes) <= SMALL_CODE_LIST:
            fail = c.isNotNull() & ~c.isin(sorted(codes))
            out.rules.append(RowRule("nomenclature", f"nomenclature:{located.name}:{p.name}", p.name,
                                     F.coalesce(fail, F.lit(False)), c.cast("string")))
        else:
            out.large.append(LargeNomenclature(p.name, located.name, codes, numeric))
    return out


@lru_cache(maxsize=256)
def load_codes(path: str, column: str, numeric: bool) -> frozenset | None:
    """The codes of a nomenclature CSV (``;``-separated, schema-snds layout); integers for an integer column."""
    with Path(path).open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter=";")
        header = [h.strip().lstrip("\ufeff").upper() for h in next(reader, [])]
        if column.upper() not in header:
            return None
        index = header.index(column.upper())
        values = {row[index].strip() for row in reader if len(row) > index and row[index].strip()}
    if not numeric:
        return frozenset(values)
    out = set()
    for v in values:
        try:
            out.add(int(v))
        except ValueError:
            continue
    return frozenset(out)
