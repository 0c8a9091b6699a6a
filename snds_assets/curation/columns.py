"""How each delivered column is typed: the Spark type it is curated to, and how its text becomes that type.

Most columns are typed by Spark's CSV parser itself (strings, integers, doubles, dates in the delivery's date
format): that is the cheapest way to type a CSV (measured: a PERMISSIVE typed read with a corrupt-record
column costs about 1.1-1.25x a plain typed read, ``try_cast`` over strings about 1.6x; a DROPMALFORMED read, which
curation tries first, costs what a plain one does). Values the CSV parser cannot type for us are read as text and
converted with ``try_*`` functions: booleans (0/1/true/false), years (YYYY), year-months (YYYYMM or YYYY-MM), months
(``%m``: 1 to 12), dates and datetimes whose schema gives their own format, numbers with a decimal comma. Numbers
the parser typed are kept only when finite (Java's parser takes "NaN" and "Infinity").

Decisions (curated layout, SPEC §5):
- column names are upper-cased; every catalog column is present in the curated partition, typed, null when a
  file does not deliver it, so that every delivery of a family has the same columns;
- ``yearmonth`` is curated as the date of the first day of the month, ``year`` and month-only dates as integers,
  integers longer than 9 digits (or without a length) as 64-bit integers, numbers as doubles;
- PMSI year tables carry their year in ``domain.YEAR_COLUMN``;
- columns the catalog does not know are kept as strings, after the catalog's columns.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from pyspark.sql import types as T

from .. import domain
from ..catalog import Field, Table
from ..patterns import spark_pattern
from ..reception.manifest import Format

CORRUPT = "_CORRUPT_RECORD"  # Spark's corrupt-record column: the raw line of a row the parser could not type
BAD, FILE = "_BAD", "_FILE"  # the write pass's bad-row flag and file index
REJECT_REASON, REJECT_TABLE, REJECT_FILE, REJECT_LINE = "_REJECT_REASON", "_DELIVERED_TABLE", "_SOURCE_FILE", "_REJECT_LINE"
# Names curation gives columns of its own beside the delivered ones (the above, the rejects' flag columns
# ``malformed``, ``type:<COL>`` and ``not_null:<COL>``, a probe's ``_FOUND<i>`` and ``_FOUND<i>_K``), as Spark compares
# names: a delivered column so named is renamed like a repeated one (``file_columns``), or its table's run failed.
RESERVED = frozenset({CORRUPT, BAD, FILE, REJECT_REASON, REJECT_TABLE, REJECT_FILE, REJECT_LINE, "MALFORMED"})
_PROBE_COLUMN = re.compile(r"_FOUND[0-9]+(_K)?")
ISO_DATE = "yyyy-MM-dd"


def output_type(table: Table, field: Field) -> T.DataType:
    kind = domain.effective_type(table, field)
    if kind == "integer":
        digits = field.length if field.length and field.length.isdigit() else None
        return T.IntegerType() if digits is not None and int(digits) <= 9 else T.LongType()
    return {
        "string": T.StringType(), "number": T.DoubleType(), "date": T.DateType(), "datetime": T.TimestampNTZType(),
        "boolean": T.BooleanType(), "year": T.IntegerType(), "yearmonth": T.DateType(),
    }[kind]


@dataclass(frozen=True)
class ColumnPlan:
    """One curated column: its name, curated type, the type the CSV parser reads it as, and the conversion
    applied afterwards (None when the parser's value is already the curated one; a conversion may also refuse a
    value the parser typed, e.g. a NaN).

    Conversions are Spark SQL text (raw value expression in, typed expression out): a table's whole projection is
    then handed to Spark in a few calls, where building it from Column objects cost one Py4J round trip per
    operator (measured: about 1.5 s per family, whatever its size)."""

    name: str
    field: Field | None  # None: a column the catalog does not know (kept as a string)
    dtype: T.DataType
    read_type: T.DataType
    convert: Callable[[str], str] | None = None
    kind: str = "string"

    @property
    def parsed(self) -> bool:
        """Whether the CSV parser types the column itself (a value it cannot type makes the row corrupt)."""
        return not isinstance(self.read_type, T.StringType)

    @property
    def can_fail(self) -> bool:
        """Whether a non-empty value can fail to type (strings never do)."""
        return not isinstance(self.dtype, T.StringType)


def sql_string(value: str) -> str:
    """A Spark SQL string literal."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_name(name: str) -> str:
    """A Spark SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def _boolean(c: str) -> str:
    v = f"lower(trim({c}))"
    return f"CASE WHEN {v} IN ('1', 'true') THEN true WHEN {v} IN ('0', 'false') THEN false END"


def _yearmonth(c: str) -> str:
    return (f"CASE WHEN {c} RLIKE '^[0-9]{{4}}-?(0[1-9]|1[0-2])$' "
            f"THEN try_to_date(concat(replace({c}, '-', ''), '01'), 'yyyyMMdd') END")


def _year(c: str) -> str:
    """A ``year``: YYYY (SPEC §2); an integer parse alone would take 20, +2020 or 12345."""
    return f"CASE WHEN {c} RLIKE '^[0-9]{{4}}$' THEN CAST({c} AS INT) END"


def _month(c: str) -> str:
    """A ``%m`` value: 1 to 12, zero-padded or not; an integer parse alone would take 0, 13 or 2020."""
    return f"CASE WHEN {c} RLIKE '^(0?[1-9]|1[0-2])$' THEN CAST({c} AS INT) END"


def _date_with(pattern: str) -> Callable[[str], str]:
    return lambda c: f"try_to_date({c}, {sql_string(pattern)})"


# An ISO date-time as delivered: a date, or a date and a time. A bare cast would take 2020 or 2020-1 (and make up the
# rest of the date) or +2020-01-15.
ISO_DATETIME_FORM = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,9})?)?)?$"


def _timestamp_with(pattern: str | None) -> Callable[[str], str]:
    """A wall-clock date-time (French local time, no zone in the data) as a timestamp without time zone: an instant
    would move when read in another zone. Parsed in the session's zone and cast back in it, so the value is kept
    (Spark has no ``try_to_timestamp_ntz``)."""
    if pattern is None:
        return lambda c: (f"CASE WHEN {c} RLIKE {sql_string(ISO_DATETIME_FORM)} "
                          f"THEN CAST(try_to_timestamp({c}) AS TIMESTAMP_NTZ) END")
    return lambda c: f"CAST(try_to_timestamp({c}, {sql_string(pattern)}) AS TIMESTAMP_NTZ)"


def _finite(c: str) -> str:
    """A number the parser typed, unless it is NaN or infinite: Java's parser takes "NaN", "Infinity" and 1e999."""
    return f"CASE WHEN NOT isnan({c}) AND abs({c}) <> CAST('Infinity' AS DOUBLE) THEN {c} END"


def _decimal_comma(separator: str, dtype: T.DataType) -> Callable[[str], str]:
    """A number written with the manifest's decimal separator, and no other: with ``,`` declared, ``1.234`` is not
    1.234 (a thousands separator, or a file that does not follow its manifest), nor is ``NaN`` or ``2,5d`` a number,
    nor ``1e999`` (infinite once cast), as with the decimal ``.``."""
    sep = re.escape(separator)
    number = sql_string(rf"^\s*[+-]?([0-9]+({sep}[0-9]*)?|{sep}[0-9]+)([eE][+-]?[0-9]+)?\s*$")  # spaces: as with "."

    def convert(c: str) -> str:
        cast = f"try_cast(replace({c}, {sql_string(separator)}, '.') AS {dtype.simpleString()})"
        return f"CASE WHEN {c} RLIKE {number} THEN {_finite(cast)} END"
    return convert


def date_pattern(fmt: Format) -> str:
    """The Spark pattern of the date fields whose schema format is ``default`` (SPEC §2: the manifest may override ISO)."""
    return ISO_DATE if fmt.date_format in ("", "default") else spark_pattern(fmt.date_format)


def plan_column(table: Table, field: Field, fmt: Format) -> ColumnPlan:
    dtype = output_type(table, field)
    kind = domain.effective_type(table, field)
    string = T.StringType()
    if kind == "boolean":
        return ColumnPlan(field.name, field, dtype, string, _boolean, kind)
    if kind == "yearmonth":
        return ColumnPlan(field.name, field, dtype, string, _yearmonth, kind)
    if kind == "year":
        return ColumnPlan(field.name, field, dtype, string, _year, kind)
    if domain.is_month(field):
        return ColumnPlan(field.name, field, dtype, string, _month, kind)
    if kind == "date" and field.format not in ("", "default"):
        return ColumnPlan(field.name, field, dtype, string, _date_with(spark_pattern(field.format)), kind)
    if kind == "datetime":
        pattern = None if field.format in ("", "default") else spark_pattern(field.format)
        return ColumnPlan(field.name, field, dtype, string, _timestamp_with(pattern), kind)
    if kind == "number" and fmt.decimal != ".":
        return ColumnPlan(field.name, field, dtype, string, _decimal_comma(fmt.decimal, dtype), kind)
    if kind == "number":
        return ColumnPlan(field.name, field, dtype, dtype, _finite, kind)
    return ColumnPlan(field.name, field, dtype, dtype, None, kind)


def unknown_column(name: str) -> ColumnPlan:
    return ColumnPlan(name, None, T.StringType(), T.StringType(), None, "unknown")


def family_columns(table: Table, fmt: Format, extra: list[str]) -> list[ColumnPlan]:
    """The curated columns of a family: catalog columns, the PMSI year, then unknown delivered columns."""
    plans = [plan_column(table, f, fmt) for f in table.fields]
    if table.is_yearly:
        plans.append(ColumnPlan(domain.YEAR_COLUMN, None, T.IntegerType(), T.IntegerType(), None, "year"))
    known = {p.name for p in plans}
    plans += [unknown_column(c) for c in extra if c not in known]
    return plans


# Columns curation adds to the data it publishes: the year of a yearly table, and the delivery of a partition read
# back into the current state (``state.DELIVERY_COLUMN``), which replaces a delivered one of that name.
PUBLISHED = frozenset({domain.YEAR_COLUMN, "DELIVERY_ID"})


def _reserved(name: str, columns: set[str]) -> bool:
    """Whether a (upper-cased) delivered name is one of curation's own columns, for a file of ``columns``."""
    kind, _, column = name.partition(":")
    return (name in RESERVED or name in PUBLISHED or bool(_PROBE_COLUMN.fullmatch(name))
            or (kind in ("TYPE", "NOT_NULL") and column in columns))


def file_columns(header: list[str] | None, table: Table, year: int | None = None) -> list[str]:
    """The column names of a file in its order: its header (upper-cased) or, without one, the catalog's columns that
    files of ``year`` carry by the schema's history (T_MCO12C has no COH_NAI_RET). A repeated name, or one of
    curation's own (``RESERVED``, ``PUBLISHED``), takes the first free ``<NAME>_<n>`` from 2 on (``X;X;X_2`` gives X, X_3, X_2)."""
    names = [raw.strip().lstrip("\ufeff").upper() or "_EMPTY"
             for raw in (list(header) if header is not None else list(table.columns_in(year)))]
    taken = set(names)
    out: list[str] = []
    for name in names:
        if name in out or _reserved(name, taken):
            n = 2
            while f"{name}_{n}" in taken or _reserved(f"{name}_{n}", taken):
                n += 1
            name = f"{name}_{n}"
            taken.add(name)
        out.append(name)
    return out


def csv_options(fmt: Format, header: bool | None = None, drop_malformed: bool = False,
                multiline: bool = False) -> dict[str, str]:
    """Options shared by every read of a delivered CSV (file source and from_csv), so both parse alike.
    ``drop_malformed``: the parser drops the rows it cannot type instead of keeping their raw line in ``CORRUPT``
    (whose filling makes Spark copy every parsed row), otherwise the same parse. ``multiline``: for a file with a
    newline inside a quoted value (``ArchivedFile.multiline``) only, since Spark then reads the file in one task."""
    if drop_malformed:
        options = csv_options(fmt, header, multiline=multiline)
        del options["columnNameOfCorruptRecord"]
        return {**options, "mode": "DROPMALFORMED"}
    if multiline:
        return {**csv_options(fmt, header), "multiLine": "true"}
    return {
        "sep": fmt.delimiter,
        "encoding": _charset(fmt.encoding),
        "header": str(fmt.header if header is None else header).lower(),
        "nullValue": fmt.null_value,
        # A quoted empty value ("") is the empty value of an unquoted one: null, whatever the manifest's null_value
        # (Spark would read it as an empty text otherwise, a key column filled with nothing that not_null lets pass).
        "emptyValue": fmt.null_value,
        "quote": fmt.quote,
        "escape": fmt.quote,
        "dateFormat": date_pattern(fmt),
        "mode": "PERMISSIVE",
        "columnNameOfCorruptRecord": CORRUPT,
        "enforceSchema": "true",
    }


def _charset(encoding: str) -> str:
    value = encoding.lower().replace("_", "-")
    return "UTF-8" if value in ("utf-8", "utf8") else "ISO-8859-1"
