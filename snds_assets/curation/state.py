"""The current state of a family: which curated partitions make up "the table as of today".

It is derived from the reception reports (``<lake>/reports/deliveries/<ID>.json``, SPEC §6): only accepted
deliveries count. Walking them in delivery-id order (ids are dates), a ``full`` table replaces what came before
and an ``incremental`` one adds to it; for a yearly PMSI family this happens per year (``T_MCO23B`` delivered
``full`` replaces 2023 only). The state is then the union of the right curated partitions, restricted to the
right years, with a ``DELIVERY_ID`` column saying where each row comes from.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from .. import domain
from ..catalog import Catalog, Table
from ..config import Settings
from ..lake import Lake
from . import keys
from .columns import family_columns
from ..reception.manifest import Format, Manifest, delivery_order
from ..reception.report import ACCEPTED, list_reports, load_fragment
from ..reception.storage import ParquetSummary, ValueRange, lake_exists, parquet_summary

DELIVERY_COLUMN = "DELIVERY_ID"


class DamagedPartition(RuntimeError):
    """A curated partition of an accepted delivery that no longer holds what its report says."""


@dataclass(frozen=True)
class Part:
    """One delivered table as it counts in a family's state: delivery, year (yearly families) and mode."""

    delivery_id: str
    year: int | None
    mode: str


def delivered_parts(catalog: Catalog, manifest: Manifest, family: str) -> list[Part]:
    """The tables of ``family`` in a delivery, as parts of its state."""
    out = []
    for d in manifest.tables:
        try:
            table, year = catalog.resolve(d.table)
        except KeyError:
            continue
        if table.name == family:
            out.append(Part(manifest.delivery_id, year, d.mode or domain.default_mode(table)))
    return out


def family_rows(state: CurrentState, catalog: Catalog, manifest: Manifest, family: str, columns: list[str],
                with_delivery: bool = True) -> tuple[DataFrame | None, str, dict]:
    """``columns`` of a family's state once this delivery is accepted (or, not ``with_delivery``, without it), why
    (or why not), and its partitions."""
    if family not in catalog:
        return None, f"{family} is not in the catalog", {}
    delivered = delivered_parts(catalog, manifest, family) if with_delivery else []
    delivery_id = manifest.delivery_id
    if delivered:
        if not lake_exists(state.lake.curated(family, delivery_id)):
            return None, f"{family} of this delivery is not curated yet", {}
        kept = state.plan(family, after=(delivery_id, delivered))
        source = f"{family} of this delivery and the current state"
        replaced = {p.year for p in delivered} - kept.get(delivery_id, set())
        if replaced:
            source = _replaced_source(state, family, delivery_id, replaced, bool(kept.get(delivery_id)))
    else:
        kept = state.plan(family, exclude_delivery=delivery_id)
        source = f"the current state of {family}"
    state.verify(family, {d: years for d, years in kept.items() if d != delivery_id})
    df = state.read_plan(family, kept, columns=columns)
    if df is None:
        return None, f"{family} is neither in this delivery nor in the current state", {}
    missing = [c for c in columns if c not in df.columns]
    if missing:
        return None, f"{family} has no column {', '.join(missing)}", {}
    return df, f"checked against {source}", kept


def _replaced_source(state: CurrentState, family: str, delivery_id: str, replaced: set[int | None],
                     partly: bool) -> str:
    """What a link is checked against when a later ``full`` delivery of the parent, received before this one,
    replaces this delivery's parent rows (all of them, or some years): "of this delivery" was not true."""
    at = delivery_order(delivery_id)
    later = sorted({p.delivery_id for p in state.parts(family, exclude_delivery=delivery_id)
                    if p.mode == domain.FULL and p.year in replaced and delivery_order(p.delivery_id) > at},
                   key=delivery_order)
    years = sorted(y for y in replaced if y is not None)
    which = f"{family} of this delivery" + (f" for {', '.join(map(str, years))}" if years else "")
    kept = f"{family} of this delivery (but for the years replaced) and the current state" if partly \
        else f"the current state of {family}"
    by = f"the later full deliver{'y' if len(later) == 1 else 'ies'} {', '.join(later)}, received before it" \
        if later else "a later full delivery"
    return f"{kept}: {which} is replaced by {by}"


class CurrentState:
    """The current state of each family, from the accepted deliveries' reports (listed on every call, so that a
    report written meanwhile is seen; a report is read again only when it changed)."""

    def __init__(self, spark: SparkSession, settings: Settings, catalog: Catalog):
        self.spark = spark
        self.settings = settings
        self.catalog = catalog
        self.lake = Lake(settings.lake)
        self._cache: dict[tuple, DataFrame] = {}
        self._hashes: dict[tuple, np.ndarray] = {}
        self._summaries: dict[tuple[str, str], ParquetSummary] = {}
        self._lock = threading.Lock()  # families of a delivery are curated two at a time
        self._reports: dict[str, tuple[str, dict]] = {}
        self._reports_lock = threading.Lock()  # apart: listing the reports is I/O, on Azure a network call

    # --- which partitions -------------------------------------------------------------------------------
    def parts(self, family: str, exclude_delivery: str | None = None) -> list[Part]:
        """Every delivered table of ``family`` in the accepted deliveries, in delivery order."""
        return [Part(delivery_id, year, entry.get("mode") or domain.default_mode(table))
                for delivery_id, table, year, entry in self._accepted_tables(family)
                if delivery_id != exclude_delivery]

    def _accepted_tables(self, family: str) -> Iterator[tuple[str, Table, int | None, dict]]:
        """(delivery id, table, year, report entry) of every table of ``family`` in the accepted deliveries'
        reports, in delivery order."""
        for delivery_id, _, table, year, entry in self._accepted_entries(family):
            yield delivery_id, table, year, entry

    def _accepted_entries(self, family: str) -> Iterator[tuple[str, str, Table, int | None, dict]]:
        """``_accepted_tables`` with each table's delivered name (T_MCO23C)."""
        with self._reports_lock:
            reports = list_reports(self.settings, self._reports)
        for report in reports:
            delivery_id = report.get("delivery_id")
            if report.get("status") != ACCEPTED or not delivery_id:
                continue
            for name, entry in (report.get("tables") or {}).items():
                try:
                    table, year = self.catalog.resolve(name)
                except KeyError:
                    continue
                if (entry.get("family") or table.name) == family:
                    yield delivery_id, name, table, year, entry

    def receptions(self) -> dict[str, str]:
        """Accepted delivery id -> version stamp of its report, which a reception rewrites: a delivery received
        again under the same id changes its stamp though the ids making up a state stay the same."""
        with self._reports_lock:
            list_reports(self.settings, self._reports)
            return {report["delivery_id"]: stamp for stamp, report in self._reports.values()
                    if report.get("status") == ACCEPTED and report.get("delivery_id")}

    def absent(self, family: str) -> dict[tuple[str, int | None], frozenset[str]]:
        """(delivery id, year) -> the columns of its year (the schema's history) that some file of that accepted
        table did not bring, read from the headers its raw fragment recorded, for the tables whose ``columns``
        check failed (one that passed found every column in every file)."""
        out: dict[tuple[str, int | None], frozenset[str]] = {}
        for delivery_id, name, table, year, entry in self._accepted_entries(family):
            check = next((c for c in entry.get("checks") or () if c.get("name") == "columns"), None)
            if not check or check.get("passed", True):
                continue
            fragment = load_fragment(self.settings, delivery_id, name, "raw") or {}
            expected = set(table.columns_in(year))
            missing = set()
            for f in fragment.get("files") or ():
                if f.get("header") is not None:
                    missing |= expected - {h.strip().upper() for h in f["header"]}
            if missing:
                out[(delivery_id, year)] = frozenset(missing)
        return out

    def repeats_keys(self, family: str) -> bool:
        """Whether a table of the state's deliveries found keys already in the state when it was received (its
        ``primary_key_state`` check failed): a key repeated within one delivery rejects it (``primary_key``), so
        only these can hold one key twice."""
        kept = set(self.deliveries(family))
        for delivery_id, _, _, _, entry in self._accepted_entries(family):
            check = next((c for c in entry.get("checks") or () if c.get("name") == "primary_key_state"), None)
            if delivery_id in kept and check and check.get("evaluated", True) and not check.get("passed", True):
                return True
        return False

    @staticmethod
    def compose(parts: list[Part]) -> dict[str, set[int | None]]:
        """Apply the parts in order: full replaces (per year), incremental adds. Delivery id -> years kept."""
        by_year: dict[int | None, list[str]] = {}
        for part in parts:
            ids = by_year.setdefault(part.year, [])
            if part.mode == domain.FULL:
                ids.clear()
            if part.delivery_id not in ids:
                ids.append(part.delivery_id)
        kept: dict[str, set[int | None]] = {}
        for year, ids in by_year.items():
            for delivery_id in ids:
                kept.setdefault(delivery_id, set()).add(year)
        return dict(sorted(kept.items(), key=lambda item: delivery_order(item[0])))

    def deliveries(self, family: str) -> list[str]:
        """Delivery ids whose curated partitions make up the current state of ``family``."""
        return list(self.compose(self.parts(family)))

    # --- reading ----------------------------------------------------------------------------------------
    def plan(self, family: str, exclude_delivery: str | None = None,
             after: tuple[str, list[Part]] | None = None) -> dict[str, set[int | None]]:
        """Delivery id -> years whose curated partitions make up the state of ``family``; with ``after``
        (a delivery id and its parts of the family), the state once that delivery is accepted."""
        if after is None:
            return self.compose(self.parts(family, exclude_delivery))
        delivery_id, delivered = after
        others = self.parts(family, exclude_delivery=delivery_id)
        at = delivery_order(delivery_id)
        return self.compose([p for p in others if delivery_order(p.delivery_id) < at] + list(delivered)
                            + [p for p in others if delivery_order(p.delivery_id) > at])

    def read(self, family: str, exclude_delivery: str | None = None,
             columns: list[str] | None = None) -> DataFrame | None:
        """The current state of ``family`` (optionally without one delivery, e.g. the one being curated), or
        None when no accepted delivery brought it. ``columns`` limits what is read (plus DELIVERY_ID). Each
        partition read is first matched with its report (``verify``)."""
        kept = self.plan(family, exclude_delivery)
        self.verify(family, kept)
        return self.read_plan(family, kept, columns)

    def verify(self, family: str, kept: dict[str, set[int | None]]) -> None:
        """Raise ``DamagedPartition`` when a curated partition of ``kept`` (accepted deliveries only) does not hold
        the rows its delivery's report says were curated: a partition or a Parquet file removed or truncated by
        hand made an extraction read fewer rows, or none, and still call itself complete."""
        expected = self._curated_rows(family)
        for delivery_id in kept:
            rows = expected.get(delivery_id)
            if rows is None:
                continue
            path = self.lake.curated(family, delivery_id)
            try:
                found = self._summary(family, delivery_id).rows
            except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
                raise DamagedPartition(
                    f"curated partition {path} of accepted delivery {delivery_id} cannot be read: run snds "
                    f"ingest {delivery_id} to curate it again ({type(exc).__name__}: "
                    f"{' '.join(str(exc).split())})") from exc
            if found != rows:
                raise DamagedPartition(
                    f"curated partition {path} holds {found} rows where the report of accepted delivery "
                    f"{delivery_id} says {rows} were curated (a file removed or damaged?): run snds ingest "
                    f"{delivery_id} to curate it again")

    def _curated_rows(self, family: str) -> dict[str, int]:
        """Accepted delivery id -> rows its report says were curated into its partition of ``family``."""
        out: dict[str, int] = {}
        for delivery_id, _, _, entry in self._accepted_tables(family):
            rows = entry.get("rows_curated")
            if isinstance(rows, int):
                out[delivery_id] = out.get(delivery_id, 0) + rows
        return out

    def read_plan(self, family: str, kept: dict[str, set[int | None]],
                  columns: list[str] | None = None) -> DataFrame | None:
        return self._read(family, kept, columns)

    # --- derived data shared by the families of a run ---------------------------------------------------
    def cached(self, family: str, key: tuple, build: Callable[[], DataFrame]) -> DataFrame:
        """A DataFrame derived from ``family``'s state (e.g. its key hashes), built once and kept in Spark's
        cache while this object lives: the fifteen DCIR tables that point to ER_PRS_F read its keys once."""
        entry = (family, key)
        with self._lock:
            if entry not in self._cache:
                self._cache[entry] = build().persist()
            return self._cache[entry]

    def distinct_hashes(self, family: str, key: tuple, hashes: DataFrame) -> np.ndarray:
        """``hashes`` (a small parent's, as ``cached`` keeps them) in the driver, sorted and distinct, fetched once
        for every small child of the run (``keys.missing``)."""
        entry = (family, key)
        with self._lock:
            known = self._hashes.get(entry)
        if known is None:
            known = keys.distinct_hashes(hashes)
            with self._lock:
                known = self._hashes.setdefault(entry, known)
        return known

    def rows(self, family: str, kept: dict[str, set[int | None]]) -> int:
        """Rows of the curated partitions behind ``kept`` (every year of each), from their Parquet footers: an
        upper bound of the family's key values, known without a Spark job."""
        return sum(self._summary(family, delivery_id).rows for delivery_id in kept)

    def _summary(self, family: str, delivery_id: str) -> ParquetSummary:
        """One curated partition's rows and value ranges, from its Parquet footers, read once while this object
        lives."""
        with self._lock:
            known = self._summaries.get((family, delivery_id))
        if known is None:
            known = parquet_summary(self.lake.curated(family, delivery_id))
            with self._lock:
                self._summaries[(family, delivery_id)] = known
        return known

    def meeting(self, family: str, kept: dict[str, set[int | None]],
                ranges: dict[str, ValueRange]) -> dict[str, set[int | None]]:
        """The partitions of ``kept`` that may hold a row whose every column of ``ranges`` is in its range (or
        null where ``ranges`` holds nulls), from their footers (``verify`` reads the same): a key or a link
        can only match rows of those. A monthly DCIR delivery's keys, of its own flow dates, meet one or two
        months of ER_PRS_F however many the lake keeps. A partition whose footers give no range of a column is
        kept; an empty one is not."""
        if not ranges:
            return dict(kept)
        out = {}
        for delivery_id, years in kept.items():
            summary = self._summary(family, delivery_id)
            if summary.rows and all(self._column_meets(summary, column, wanted) for column, wanted in ranges.items()):
                out[delivery_id] = years
        return out

    @staticmethod
    def _column_meets(summary: ParquetSummary, column: str, wanted: ValueRange) -> bool:
        if column not in summary.columns:  # read as nulls
            return wanted.nulls
        held = summary.ranges.get(column)
        return held is None or held.meets(wanted)

    def share(self, family: str, key: tuple, frame: DataFrame) -> None:
        """Hand over a derivation already built and persisted (a parent's key hashes, made by its own run)."""
        with self._lock:
            previous = self._cache.pop((family, key), None)
            if previous is not None and previous is not frame:
                previous.unpersist()
            self._cache[(family, key)] = frame

    def share_hashes(self, family: str, key: tuple, hashes: np.ndarray) -> None:
        """Hand over a small parent's sorted, distinct key hashes, observed by its own write: ``distinct_hashes``
        then needs no query for them."""
        with self._lock:
            self._hashes[(family, key)] = hashes

    def close(self) -> None:
        """Release every cached derivation (the Spark session outlives the run: CLI, Spark Connect)."""
        with self._lock:
            for frame in self._cache.values():
                frame.unpersist()
            self._cache.clear()
            self._hashes.clear()
            self._summaries.clear()

    def invalidate(self, family: str) -> None:
        """Forget what was derived from ``family`` (its partition of a delivery was just replaced)."""
        with self._lock:
            for entry in [e for e in self._cache if e[0] == family]:
                self._cache.pop(entry).unpersist()
            for entry in [e for e in self._summaries if e[0] == family]:
                self._summaries.pop(entry)
            for entry in [e for e in self._hashes if e[0] == family]:
                self._hashes.pop(entry)

    def _read(self, family: str, kept: dict[str, set[int | None]], columns: list[str] | None) -> DataFrame | None:
        known = family in self.catalog
        yearly = known and self.catalog[family].is_yearly
        schema = None
        if columns is not None and known:
            # Known columns are read with the catalog's types: no schema inference job per partition.
            types = {p.name: p.dtype for p in family_columns(self.catalog[family], Format(), [])}
            wanted = list(dict.fromkeys(list(columns) + ([domain.YEAR_COLUMN] if yearly else [])))
            if all(c in types for c in wanted):
                schema = T.StructType([T.StructField(c, types[c]) for c in wanted])
        frames = []
        for delivery_id, years in kept.items():
            path = self.lake.curated(family, delivery_id)
            if not lake_exists(path):
                continue
            df = (self.spark.read.schema(schema) if schema is not None else self.spark.read).parquet(path)
            if yearly and domain.YEAR_COLUMN in df.columns:
                df = df.filter(F.col(domain.YEAR_COLUMN).isin(sorted(y for y in years if y is not None)))
            if columns is not None:
                wanted = list(dict.fromkeys(list(columns) + ([domain.YEAR_COLUMN] if yearly else [])))
                df = df.select(*[c for c in wanted if c in df.columns])
            frames.append(df.withColumn(DELIVERY_COLUMN, F.lit(delivery_id)))
        if not frames:
            return None
        out = frames[0]
        for df in frames[1:]:
            out = out.unionByName(df, allowMissingColumns=True)
        return out
