"""Valid values for any catalog field: type, schema format, length, constraints and nomenclature.

Everything here works on *texts as written in the CSV*. Dates travel through the generator as day ordinals
(``date.toordinal()``) and are turned into text only when a file is written, with one lookup table per
strftime pattern, so that formatting a million dates costs a million dict lookups and nothing more.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import domain
from ..catalog import Field, Table, integer_code, locate_nomenclature

ISO_DATE = "%Y-%m-%d"
ISO_DATETIME = "%Y-%m-%dT%H:%M:%S"
FIRST_TEXT_DATE = date(1850, 1, 1)  # the date tables cover the defects' out-of-range years (1850, 2099) too
LAST_TEXT_DATE = date(2100, 12, 31)
UNKNOWN_ORD = domain.UNKNOWN_DATE.toordinal()
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS_FULL = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
                "October", "November", "December")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAYS_FULL = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_TOKEN = re.compile(r"%[A-Za-z%]")
EPOCH_ORD = date(1970, 1, 1).toordinal()


_FIELDS = {"%Y": "{Y:04d}", "%m": "{m:02d}", "%d": "{d:02d}", "%y": "{y:02d}", "%H": "00", "%M": "00",
           "%S": "00", "%b": "{b}", "%B": "{B}", "%a": "{a}", "%A": "{A}", "%j": "{j:03d}", "%%": "%"}


@lru_cache(maxsize=None)
def _compiled(pattern: str) -> str | None:
    """The pattern as a ``str.format`` template, or None if it uses a directive we do not render."""
    parts, pos = [], 0
    for match in _TOKEN.finditer(pattern):
        parts.append(pattern[pos:match.start()].replace("{", "{{").replace("}", "}}"))
        token = _FIELDS.get(match.group(0))
        if token is None:
            return None
        parts.append(token)
        pos = match.end()
    parts.append(pattern[pos:].replace("{", "{{").replace("}", "}}"))
    return "".join(parts)


def strftime_c(day: date, pattern: str) -> str:
    """``strftime`` in the C locale whatever the process locale is (month names are part of some formats)."""
    template = _compiled(pattern)
    if template is None:
        return day.strftime(pattern)
    return template.format(
        Y=day.year, m=day.month, d=day.day, y=day.year % 100, b=_MONTHS[day.month - 1], B=_MONTHS_FULL[day.month - 1],
        a=_DAYS[day.weekday()], A=_DAYS_FULL[day.weekday()], j=day.timetuple().tm_yday if "{j" in template else 0)


@lru_cache(maxsize=None)
def date_texts(pattern: str) -> dict:
    """Day ordinal -> text for every day of 1850-2100 and the 1600-01-01 convention; '' stays ''."""
    table: dict = {}
    first, last = FIRST_TEXT_DATE.toordinal(), LAST_TEXT_DATE.toordinal()
    if pattern in (ISO_DATE, ISO_DATETIME):
        suffix = "T00:00:00" if pattern == ISO_DATETIME else ""
        for o in range(first, last + 1):
            table[o] = date.fromordinal(o).isoformat() + suffix
    else:
        template = _compiled(pattern)
        simple = template is not None and not any(k in template for k in ("{a", "{A", "{j"))
        for o in range(first, last + 1):
            day = date.fromordinal(o)
            if simple:
                table[o] = template.format(Y=day.year, m=day.month, d=day.day, y=day.year % 100,
                                           b=_MONTHS[day.month - 1], B=_MONTHS_FULL[day.month - 1])
            else:
                table[o] = strftime_c(day, pattern)
    table[UNKNOWN_ORD] = strftime_c(domain.UNKNOWN_DATE, pattern)
    return table


def date_pattern(field: Field, kind: str, delivery_date_format: str) -> str:
    """The strftime pattern of a date/datetime field as delivered (SPEC §2: ``date_format`` overrides ISO)."""
    if field.format and field.format != "default":
        return field.format
    if kind == "datetime":
        return ISO_DATETIME
    return ISO_DATE if delivery_date_format in ("", "default") else delivery_date_format


def to_ordinals(days64: np.ndarray) -> np.ndarray:
    """numpy datetime64[D] -> day ordinals."""
    return days64.astype("datetime64[D]").astype(np.int64) + EPOCH_ORD


def from_ordinals(ordinals: np.ndarray) -> np.ndarray:
    return (np.asarray(ordinals, dtype=np.int64) - EPOCH_ORD).astype("datetime64[D]")


def month_starts_after(ordinals: np.ndarray, lag_months: np.ndarray) -> np.ndarray:
    """First day of the month following each date, plus ``lag_months`` months (monthly DCIR flows)."""
    months = from_ordinals(ordinals).astype("datetime64[M]") + 1 + lag_months.astype("timedelta64[M]")
    return to_ordinals(months.astype("datetime64[D]"))


# --- Nomenclatures ---------------------------------------------------------------------------------------
class Nomenclatures:
    """Code lists of a folder in the schema-snds layout (``<folder>/**/<NAME>.csv``, ';'-separated)."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder else None
        self._files: dict[str, Path] | None = None
        self._codes: dict[tuple[str, str], frozenset[str] | None] = {}

    def _index(self) -> dict[str, Path]:
        if self._files is None:
            self._files = {}
            if self.folder is not None:
                if not self.folder.is_dir():
                    raise FileNotFoundError(f"nomenclature folder not found: {self.folder}")
                for path in sorted(self.folder.rglob("*.csv")):
                    self._files.setdefault(path.stem, path)
        return self._files

    def codes(self, name: str, column: str) -> frozenset[str] | None:
        """The codes of one column of a nomenclature, or None when it is not available."""
        key = (name, column)
        if key not in self._codes:
            path = self._index().get(name)
            values = None
            if path is not None:
                raw = path.read_bytes()
                try:
                    text = raw.decode("utf-8-sig")
                except UnicodeDecodeError:
                    text = raw.decode("latin-1")
                reader = csv.reader(text.splitlines(), delimiter=";")
                header = [h.strip().strip('"').upper() for h in next(reader, [])]
                if column.upper() in header:
                    i = header.index(column.upper())
                    values = frozenset(row[i].strip() for row in reader if len(row) > i and row[i].strip())
            self._codes[key] = values
        return self._codes[key]

    def field_codes(self, field: Field) -> frozenset[str] | None:
        """The codes a field's values are drawn from; a bare reference (no code column, as in schema-snds's DCIR
        tables: FLX_EMT_NUM -> IR_NEM_T) reads the column curation checks it against (``locate_nomenclature``)."""
        if self.folder is None or not domain.nomenclature_checked(field):
            return None
        name, column = field.nomenclature
        if not column:
            located = locate_nomenclature(self.folder, field.nomenclature, field.name)
            if located is None:
                return None
            column = located.code_column
        return self.codes(name, column)


# --- What a field accepts ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """The dates generic values are drawn in: inside the care period, never after the delivery."""

    first: int  # ordinal
    last: int

    @property
    def first_year(self) -> int:
        return date.fromordinal(self.first).year

    @property
    def last_year(self) -> int:
        return date.fromordinal(self.last).year


@dataclass(frozen=True)
class FieldSpec:
    """The set of texts a field accepts in a clean delivery."""

    name: str
    kind: str  # domain.effective_type
    pattern: str  # strftime pattern for date/datetime
    lo: float | None = None
    hi: float | None = None
    scale: int = 0
    min_len: int = 1
    max_len: int = 20
    enum: tuple[str, ...] | None = None
    codes: tuple[str, ...] | None = None  # nomenclature codes that also fit type and length
    required: bool = False  # key or identifier column, or used by a domain rule: never empty

    @property
    def is_date(self) -> bool:
        return self.kind in ("date", "datetime")

    def accepts_length(self, text: str) -> bool:
        return self.min_len <= len(text) <= self.max_len


def _number_length(length: str | None) -> tuple[int, int] | None:
    if not length:
        return None
    parts = [p.strip() for p in str(length).split(",")]
    try:
        precision = int(parts[0])
        scale = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    except ValueError:
        return None
    return precision, scale


def _int_length(length: str | None) -> int | None:
    try:
        return int(str(length).split(",")[0]) if length else None
    except ValueError:
        return None


def fits(spec: FieldSpec, text: str) -> bool:
    if spec.kind in ("integer",):
        if not re.fullmatch(r"-?\d+", text):
            return False
        v = int(text)
        return (spec.lo is None or v >= spec.lo) and (spec.hi is None or v <= spec.hi)
    if spec.kind == "number":
        if not re.fullmatch(r"-?\d+(\.\d+)?", text):
            return False
        v = float(text)
        return (spec.lo is None or v >= spec.lo) and (spec.hi is None or v <= spec.hi)
    if spec.kind == "boolean":
        return text in ("0", "1")
    if spec.kind == "year":
        return bool(re.fullmatch(r"\d{4}", text))
    if spec.kind == "yearmonth":
        return bool(re.fullmatch(r"\d{4}(0[1-9]|1[0-2])", text))
    if spec.kind in ("date", "datetime"):
        return False  # dates travel as ordinals, never as texts
    return spec.accepts_length(text)


def field_spec(table: Table, field: Field, nomenclatures: Nomenclatures, date_format: str = "default") -> FieldSpec:
    kind = domain.effective_type(table, field)
    c = field.constraints
    lo = c.get("minimum")
    hi = c.get("maximum")
    scale = 0
    min_len = int(c.get("minLength") or 1)
    max_len = _int_length(field.length) or 20
    if kind == "integer":
        digits = _int_length(field.length)
        if field.type == "date" and field.format == "%m":
            lo, hi = max(lo or 1, 1), min(hi or 12, 12)
        if digits:
            hi = min(hi, 10 ** digits - 1) if hi is not None else 10 ** digits - 1
        lo = 0 if lo is None else lo
    elif kind == "number":
        ps = _number_length(field.length)
        if ps:
            precision, scale = ps
            int_digits = max(precision - scale, 0)
            scale = min(scale, 2) if int_digits else min(scale, precision, 4)
            top = 10 ** int_digits - 10 ** -scale if int_digits else 1 - 10 ** -scale
            hi = min(hi, top) if hi is not None else top
        else:
            scale, hi = 2, (hi if hi is not None else 9999.99)
        lo = 0 if lo is None else lo
    elif kind == "string":
        if min_len > max_len:
            max_len = min_len
    if lo is not None and hi is not None and lo > hi:  # contradictory schema: trust the constraints
        hi = lo
    enum = tuple(str(v) for v in c["enum"]) if domain.enum_checked(field) else None
    required = field.name in domain.required_columns(table) or any(
        r.column == field.name for r in domain.domain_rules(table))
    pattern = date_pattern(field, kind, date_format) if kind in ("date", "datetime") else ""
    spec = FieldSpec(field.name, kind, pattern, lo, hi, scale, min_len, max_len, enum, None, required)
    codes = nomenclatures.field_codes(field)
    if codes is not None and kind == "integer":  # IR_TAU_V's 65.00 is the integer 65, as curation checks it
        codes = frozenset(str(n) for n in map(integer_code, codes) if n is not None)
    if codes is not None:
        if kind == "number" and not _number_length(field.length) and c.get("maximum") is None:
            # 9999.99 above is a default for drawn numbers, not a bound of the codes (NT_LPP's 1100028)
            loose = FieldSpec(field.name, kind, pattern, lo, None, scale, min_len, max_len, enum, None, required)
            if any(fits(loose, v) for v in codes):
                spec, hi = loose, None
        fitting = tuple(sorted(v for v in codes if fits(spec, v) and (enum is None or v in enum)))
        spec = FieldSpec(field.name, kind, pattern, lo, hi, scale, min_len, max_len, enum, fitting, required)
    return spec


def valid_text(spec: FieldSpec, text: str) -> bool:
    """Whether a non-empty text is a valid value of the field (used to filter preferred code lists)."""
    if spec.enum is not None and text not in spec.enum:
        return False
    if spec.codes is not None and text not in spec.codes:
        return False
    return fits(spec, text)


# --- Random values ------------------------------------------------------------------------------------------
ALNUM = np.array(list("ABCDEFGHIJKLMNPQRSTUVWXYZ0123456789"))
DIGITS = np.array(list("0123456789"))
_WORDS = ("CENTRE", "HOSPITALIER", "RÉGIONAL", "SAINT-ÉTIENNE", "PÉDIATRIE", "CARDIOLOGIE", "SÉJOUR", "MÉDECINE",
          "CHIRURGIE", "URGENCES", "RÉÉDUCATION", "CLINIQUE", "DES", "LILAS", "ORLÉANS", "GÉNÉRALE", "SANTÉ",
          "MATERNITÉ", "ONCOLOGIE", "GÉRIATRIE", "PSYCHIATRIE", "NÎMES", "BÉZIERS", "ÉVRY", "CRÉTEIL")
_CENTS = [f"{i // 100}.{i % 100:02d}" for i in range(100000)]


def cents_text(cents: int) -> str:
    return _CENTS[cents] if 0 <= cents < 100000 else f"{cents // 100}.{cents % 100:02d}"


def words(rng: np.random.Generator, k: int, max_len: int) -> list[str]:
    out = []
    for _ in range(k):
        n = int(rng.integers(1, 5))
        text = " ".join(_WORDS[i] for i in rng.integers(0, len(_WORDS), n))
        out.append(text[:max_len].strip() or "CENTRE")
    return out


def random_strings(rng: np.random.Generator, k: int, min_len: int, max_len: int,
                   alphabet: np.ndarray = ALNUM) -> list[str]:
    width = max(min_len, min(max_len, 12))
    chars = alphabet[rng.integers(0, len(alphabet), size=(k, width))]
    joined = ["".join(row) for row in chars.tolist()]
    if width > min_len:
        lengths = rng.integers(min_len, width + 1, size=k).tolist()
        joined = [s[:n] for s, n in zip(joined, lengths)]
    return joined


def sample(spec: FieldSpec, rng: np.random.Generator, k: int, window: Window, hint: list[str] | None = None) -> list:
    """``k`` random valid values of a field: texts, or day ordinals for dates (formatted when written)."""
    if k <= 0:
        return []
    if hint:
        good = [h for h in hint if valid_text(spec, h)]
        if good:
            return [good[i] for i in rng.integers(0, len(good), k).tolist()]
    if spec.codes:
        return [spec.codes[i] for i in rng.integers(0, len(spec.codes), k).tolist()]
    if spec.enum:
        choices = [e for e in spec.enum if e != "" and fits(spec, e)] or list(spec.enum)
        return [choices[i] for i in rng.integers(0, len(choices), k).tolist()]
    kind = spec.kind
    if kind == "integer":
        lo, hi = int(spec.lo or 0), int(spec.hi if spec.hi is not None else 99999)
        top = min(hi, lo + 99) if rng.random() < 0.7 else hi  # mostly small counts and codes
        return rng.integers(lo, max(top, lo) + 1, k).tolist()
    if kind == "number":
        lo, hi = float(spec.lo or 0), float(spec.hi if spec.hi is not None else 9999.99)
        values = rng.uniform(lo, hi, k)
        if spec.scale == 0:
            return [str(int(v)) for v in np.floor(values)]
        factor = 10 ** spec.scale
        return [f"{v:.{spec.scale}f}" for v in np.floor(values * factor) / factor]
    if kind == "boolean":
        return rng.choice(["0", "1"], k).tolist()
    if kind in ("date", "datetime"):
        return rng.integers(window.first, window.last + 1, k).tolist()
    if kind == "year":
        return [str(y) for y in rng.integers(window.first_year, window.last_year + 1, k).tolist()]
    if kind == "yearmonth":
        days = rng.integers(window.first, window.last + 1, k)
        return [f"{d.year:04d}{d.month:02d}" for d in map(date.fromordinal, days.tolist())]
    # string
    if spec.max_len >= 30 and spec.min_len <= 5:
        return words(rng, k, spec.max_len)
    return random_strings(rng, k, spec.min_len, spec.max_len)
