"""Extraction (SPEC §3): the rows of one family that belong to the cohort and the period, granted columns only.

Rows are selected by semi-joins down the domain's join graph: patient-bearing tables by the cohort's
identities (or persons, or unambiguous pseudo-NIRs for the PMSI link tables), every other table by its link to
the rows selected in its parent (the nine DCIR keys, the PMSI stay key of the same year). The cohort is small
next to the base, so it is broadcast; nothing is collected to the driver.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from .. import domain
from ..catalog import Catalog, Table
from .identify import BROADCAST_MAX_ROWS, CohortResult
from .links import (IDT, NIR_UNIQUE, PSA, RNG, YEAR, MissingTable, beneficiary_rows, dated_rows, identities,
                    link_columns, release, semi_join, unambiguous)
from .pseudonymize import label_of, pseudonymize
from .request import ProjectRequest
from .source import DELIVERY_COLUMN, TableSource


def join_keys(table: Table) -> tuple[str, ...]:
    """Keys always kept in an extract so that the project can join its tables: DCIR keys, PMSI stay key (and
    week, SSR weekly tables) + year."""
    keys: list[str] = []
    link = domain.parent_link(table)
    if table.name == domain.DCIR_CENTRAL or (link is not None and link.parent == domain.DCIR_CENTRAL):
        keys += [c for c in domain.DCIR_KEYS if c in table.by_name]  # all nine, ER_DCT_F's link naming seven
    if link is not None:
        keys += [c for c in link.columns if c not in keys]
    keys += [c for c in domain.stay_key(table) + domain.week_key(table) if c not in keys]
    if table.is_yearly:
        keys.append(YEAR)
    return tuple(keys)


def always_kept(table: Table) -> set[str]:
    """Columns kept whatever the request's column list: join keys, the rank, the pseudonym columns."""
    return set(join_keys(table)) | {RNG} | set(domain.PROJECT_PSEUDONYMS)


def granted_columns(catalog: Catalog, request: ProjectRequest, family: str, columns: list[str]) -> list[str]:
    """The columns of ``columns`` (a selection's, in SNDS names) that may leave the lake, in their order.

    Columns unknown to the catalog and the lake's own DELIVERY_ID are never extracted.
    """
    table = catalog[family]
    known = [c for c in columns if _in_catalog(table, c)]
    if family not in request.columns:
        return known
    keep = set(request.columns[family]) | always_kept(table)
    return [c for c in known if c in keep]


def withheld_columns(catalog: Catalog, family: str, columns: list[str]) -> list[str]:
    """The delivered columns of ``columns`` that the catalog does not know (curated as text, SPEC §2): never handed
    out, whatever the request, since nothing tells whether one holds a patient pseudonym. The report lists them."""
    table = catalog[family]
    return [c for c in columns if not _in_catalog(table, c) and c != DELIVERY_COLUMN]


def _in_catalog(table: Table, column: str) -> bool:
    """A column of the family's schema, or the year a PMSI family's rows carry."""
    return column in table.by_name or (column == YEAR and table.is_yearly)


def allowed_output_columns(catalog: Catalog, request: ProjectRequest, family: str) -> set[str]:
    """Every column name an extract of ``family`` may have, after pseudonymisation."""
    table = catalog[family]
    names = list(table.columns) + ([YEAR] if table.is_yearly else [])
    return {label_of(c) for c in granted_columns(catalog, request, family, names)}


class Selector:
    """Selects the cohort's rows family by family; parents selected once are reused for their children."""

    def __init__(self, catalog: Catalog, request: ProjectRequest, source: TableSource,
                 cohort: CohortResult | DataFrame):
        self.catalog, self.request, self.source = catalog, request, source
        if isinstance(cohort, CohortResult):
            ids, broadcast = cohort.identities, cohort.broadcastable
        else:
            ids = identities(beneficiary_rows(source)).join(cohort.select(IDT), IDT, "left_semi")
            broadcast = ids.count() <= BROADCAST_MAX_ROWS
        self.ids = ids.select(IDT, PSA, F.col(RNG).try_cast("int").alias(RNG), NIR_UNIQUE)
        self.broadcast = broadcast
        self._rows: dict[str, DataFrame] = {}
        self._ambiguous: dict[tuple[str, tuple[str, ...]], DataFrame] = {}  # link values naming two persons

    def release(self) -> None:
        """Unpersist what the selection cached for its run."""
        release(self._ambiguous)

    def read(self, family: str) -> DataFrame:
        df = self.source.read(family)
        if df is None:
            raise MissingTable(f"{family} is not in the current state")
        return df

    def rows(self, family: str) -> DataFrame:
        """Every column of the selected rows (SNDS pseudonyms, DELIVERY_ID) of ``family``."""
        if family not in self._rows:
            table = self.catalog[family]
            df = self.read(family)
            path = domain.patient_path(self.catalog, family)
            if not path:
                self._rows[family] = self._patient_rows(table, df)
            else:
                link = path[0]
                rows = semi_join(df, self.rows(link.parent), link_columns(link))
                if len(path) == 1:  # the parent bears the patient
                    rows = unambiguous(rows, link, self.catalog[link.parent], self.source, self._ambiguous)
                self._rows[family] = rows
        return self._rows[family]

    def _patient_rows(self, table: Table, df: DataFrame) -> DataFrame:
        start, end = self.request.period_start, self.request.period_end
        df = dated_rows(table, df, start, end, targeting=False, source=self.source)
        ident = domain.identifier_columns(table)
        if ident == (PSA, RNG):
            return semi_join(df, self.ids, (PSA, RNG), broadcast=self.broadcast)
        if ident == (IDT,):
            return semi_join(df, self.ids.select(IDT).distinct(), (IDT,), broadcast=self.broadcast)
        if len(ident) == 1:
            nir = ident[0]
            nirs = self.ids.where(F.col(NIR_UNIQUE)).select(F.col(PSA).alias(nir)).distinct()
            return semi_join(df, nirs, (nir,), broadcast=self.broadcast)
        raise LookupError(f"{table.name} carries no patient identifier the cohort can be matched on")


def minimise(catalog: Catalog, request: ProjectRequest, family: str, rows: DataFrame) -> DataFrame:
    """Keep the granted columns only (DELIVERY_ID and columns unknown to the catalog are dropped)."""
    return rows.select(*granted_columns(catalog, request, family, rows.columns))


def extract_family(spark: SparkSession, catalog: Catalog, request: ProjectRequest, family: str,
                   cohort: CohortResult | DataFrame, source: TableSource, secret: bytes | None = None,
                   selector: Selector | None = None) -> DataFrame:
    """The extract of one family for the project: its rows, granted columns; under project pseudonyms when
    ``secret`` is given (otherwise still in SNDS pseudonyms, for checks inside the lake).

    ``selector`` lets several families of one run share their parents' selections.
    """
    if family not in request.tables:
        raise ValueError(f"{family} is not in the perimeter of project {request.id}")
    selector = selector or Selector(catalog, request, source, cohort)
    rows = minimise(catalog, request, family, selector.rows(family))
    return pseudonymize(rows, secret) if secret is not None else rows
