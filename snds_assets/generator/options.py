"""Options and result of ``generate`` (the public API used by the ``snds generate`` command)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from .. import domain
from ..catalog import Catalog
from ..patterns import UnsupportedDirective, spark_pattern
from ..reception.manifest import DELIVERY_ID_FORM, Manifest, valid_delivery_id
from .values import strftime_c

ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "latin-1": "latin-1", "latin1": "latin-1", "iso-8859-1": "latin-1"}
FORBIDDEN_DELIMITERS = set("\"'\n\r.-:/ %") | set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class GenerateError(ValueError):
    """Options the generator cannot honour; the message says what to change."""


@dataclass
class GenerateOptions:
    out: Path | str
    delivery_id: str = field(default_factory=lambda: date.today().isoformat())
    patients: int = 1000
    seed: int = 0
    defects: bool = False
    start: date = date(2022, 1, 1)
    end: date = date(2023, 12, 31)
    tables: list[str] | None = None  # families or delivered names; None: every table of the catalog
    catalog: Catalog | None = None  # None: Catalog.load(Settings.from_env().schemas)
    nomenclatures: str | None = None  # folder in the schema-snds layout: coded values drawn from it
    gzip: bool = False
    rows_per_file: int | None = None  # split tables into part-0001.csv, part-0002.csv...
    delimiter: str = ";"
    encoding: str = "utf-8"
    date_format: str = "default"  # strftime pattern for the date fields whose schema format is default
    overwrite: bool = False  # replace an existing delivery folder of the same id

    def delivery_date(self) -> date:
        return date.fromisoformat(self.delivery_id[:10])

    def care_window(self) -> tuple[date, date]:
        """The care period actually generated: ``start``..``end``, cut so that every DCIR flow of a care date
        (released on the first day of a later month) is out by the delivery date."""
        last_flow = self.delivery_date().replace(day=1)
        end = min(self.end, last_flow - timedelta(days=1))
        return self.start, end

    def validate(self) -> None:
        if not valid_delivery_id(str(self.delivery_id)):
            raise GenerateError(f"delivery id {self.delivery_id!r} is not {DELIVERY_ID_FORM}")
        if int(self.patients) < 1:
            raise GenerateError("patients must be at least 1")
        if int(self.seed) < 0:
            raise GenerateError("seed must be a non-negative integer")
        if self.start > self.end:
            raise GenerateError(f"care period start {self.start} is after its end {self.end}")
        earliest = max(domain.first_retained_day(self.delivery_date()), date(2000, 1, 1))
        if self.start < earliest:
            raise GenerateError(f"care period start {self.start} is before {earliest}: a delivery of "
                                f"{self.delivery_date().year} holds the 19 years plus the current one the base keeps, "
                                "and a PMSI table names its year in two digits (20yy)")
        start, end = self.care_window()
        if end < start:
            raise GenerateError(f"delivery {self.delivery_id} is too early for care starting {self.start}: "
                                "the delivery date must be after the first month of care")
        if self.nomenclatures and not Path(self.nomenclatures).is_dir():
            raise GenerateError(f"nomenclature folder not found: {self.nomenclatures}")
        if self.rows_per_file is not None and int(self.rows_per_file) < 1:
            raise GenerateError("rows_per_file must be at least 1")
        if len(self.delimiter) != 1 or self.delimiter in FORBIDDEN_DELIMITERS or not self.delimiter.isascii():
            raise GenerateError(f"delimiter {self.delimiter!r} must be one ASCII character that no value holds "
                                "(e.g. ';', ',', '|' or a tab), as the reception reads a manifest's")
        if self.encoding.lower() not in ENCODINGS:
            raise GenerateError(f"encoding {self.encoding!r} is not utf-8 or latin-1")
        if self.date_format != "default":
            sample = strftime_c(date(2023, 11, 5), self.date_format)
            if sample == self.date_format or self.delimiter in sample or "%" in sample:
                raise GenerateError(f"date format {self.date_format!r} is not a usable strftime pattern here")
            try:
                spark_pattern(self.date_format)  # what the reception accepts of a manifest
            except UnsupportedDirective as exc:
                raise GenerateError(f"{exc}: the reception would refuse such a manifest") from None

    @property
    def encoding_name(self) -> str:
        return ENCODINGS[self.encoding.lower()]


@dataclass
class GenerateResult:
    delivery_dir: Path
    manifest: Manifest
    ground_truth: Path | None
    rows: dict[str, int]  # delivered table -> data rows
