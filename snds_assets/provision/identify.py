"""Identification of a project's cohort (SPEC §3): appariement from identifiers, ciblage from criteria.

A person is a BEN_IDT_ANO of IR_BEN_R (with its archive). Identifiers resolve to persons through the identity
rows; criteria find events in DCIR (through ER_PRS_F lines in the period, information-only lines excluded) and
in the PMSI (through the C table's good links, twins excluded), then map them to persons. Identified persons
are always in the cohort; the age and sex filters apply to targeted persons only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from .. import domain
from ..catalog import Catalog
from .links import (ANO, IDT, NIR17, NIR_UNIQUE, PSA, RNG, beneficiary_rows, dated_rows, identities,
                    link_columns, match_codes, semi_join, unambiguous, unique_nirs)
from .request import Criterion, ProjectRequest
from .source import TableSource

IDENTIFIED, TARGETED, FOUND_BY, CRITERIA = "IDENTIFIED", "TARGETED", "FOUND_BY", "CRITERIA"
RESOLVED, AMBIGUOUS, UNKNOWN = "resolved", "ambiguous", "unknown"
PAIR = "BEN_NIR_PSA+BEN_RNG_GEM"
# Above this many identities, the cohort is joined by shuffle instead of being broadcast to every task.
BROADCAST_MAX_ROWS = 2_000_000

IDENTIFIER_SCHEMA = T.StructType([
    T.StructField("LINE", T.IntegerType(), False),
    T.StructField("METHOD", T.StringType(), False),
    T.StructField(IDT, T.StringType(), True),
    T.StructField(PSA, T.StringType(), True),
    T.StructField(RNG, T.IntegerType(), True),
    T.StructField(NIR17, T.StringType(), True),
])


@dataclass
class CohortResult:
    """The cohort of one project, still in SNDS pseudonyms (it never leaves the lake as such).

    ``cohort``: one row per person (BEN_IDT_ANO, IDENTIFIED, TARGETED, FOUND_BY, CRITERIA);
    ``identities``: every identity of those persons (BEN_NIR_PSA, BEN_RNG_GEM, BEN_IDT_ANO, BEN_NIR_ANO, NIR_UNIQUE);
    ``resolution``: one row per identifier the project brought (LINE, METHOD, values, STATUS, PERSONS, RESOLVED_IDT);
    ``unresolved``: the ambiguous and unknown identifiers, listed; ``counts``: what the report shows.
    """

    cohort: DataFrame
    identities: DataFrame
    resolution: DataFrame | None
    counts: dict
    unresolved: list[dict] = field(default_factory=list)
    sources: dict[str, list[str]] = field(default_factory=dict)
    cached: list[DataFrame] = field(default_factory=list, repr=False)

    @property
    def broadcastable(self) -> bool:
        return self.counts.get("identities", 0) <= BROADCAST_MAX_ROWS

    def unpersist(self) -> None:
        for df in (self.cohort, self.identities, self.resolution, *self.cached):
            if df is not None:
                df.unpersist()


def build_cohort(spark: SparkSession, catalog: Catalog, request: ProjectRequest, source: TableSource) -> CohortResult:
    """Identify the project's persons. The cohort stays in SNDS pseudonyms until it is written (see
    run.run_cohort)."""
    rows = beneficiary_rows(source)
    all_ids = identities(rows)
    # Identities come from IR_BEN_R and its archive: both are sources of the cohort, an archive not delivered
    # yet with no delivery (one delivered later changes the cohort's state).
    used: dict[str, list[str]] = {domain.BENEFICIARY_TABLE: source.deliveries(domain.BENEFICIARY_TABLE)}
    for archive in domain.archives_of(domain.BENEFICIARY_TABLE):
        used[archive] = list(source.deliveries(archive))

    counts: dict = {}
    identified, resolution, unresolved = _appariement(spark, request, rows, counts)

    targeted, cached = None, []
    if request.criteria is not None:
        targeted = _ciblage(catalog, request, source, rows, counts, used, cached)

    if identified is not None and targeted is not None:
        cohort = (identified.withColumn(IDENTIFIED, F.lit(True))
                  .join(targeted.withColumn(TARGETED, F.lit(True)), IDT, "full_outer"))
    elif identified is not None:
        cohort = identified.withColumn(IDENTIFIED, F.lit(True)).withColumn(TARGETED, F.lit(None).cast("boolean")) \
            .withColumn(CRITERIA, F.lit(None).cast("array<string>"))
    else:
        cohort = targeted.withColumn(IDENTIFIED, F.lit(None).cast("boolean")).withColumn(TARGETED, F.lit(True))
    ident, targ = F.coalesce(F.col(IDENTIFIED), F.lit(False)), F.coalesce(F.col(TARGETED), F.lit(False))
    cohort = cohort.select(
        IDT, ident.alias(IDENTIFIED), targ.alias(TARGETED),
        F.when(ident & targ, "both").when(ident, "identified").otherwise("targeted").alias(FOUND_BY),
        F.coalesce(F.array_sort(F.col(CRITERIA)), F.array().cast("array<string>")).alias(CRITERIA),
    ).persist()

    by_path = {r[FOUND_BY]: r["n"] for r in cohort.groupBy(FOUND_BY).agg(F.count("*").alias("n")).collect()}
    counts.update({
        "persons": sum(by_path.values()),
        "identified_only": by_path.get("identified", 0),
        "targeted_only": by_path.get("targeted", 0),
        "both": by_path.get("both", 0),
    })
    counts["identified"] = counts["identified_only"] + counts["both"]
    counts["targeted"] = counts["targeted_only"] + counts["both"]

    cohort_ids = all_ids.join(cohort.select(IDT), IDT, "left_semi").select(IDT, PSA, RNG, ANO, NIR_UNIQUE).persist()
    counts["identities"] = cohort_ids.count()
    counts["identities_archived"] = 0
    if any(used[archive] for archive in domain.archives_of(domain.BENEFICIARY_TABLE)):
        # Identities only the archive holds: a project that does not list it gets their care with no IR_BEN_R row.
        current = beneficiary_rows(source, archives=False).select(PSA, RNG)
        counts["identities_archived"] = cohort_ids.join(current, [PSA, RNG], "left_anti").select(PSA, RNG) \
            .distinct().count()
    return CohortResult(cohort, cohort_ids, resolution, counts, unresolved, used, cached)


# --- Appariement ------------------------------------------------------------------------------------------
def _appariement(spark: SparkSession, request: ProjectRequest, rows: DataFrame, counts: dict):
    if request.identifiers_file is None:
        return None, None, []
    data = [(i.line, i.method, i.ben_idt_ano, i.ben_nir_psa, i.ben_rng_gem, i.nir_ano_17) for i in request.identifiers]
    ids = spark.createDataFrame(data, IDENTIFIER_SCHEMA)
    key = (F.when(F.col("METHOD") == "BEN_IDT_ANO", F.col(IDT))
           .when(F.col("METHOD").isin(PAIR, "BEN_NIR_PSA"), F.col(PSA))
           .when(F.col("METHOD") == "NIR_ANO_17", F.col(NIR17)))
    ids = ids.withColumn("__key", key)
    # Duplicated identity rows (IR_BEN_R and its archive) are harmless: persons are counted distinct.
    persons = rows.select(F.col(IDT).alias("__p"))
    identity = rows.select(F.col(PSA).alias("__psa"), F.col(RNG).alias("__rng"), F.col(IDT).alias("__p"))
    by_person = ids.where(F.col("METHOD") == "BEN_IDT_ANO").join(persons, F.col("__key") == F.col("__p"))
    by_nir = (ids.where(F.col("METHOD").isin(PAIR, "BEN_NIR_PSA", "NIR_ANO_17"))
              .join(identity, F.col("__key") == F.col("__psa"))
              .where((F.col("METHOD") != PAIR) | (F.col(RNG) == F.col("__rng"))))
    # An identity row without BEN_IDT_ANO is a person nobody can name: beside another person it makes the
    # identifier ambiguous; alone, unknown.
    matches = (by_person.select("LINE", "__p").unionByName(by_nir.select("LINE", "__p"))
               .groupBy("LINE").agg(F.countDistinct("__p").alias("__known"),
                                    F.max(F.col("__p").isNull().cast("int")).alias("__blank"),
                                    F.min("__p").alias("__one")))
    known = F.coalesce(F.col("__known"), F.lit(0))
    persons_found = known + F.coalesce(F.col("__blank"), F.lit(0))
    resolved = (persons_found == 1) & (known == 1)
    resolution = ids.drop("__key").join(matches, "LINE", "left").select(
        "LINE", "METHOD", IDT, PSA, RNG, NIR17,
        F.when(resolved, RESOLVED).when(persons_found > 1, AMBIGUOUS).otherwise(UNKNOWN).alias("STATUS"),
        persons_found.alias("PERSONS"),
        F.when(resolved, F.col("__one")).alias("RESOLVED_IDT"),
    ).persist()

    summary = resolution.groupBy("METHOD", "STATUS").count().collect()
    statuses = {RESOLVED: 0, AMBIGUOUS: 0, UNKNOWN: 0}
    by_method: dict[str, dict[str, int]] = {}
    for r in summary:
        statuses[r["STATUS"]] += r["count"]
        by_method.setdefault(r["METHOD"], {RESOLVED: 0, AMBIGUOUS: 0, UNKNOWN: 0})[r["STATUS"]] = r["count"]
    counts["identifiers"] = {"rows": sum(statuses.values()), **statuses, "by_method": by_method}
    unresolved = [r.asDict() for r in resolution.where(F.col("STATUS") != RESOLVED).orderBy("LINE").collect()]
    identified = resolution.where(F.col("STATUS") == RESOLVED).select(F.col("RESOLVED_IDT").alias(IDT)).distinct()
    return identified, resolution, unresolved


# --- Ciblage --------------------------------------------------------------------------------------------------
def _ciblage(catalog: Catalog, request: ProjectRequest, source: TableSource, rows: DataFrame, counts: dict,
             used: dict[str, list[str]], cached: list[DataFrame]) -> DataFrame:
    criteria = request.criteria
    finder = _EventFinder(catalog, request, source, rows, used)
    matched_parts = []
    for name, item in criteria.items:
        persons = finder.persons(item)
        if persons is not None:
            matched_parts.append(persons.select(IDT, F.lit(f"{name}:{item.kind}").alias("__item")))
    cached.extend(finder.ambiguous.values())  # unpersisted with the cohort's frames
    counts["criteria"] = {f"{n}:{c.kind}": {"label": c.label, "persons": 0} for n, c in criteria.items}
    counts["criteria_tables_missing"] = sorted(finder.missing)
    if not matched_parts:
        empty = rows.sparkSession.createDataFrame([], f"{IDT} string, {CRITERIA} array<string>")
        counts["targeted_before_filters"] = 0
        return empty
    matched = reduce(DataFrame.unionByName, matched_parts).distinct().persist()
    cached.append(matched)
    for r in matched.groupBy("__item").count().collect():
        counts["criteria"][r["__item"]]["persons"] = r["count"]
    per_person = matched.groupBy(IDT).agg(F.collect_set("__item").alias(CRITERIA))

    cond = F.lit(True)
    if criteria.any_of:
        cond = cond & F.exists(CRITERIA, lambda x: x.startswith("any_of["))
    for name, item in criteria.items:
        if name.startswith("all_of["):
            cond = cond & F.array_contains(CRITERIA, f"{name}:{item.kind}")
    targeted = per_person.where(cond)
    counts["targeted_before_filters"] = targeted.count()
    return _filter_age_sex(targeted, rows, request)


def _filter_age_sex(targeted: DataFrame, rows: DataFrame, request: ProjectRequest) -> DataFrame:
    """Age at the period start (year difference; an unknown birth year 1600 fails) and sex, on any identity."""
    criteria = request.criteria
    if criteria.age_min is None and criteria.age_max is None and criteria.sex is None:
        return targeted
    cond = F.lit(True)
    if criteria.age_min is not None or criteria.age_max is not None:
        birth = F.col(domain.BIRTH_YEAR_COLUMN)
        age = F.lit(request.period_start.year) - birth
        cond = cond & birth.isNotNull() & (birth != F.lit(domain.UNKNOWN_YEAR))
        if criteria.age_min is not None:
            cond = cond & (age >= criteria.age_min)
        if criteria.age_max is not None:
            cond = cond & (age <= criteria.age_max)
    if criteria.sex is not None:
        cond = cond & F.col(domain.SEX_COLUMN).isin(*criteria.sex)
    passing = rows.where(cond).select(IDT)
    return targeted.join(passing, IDT, "left_semi")


class _EventFinder:
    """Finds the persons with an event matching a criterion, following the domain's links to the patient."""

    def __init__(self, catalog: Catalog, request: ProjectRequest, source: TableSource, rows: DataFrame,
                 used: dict[str, list[str]]):
        self.catalog, self.request, self.source, self.rows, self.used = catalog, request, source, rows, used
        self.missing: set[str] = set()
        self._frames: dict[str, DataFrame | None] = {}
        self._nirs: DataFrame | None = None
        self.ambiguous: dict[tuple[str, tuple[str, ...]], DataFrame] = {}  # link values naming two persons

    def read(self, family: str) -> DataFrame | None:
        if family not in self._frames:
            df = self.source.read(family) if family in self.catalog else None
            if df is None:
                self.missing.add(family)
            self.used[family] = [] if df is None else self.source.deliveries(family)
            self._frames[family] = df
        return self._frames[family]

    def persons(self, item: Criterion) -> DataFrame | None:
        parts = []
        for where in domain.CRITERIA[item.kind][1]:
            df = self.read(where.family)
            if df is None:
                continue
            hits = df.where(match_codes(df, where.columns, item.codes, where.match))
            persons = self._to_persons(where.family, hits)
            if persons is not None:
                parts.append(persons)
        if not parts:
            return None
        return reduce(DataFrame.unionByName, parts)

    def _to_persons(self, family: str, hits: DataFrame) -> DataFrame | None:
        """Walk the links from matching rows up to the patient-bearing rows of the period, then to persons."""
        start, end = self.request.period_start, self.request.period_end
        table = self.catalog[family]
        path = domain.patient_path(self.catalog, family)
        rows = dated_rows(table, hits, start, end, targeting=True, source=self.source) if not path else hits
        for i, link in enumerate(path):
            parent = self.read(link.parent)
            if parent is None:
                return None
            if i == len(path) - 1:  # the parent bears the patient
                rows = unambiguous(rows, link, self.catalog[link.parent], self.source, self.ambiguous)
            parent_rows = dated_rows(self.catalog[link.parent], parent, start, end, targeting=True, source=self.source)
            rows = semi_join(parent_rows, rows, link_columns(link))
            table = self.catalog[link.parent]
        return self._persons_of(table, rows)

    def _persons_of(self, table, rows: DataFrame) -> DataFrame:
        ident = domain.identifier_columns(table)
        if ident == (PSA, RNG):
            pairs = rows.select(PSA, F.col(RNG).try_cast("int").alias(RNG))
            return pairs.join(self.rows.where(F.col(IDT).isNotNull()).select(PSA, RNG, IDT), [PSA, RNG]).select(IDT)
        if ident == (IDT,):
            return rows.select(IDT).join(self.rows.select(IDT), IDT, "left_semi")
        nir = ident[0]
        if self._nirs is None:
            self._nirs = unique_nirs(self.rows)
        return rows.select(F.col(nir).alias(PSA)).join(self._nirs, PSA).select(IDT)
