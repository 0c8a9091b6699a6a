"""Row-level rules evaluated on curated rows, all in the Spark pass that writes the curated table.

Each rule is a boolean Spark SQL expression (text: cheap to hand to Spark) that is true on a failing row. The
curation step counts, through ``DataFrame.observe`` while it writes, the rows failing any rule of a check, so
adding a rule adds to an expression of that pass, never a Spark job; a failed check's count per rule and its
samples come afterwards from the written partition. Rules belong to a check (SPEC §6):

- ``range``: dates and datetimes between 1900-01-01 and the delivery date (1600-01-01, the SNDS "unknown date",
  is fine; a DCIR flow's release within the 19 years plus the current one the base keeps), years likewise, numeric
  ``minimum`` / ``maximum`` constraints of the schema;
- ``domain``: the documented SNDS rules of ``domain.domain_rules`` and the schema's ``enum`` constraints;
- ``nomenclature``: coded values present in their nomenclature (``SNDS_NOMENCLATURES``). Code lists up to
  ``SMALL_CODE_LIST`` codes are checked inline; longer ones by one anti-join on distinct values after the write.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

from pyspark.sql import types as T

from .. import domain
from ..catalog import Table, integer_code, locate_nomenclature
from .columns import ColumnPlan, sql_name, sql_string

SMALL_CODE_LIST = 5000
NUMERIC = (T.IntegerType, T.LongType, T.DoubleType)


@dataclass(frozen=True)
class RowRule:
    check: str  # range | domain | nomenclature
    name: str  # unique within a table, e.g. "range:EXE_SOI_DTD", "domain:dpn_qlf"
    column: str
    fail: str  # Spark SQL, true on a failing row (never null)
    value: str  # Spark SQL, the failing value as text, for samples
    context: tuple[str, ...] = ()  # the other columns the rule compares, shown beside the value in samples


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
    notes: list[str]  # why some coded columns are not checked


def _never_null(condition: str) -> str:
    return f"coalesce({condition}, false)"


def _text(column: str) -> str:
    return f"CAST({sql_name(column)} AS STRING)"


def _number(value: int | float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**62 else repr(float(value))


def _values(values) -> str:
    return ", ".join(sql_string(str(v)) for v in values)


def _not_in(plan: ColumnPlan | None, column: str, values) -> str:
    """``column`` holds none of ``values`` (the catalog's or SNDS.md's text). An integer column is compared as
    integers: the same verdict as comparing its text (only canonical integer text can equal an integer's), without
    turning every row's value into a string (measured: the costliest of ER_PRS_F's rules)."""
    c = sql_name(column)
    if plan is not None and isinstance(plan.dtype, (T.IntegerType, T.LongType)):
        numbers = sorted({int(v) for v in map(str, values) if re.fullmatch(r"-?[0-9]+", v) and str(int(v)) == v})
        return f"{c} IS NOT NULL AND NOT {c} IN ({', '.join(map(str, numbers))})" if numbers else f"{c} IS NOT NULL"
    return f"{c} IS NOT NULL AND {_text(column)} NOT IN ({_values(values)})"


def range_rules(plans: list[ColumnPlan], delivered: set[str], delivery: date, table: Table) -> list[RowRule]:
    rules = []
    first, unknown = f"DATE'{domain.PLAUSIBLE_FIRST_DATE.isoformat()}'", f"DATE'{domain.UNKNOWN_DATE.isoformat()}'"
    last = f"DATE'{delivery.isoformat()}'"
    for p in plans:
        if p.field is None or p.name not in delivered:
            continue
        c = sql_name(p.name)
        if isinstance(p.dtype, (T.DateType, T.TimestampType, T.TimestampNTZType)):
            day = c if isinstance(p.dtype, T.DateType) else f"to_date({c})"
            earliest = (f"DATE'{domain.first_retained_day(delivery).isoformat()}'"
                        if p.name in domain.RETAINED_DATES else first)
            fail = f"({day} < {earliest} AND {day} <> {unknown})"
            if p.name not in domain.OPEN_END_DATES:
                fail = f"({fail} OR {day} > {last})"
            rules.append(RowRule("range", f"range:{p.name}", p.name, _never_null(fail), _text(p.name)))
        elif p.kind == "year":
            fail = (f"(({c} < {domain.PLAUSIBLE_FIRST_DATE.year} AND {c} <> {domain.UNKNOWN_YEAR}) "
                    f"OR {c} > {delivery.year})")
            rules.append(RowRule("range", f"range:{p.name}", p.name, _never_null(fail), _text(p.name)))
        elif isinstance(p.dtype, NUMERIC):
            lo, hi = domain.numeric_bounds(table, p.field)
            conds = []
            if lo is not None:
                conds.append(f"{c} < {_number(lo)}")
            if hi is not None:
                conds.append(f"{c} > {_number(hi)}")
            if conds:
                rules.append(RowRule("range", f"range:{p.name}", p.name, _never_null(" OR ".join(conds)),
                                     _text(p.name)))
    return rules


def domain_rules(table: Table, plans: list[ColumnPlan], delivered: set[str]) -> list[RowRule]:
    rules = []
    by_name = {p.name: p for p in plans}
    for rule in domain.domain_rules(table):
        if rule.column not in delivered:
            continue
        if rule.values:
            fail = _not_in(by_name.get(rule.column), rule.column, rule.values)
        else:
            fail = f"NOT coalesce(({rule.expr}), true)"
        context = tuple(c for c in rule.columns[1:] if c in delivered)
        rules.append(RowRule("domain", f"domain:{rule.name}:{rule.column}", rule.column, _never_null(fail),
                             _text(rule.column), context))
    for p in plans:
        if p.field is None or p.name not in delivered or not domain.enum_checked(p.field):
            continue
        fail = _not_in(p, p.name, [str(v) for v in p.field.constraints["enum"]])
        rules.append(RowRule("domain", f"domain:enum:{p.name}", p.name, _never_null(fail), _text(p.name)))
    return rules


def nomenclature_plan(plans: list[ColumnPlan], delivered: set[str], root: str | None) -> NomenclaturePlan:
    """Inline rules for short code lists, anti-join work for long ones, and notes on what is not checked."""
    out = NomenclaturePlan([], [], [])
    if root is None:
        return out
    for p in plans:
        f = p.field
        if f is None or p.name not in delivered or not domain.nomenclature_checked(f):
            continue
        located = locate_nomenclature(root, f.nomenclature, f.name)
        if located is None:
            out.notes.append(f"{p.name}: nomenclature {f.nomenclature[0]} not found")
            continue
        numeric = isinstance(p.dtype, (T.IntegerType, T.LongType))
        decimal = isinstance(p.dtype, T.DoubleType)
        codes = load_codes(str(located.path), located.code_column, numeric, decimal)
        if codes is None:
            out.notes.append(f"{p.name}: column {located.code_column} not in {located.path.name}")
            continue
        width = int(f.length) if f.length and f.length.isdigit() and not (numeric or decimal) else None
        if not codes or (width and not any(len(v) <= width for v in codes)):
            # nothing the column could hold: IR_CAI_V's 6-character ORG_BSE_NUM for the 3 of CAI_AFF_COD, a
            # number column against codes none of which is a number
            kind = "integer " if numeric else "number " if decimal else f"at most {width}-character " if width else ""
            out.notes.append(f"{p.name}: no {kind}code in {located.path.name} ({located.code_column})")
            continue
        c = sql_name(p.name)
        if len(codes) <= SMALL_CODE_LIST:
            listed = (", ".join(str(v) for v in sorted(codes)) if numeric
                      else ", ".join(f"{v!r}D" for v in sorted(codes)) if decimal else _values(sorted(codes)))
            fail = f"{c} IS NOT NULL AND NOT {c} IN ({listed})"
            out.rules.append(RowRule("nomenclature", f"nomenclature:{located.name}:{p.name}", p.name,
                                     _never_null(fail), _text(p.name)))
        else:
            out.large.append(LargeNomenclature(p.name, located.name, codes, numeric))
    return out


@lru_cache(maxsize=256)
def load_codes(path: str, column: str, numeric: bool, decimal: bool = False) -> frozenset | None:
    """The codes of a nomenclature CSV (``;``-separated, schema-snds layout); integers for an integer column, a
    code written with a zero decimal part included (IR_TAU_V's ``65.00`` for ER_ARO_F's integer ARO_THE_TAU);
    floats for a number column (``37.50`` is 37.5, which its text ``37.5`` would not match)."""
    with Path(path).open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter=";")
        header = [h.strip().lstrip("\ufeff").upper() for h in next(reader, [])]
        if column.upper() not in header:
            return None
        index = header.index(column.upper())
        values = {row[index].strip() for row in reader if len(row) > index and row[index].strip()}
    if decimal:
        return frozenset(float(v) for v in values if re.fullmatch(r"-?([0-9]+([.][0-9]*)?|[.][0-9]+)", v))
    if not numeric:
        return frozenset(values)
    return frozenset(n for n in map(integer_code, values) if n is not None)
