"""The SNDS table catalog: Table Schema JSON files (schema-snds layout) read into a table model.

One *family* is one schema: ``T_MCOaaB`` stands for the yearly tables ``T_MCO23B``, ``T_MCO24B``...
Column names are normalised to upper case, and ``primaryKey`` / foreign-key ``fields`` given as a
single string are read as one-column lists, because the real schemas mix both spellings.
A nomenclature reference is ``TABLE:CODE_COLUMN`` or a bare ``TABLE`` (most real schemas): a bare one
is kept with an empty code column, which ``locate_nomenclature`` resolves from the nomenclature's own schema.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable

FIELD_TYPES = ("string", "integer", "number", "date", "datetime", "boolean", "year", "yearmonth")


def _year_of(value: str) -> int | None:
    return int(value[:4]) if value[:4].isdigit() else None


class CatalogError(ValueError):
    """A schema file that cannot be read into the table model."""


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    format: str = "default"
    length: str | None = None
    description: str = ""
    nomenclature: tuple[str, str] | None = None  # (nomenclature table, code column or "" when not given)
    constraints: dict = field(default_factory=dict, compare=False, hash=False)
    date_created: str = ""
    date_deleted: str = ""

    @property
    def history(self) -> tuple[int | None, int | None]:
        """The years of ``dateCreated`` and ``dateDeleted`` (a year or a date; none: always)."""
        return _year_of(self.date_created), _year_of(self.date_deleted)

    def in_use(self, year: int) -> bool:
        """Whether files of ``year`` carry the field, by its schema history (``dateCreated``/``dateDeleted``, a
        year or a date; none: always). Deleted in year D: files of D may or may not carry it, so not expected."""
        created, deleted = self.history
        return (created is None or created <= year) and (deleted is None or deleted > year)


@dataclass(frozen=True)
class ForeignKey:
    fields: tuple[str, ...]
    resource: str
    reference_fields: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """One family's schema. ``name`` is the schema's table name, which is also the family name."""

    name: str
    title: str
    product: str
    fields: tuple[Field, ...]
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    missing_values: tuple[str, ...] = ("",)
    source: str = ""

    @property
    def family(self) -> str:
        return self.name

    @cached_property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @cached_property
    def by_name(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    def field(self, name: str) -> Field:
        return self.by_name[name.upper()]

    def columns_in(self, year: int | None) -> tuple[str, ...]:
        """The columns files of ``year`` carry by the schema's history (``Field.in_use``; all of them for a table
        that is not yearly): none for a year the table did not exist (T_MCOaaORP after 2016)."""
        return tuple(f.name for f in self.fields if year is None or f.in_use(year))

    def absent_in(self, columns: Iterable[str], year: int | None) -> list[str]:
        """Those of ``columns`` that files of ``year`` do not carry by the schema's history (none for no year)."""
        return [c for c in columns if year is not None and c in self.by_name and not self.by_name[c].in_use(year)]

    @property
    def is_yearly(self) -> bool:
        """PMSI and cartography families are delivered one table per year."""
        return _year_token(self.name) is not None

    @cached_property
    def delivered_name_pattern(self) -> re.Pattern[str]:
        token = _year_token(self.name)
        if token is None:
            return re.compile(re.escape(self.name), re.IGNORECASE)
        head, tail = self.name.split(token, 1)
        digits = 4 if token == "AAAA" else 2
        tail_rx = re.escape(tail).replace("xx", r"[0-9A-Z]{2}")
        return re.compile(rf"{re.escape(head)}(?P<year>\d{{{digits}}}){tail_rx}", re.IGNORECASE)


def is_yearly_family(name: str) -> bool:
    """Whether a family name stands for one table per year (``T_MCOaaB``, ``CT_IDE_AAAA_GN``).

    Works on names alone, so that a foreign key to a family absent from the catalog is still known as yearly.
    """
    return _year_token(name) is not None


def _year_token(name: str) -> str | None:
    if re.match(r"^T_[A-Z]{3}aa", name):
        return "aa"
    if "_AAAA_" in name:
        return "AAAA"
    return None


def _as_tuple(value) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return (value.upper(),)
    return tuple(str(v).upper() for v in value)


def _nomenclature(value) -> tuple[str, str] | None:
    text = str(value or "").strip()
    if not text or text == "-":
        return None
    table, _, column = text.partition(":")
    return table.strip(), column.strip().upper()


def parse_table(data: dict, source: str = "") -> Table:
    """Build a Table from one decoded Table Schema document."""
    try:
        name = data["name"]
        fields = []
        for raw in data["fields"]:
            ftype = raw.get("type", "string")
            if ftype not in FIELD_TYPES:
                raise CatalogError(f"{source}: field {raw.get('name')} has unknown type {ftype!r}")
            length = raw.get("length")
            fields.append(
                Field(
                    name=raw["name"].upper(),
                    type=ftype,
                    format=raw.get("format") or "default",
                    length=None if length in (None, "") else str(length),
                    description=raw.get("description") or "",
                    nomenclature=_nomenclature(raw.get("nomenclature")),
                    constraints=dict(raw.get("constraints") or {}),
                    date_created=str(raw.get("dateCreated") or ""),
                    date_deleted=str(raw.get("dateDeleted") or ""),
                )
            )
        fks = tuple(
            ForeignKey(_as_tuple(fk["fields"]), fk["reference"]["resource"], _as_tuple(fk["reference"]["fields"]))
            for fk in data.get("foreignKeys") or []
        )
        primary_key = _as_tuple(data.get("primaryKey"))
        _validate(source, name, fields, primary_key, fks)
        return Table(
            name=name,
            title=data.get("title") or name,
            product=data.get("produit") or data.get("product") or "",
            fields=tuple(fields),
            primary_key=primary_key,
            foreign_keys=fks,
            missing_values=tuple(data.get("missingValues") or [""]),
            source=source,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise CatalogError(f"{source}: not a Table Schema document ({exc!r})") from exc


def _validate(source: str, name, fields: list[Field], primary_key: tuple[str, ...],
              fks: tuple[ForeignKey, ...]) -> None:
    """Reject schemas whose keys name columns they do not declare: every later join would fail on them."""
    if not isinstance(name, str) or not name:
        raise CatalogError(f"{source}: the table name must be a non-empty string, got {name!r}")
    seen: set[str] = set()
    for f in fields:
        if f.name in seen:
            raise CatalogError(f"{source}: column {f.name} is declared twice in {name}")
        seen.add(f.name)
    missing = [c for c in primary_key if c not in seen]
    if missing:
        raise CatalogError(f"{source}: primaryKey of {name} names unknown columns {missing}")
    for fk in fks:
        missing = [c for c in fk.fields if c not in seen]
        if missing or not fk.fields or len(fk.fields) != len(fk.reference_fields):
            raise CatalogError(
                f"{source}: foreign key {list(fk.fields)} -> {fk.resource}{list(fk.reference_fields)} of {name} "
                f"is malformed (unknown columns {missing} or field counts differ)"
            )


def checkout_part(root: Path, part: str) -> Path:
    """``root/part`` when ``root`` is the top of a schema-snds checkout (``schemas/`` beside ``nomenclatures/``),
    else ``root``: both settings may name the checkout itself."""
    if (root / "schemas").is_dir() and (root / "nomenclatures").is_dir():
        return root / part
    return root


def _table_schemas(root: Path) -> Iterable[Path]:
    """The JSON files under ``root`` that may describe delivered tables. A Table Schema with its data beside it
    (``NAME.json`` and ``NAME.csv``, schema-snds's nomenclatures) describes a code list, not a delivered table."""
    for path in checkout_part(root, "schemas").rglob("*.json"):
        if not path.with_suffix(".csv").is_file():
            yield path


class Catalog:
    """All families known to the product, by family name."""

    def __init__(self, tables: dict[str, Table], root: str = ""):
        self.tables = dict(sorted(tables.items()))
        self.root = root

    @classmethod
    def load(cls, root: str | Path) -> "Catalog":
        root = Path(root)
        if not root.is_dir():
            raise CatalogError(f"schema folder not found: {root}")
        tables: dict[str, Table] = {}
        for path in sorted(_table_schemas(root)):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CatalogError(f"{path}: unreadable schema ({exc})") from exc
            if not isinstance(data, dict) or "fields" not in data:
                continue
            table = parse_table(data, str(path))
            if table.name in tables:
                raise CatalogError(f"{path}: table {table.name} is defined twice")
            tables[table.name] = table
        if not tables:
            raise CatalogError(f"no Table Schema file under {root}")
        from .. import domain  # domain reads the table model defined here

        return cls(domain.with_archives(tables), str(root))

    def __contains__(self, family: str) -> bool:
        return family in self.tables

    def __getitem__(self, family: str) -> Table:
        return self.tables[family]

    def __iter__(self):
        return iter(self.tables.values())

    def __len__(self) -> int:
        return len(self.tables)

    def resolve(self, delivered: str) -> tuple[Table, int | None]:
        """The family of a delivered table name, and its year for yearly families (``T_MCO23B`` -> 2023)."""
        fixed = delivered.upper()
        if fixed in self.tables and not self.tables[fixed].is_yearly:
            return self.tables[fixed], None
        for table in self._yearly:
            match = table.delivered_name_pattern.fullmatch(delivered)
            if match:
                year = int(match.group("year"))
                return table, (2000 + year if year < 100 else year)
        raise KeyError(delivered)

    def delivered_name(self, family: str, year: int | None) -> str:
        """The delivered name of a family for one year (``T_MCOaaB``, 2023 -> ``T_MCO23B``)."""
        table = self.tables[family]
        token = _year_token(family)
        if token is None:
            return family
        if year is None:
            raise ValueError(f"{family} is delivered per year: a year is needed")
        text = f"{year:04d}" if token == "AAAA" else f"{year % 100:02d}"
        return table.name.replace(token, text, 1)

    @cached_property
    def _yearly(self) -> list[Table]:
        # Longest names first, so that T_MCOaaFASTC is tried before T_MCOaaFA.
        return sorted((t for t in self.tables.values() if t.is_yearly), key=lambda t: -len(t.name))


@dataclass(frozen=True)
class NomenclatureFile:
    """Where the codes of one nomenclature live: its CSV (``;``-separated) and the column holding the codes."""

    name: str
    path: Path
    code_column: str


def locate_nomenclature(root: str | Path, reference: tuple[str, str], field: str = "") -> NomenclatureFile | None:
    """The CSV and code column of a field's nomenclature reference under ``root`` (schema-snds layout).

    A bare reference (empty code column) takes the CSV's column named like the ``field`` when there is one
    (DA_PRA_R.EXC_EXC_NAT in IR_EPS_V, whose ``"role": "code"`` column EXC_NAT_SNI holds labels), else the column
    the nomenclature's JSON schema marks ``"role": "code"``, else the last primaryKey column, else the first. None
    when the CSV is absent (a few large nomenclatures are not in every copy): the caller reports the check as not
    evaluated.
    """
    name, code = reference
    files = _nomenclature_index(str(root))
    csv = files.get(f"{name}.csv")
    if csv is None:
        return None
    if not code:
        with csv.open(encoding="utf-8", errors="replace") as handle:
            header = [h.strip().lstrip("\ufeff").upper() for h in handle.readline().split(";")]
        if field and field.upper() in header:
            code = field.upper()
        else:
            code = _code_column(files.get(f"{name}.json")) or header[0]
    return NomenclatureFile(name, csv, code)


def integer_code(text: str) -> int | None:
    """A nomenclature code as an integer column holds it: ``65`` and ``65.00`` (IR_TAU_V's rates) are 65; None for
    any other text (``37.50``, ``2A``)."""
    whole = re.fullmatch(r"(-?[0-9]+)(\.0+)?", text)
    return int(whole.group(1)) if whole else None


def _code_column(schema: Path | None) -> str:
    if schema is None:
        return ""
    try:
        data = json.loads(schema.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    for f in data.get("fields") or []:
        if isinstance(f, dict) and f.get("role") == "code" and f.get("name"):
            return str(f["name"]).upper()
    key = _as_tuple(data.get("primaryKey"))
    return key[-1] if key else ""


_NOMENCLATURE_INDEXES: dict[str, dict[str, Path]] = {}


def _nomenclature_index(root: str) -> dict[str, Path]:
    if root not in _NOMENCLATURE_INDEXES:
        base = Path(root)
        if not base.is_dir():
            raise CatalogError(f"nomenclature folder not found: {root}")
        base = checkout_part(base, "nomenclatures")
        _NOMENCLATURE_INDEXES[root] = {p.name: p for p in sorted(base.rglob("*")) if p.suffix in (".csv", ".json")}
    return _NOMENCLATURE_INDEXES[root]
