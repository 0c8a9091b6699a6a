"""Curation: typed Parquet, rejects with their original values, every curated check with exact counts, the
current state of a family and the idempotence of re-curation. Each test writes its own small CSV files into the
raw archive of a temporary lake and builds the ArchivedTable objects the reception step would hand over."""
from __future__ import annotations

import gzip
import hashlib
import json
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import Observation
from pyspark.sql import functions as F
from pyspark.sql import types as T

from snds_assets import domain
from snds_assets.catalog import Catalog
from snds_assets.checks import CURATED_CHECKS, ERROR, WARN
from snds_assets.config import PACKAGED_SCHEMAS, Settings
from snds_assets.curation import curate, keys, rules
from snds_assets.curation.columns import ColumnPlan, csv_options
from snds_assets.curation.curate import (
    REJECT_FILE, REJECT_LINE, REJECT_REASON, REJECT_TABLE, check_deferred_links, curate_family,
    curated_check_names,
)
from snds_assets.curation.orphaned import check_orphaned_children
from snds_assets.curation.state import CurrentState
from snds_assets.lake import Lake
from snds_assets.provision.links import beneficiary_rows
from snds_assets.reception.archive import ArchivedFile, ArchivedTable
from snds_assets.reception.manifest import DeliveredFile, DeliveredTable, Format, Manifest, parse_format
from snds_assets.reception.report import load_fragment

NIR_A = "A" * 16 + "1"
NIR_B = "B" * 16 + "2"
NIR_T = "T" * 16 + "3"  # twins share it
PLACEHOLDER = "xxxxxxxxxxxxxxxxx"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(PACKAGED_SCHEMAS)


@pytest.fixture()
def settings(tmp_path) -> Settings:
    return Settings.from_env(env={}, home=str(tmp_path / "home"))


# --- building a delivery ------------------------------------------------------------------------------------
class Delivery:
    """Files of one delivery written straight into ``<lake>/raw/<ID>/``, and what reception would hand over."""

    def __init__(self, settings: Settings, catalog: Catalog, delivery_id: str, fmt: Format = Format()):
        self.settings, self.catalog, self.delivery_id, self.fmt = settings, catalog, delivery_id, fmt
        self.archived: list[ArchivedTable] = []

    def table(self, name: str, header: list[str], rows: list[str], mode: str | None = None,
              gz: bool = False, file: str = "part-0001.csv") -> "Delivery":
        fmt = self.fmt
        path = f"{name}/{file}" + (".gz" if gz else "")
        lake_path = Lake(self.settings.lake).raw(self.delivery_id, path)
        text = "".join(line + "\n" for line in ([fmt.delimiter.join(header)] if fmt.header else []) + rows)
        data = text.encode("latin-1" if fmt.encoding == "latin-1" else "utf-8")
        if gz:
            data = gzip.compress(data)
        Path(lake_path).parent.mkdir(parents=True, exist_ok=True)
        Path(lake_path).write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        delivered = DeliveredTable(name, (DeliveredFile(path, len(rows), sha, len(data)),), mode)
        table, year = self.catalog.resolve(name)
        archived_file = ArchivedFile(path, lake_path, True, True, len(data), sha, len(rows),
                                     [h.upper() for h in header] if fmt.header else None)
        self.archived.append(ArchivedTable(delivered, table.name, year, mode or domain.default_mode(table),
                                           [archived_file], []))
        return self

    @property
    def manifest(self) -> Manifest:
        return Manifest(self.delivery_id, tuple(a.delivered for a in self.archived), format=self.fmt)

    def curate(self, spark, family: str, state: CurrentState | None = None, settings: Settings | None = None):
        tables = [a for a in self.archived if a.family == family]
        return curate_family(spark, settings or self.settings, self.catalog, self.manifest, tables, state)

    def accept(self, status: str = "accepted") -> None:
        """Write the reception report that makes this delivery part of the current state (or not)."""
        report = {"delivery_id": self.delivery_id, "status": status, "tables": {
            a.delivered.table: {"family": a.family, "status": status, "mode": a.mode} for a in self.archived}}
        path = Path(Lake(self.settings.lake).delivery_report(self.delivery_id))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report))


def by_name(result) -> dict:
    return {c.name: c for c in result.checks}


BEN_HEADER = ["BEN_NIR_PSA", "BEN_RNG_GEM", "BEN_IDT_ANO", "BEN_NAI_ANN", "BEN_SEX_COD", "BEN_DCD_DTE", "BEN_DCD_AME",
              "BEN_IDT_TOP", "BEN_CDI_NIR"]


def ben(nir: str, rank: int, birth="1970", sex="1", death="1600-01-01", ame="202301", top="1") -> str:
    return ";".join([nir, str(rank), f"P{nir[:16]}{rank}", birth, sex, death, ame, top, "00"])


# --- the check list -----------------------------------------------------------------------------------------
def test_every_table_gets_every_curated_check_once(spark, settings, catalog):
    assert curated_check_names() == list(CURATED_CHECKS)
    d = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1)])
    (result,) = d.curate(spark, "IR_BEN_R")
    assert [c.name for c in result.checks] == [name for name, _ in CURATED_CHECKS]
    assert [c.rule for c in result.checks] == [rule for _, rule in CURATED_CHECKS]
    checks = by_name(result)
    assert not checks["foreign_key"].evaluated  # IR_BEN_R points to nothing
    assert not checks["nomenclature"].evaluated and checks["nomenclature"].details == "SNDS_NOMENCLATURES not set"
    assert not checks["primary_key_state"].evaluated  # a full referential replaces the state
    fragment = load_fragment(settings, "2024-03-01", "IR_BEN_R", "curated")
    assert fragment["rows_read"] == 1 and fragment["rows_curated"] == 1 and fragment["rows_rejected"] == 0
    assert [c["name"] for c in fragment["checks"]] == [name for name, _ in CURATED_CHECKS]


def _job_descriptions(spark, after: int = -1) -> dict[int, str | None]:
    """The Spark jobs of the session after job id ``after``, with their descriptions (the UI's status store)."""
    jobs = spark.sparkContext._jsc.sc().statusStore().jobsList(None)
    out = {}
    for i in range(jobs.size()):
        job = jobs.apply(i)
        if job.jobId() > after:
            out[job.jobId()] = job.description().get() if job.description().isDefined() else None
    return out


def test_spark_jobs_say_which_delivery_family_and_step_they_are(spark, settings, catalog):
    """Spark's UI showed call sites (`parquet at NativeMethodAccessorImpl.java:0`): on a cluster an operator could
    not tell which family or step a slow job was. Each job of a reception now names them; jobs started after it
    are not named so."""
    before = max(_job_descriptions(spark), default=-1)
    d = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1), ben(NIR_B, 1)])
    d.curate(spark, "IR_BEN_R")
    named = set(_job_descriptions(spark, before).values())
    assert "delivery 2024-03-01: IR_BEN_R curated write" in named, named
    assert {n for n in named if n is None or not n.startswith("delivery 2024-03-01: IR_BEN_R ")} == set(), named
    last = max(_job_descriptions(spark), default=-1)
    spark.range(3).count()
    assert set(_job_descriptions(spark, last).values()) == {None}


# --- type, not_null, rejects, reconciliation ---------------------------------------------------------------------
IMB_HEADER = ["BEN_NIR_PSA", "BEN_RNG_GEM", "IMB_ALD_NUM", "IMB_ALD_DTD", "IMB_ALD_DTF", "MED_MTF_COD"]


def test_type_and_not_null_failures_are_rejected_with_their_original_values(spark, settings, catalog):
    rows = [
        f"{NIR_A};1;5;2020-01-15;1600-01-01;E11",  # good
        f"{NIR_A};1;6;2021-02-01;;I10",  # good: an empty optional date
        f"{NIR_A};1;AB;2020-01-15;;E10",  # type: integer
        f"{NIR_B};1;7;2020-13-45;;E10",  # type: date
        f"{NIR_B};1;7;2020-01-15",  # malformed: 4 fields for 6 columns
        ";1;8;2020-01-15;;E10",  # not_null: BEN_NIR_PSA empty
        ";1;XX;2020-01-15;;E10",  # not_null and type on one row
    ]
    d = Delivery(settings, catalog, "2024-03-01").table("IR_IMB_R", IMB_HEADER, rows)
    (result,) = d.curate(spark, "IR_IMB_R")
    checks = by_name(result)
    assert (result.rows_read, result.rows_curated, result.rows_rejected) == (7, 2, 5)
    assert checks["type"].failures == 4 and checks["type"].columns == ["IMB_ALD_NUM", "IMB_ALD_DTD"]
    assert "1 malformed line" in checks["type"].details
    assert checks["not_null"].failures == 2
    assert checks["rows_reconciled"].passed and checks["rows_reconciled"].severity == ERROR
    # 5 of 7 rows rejected: far above the 1 % tolerance, so the failed WARN checks become ERROR.
    assert checks["type"].severity == ERROR and checks["not_null"].severity == ERROR
    # A few failing rows per check, every failing kind among the first: all four here, two on one column (a
    # malformed line has no column).
    assert [s["line"] for s in checks["type"].sample] == [
        f"{NIR_B};1;7;2020-01-15", f"{NIR_A};1;AB;2020-01-15;;E10", f"{NIR_B};1;7;2020-13-45;;E10",
        ";1;XX;2020-01-15;;E10"]
    assert [s.get("column") for s in checks["type"].sample] == [None, "IMB_ALD_NUM", "IMB_ALD_DTD", "IMB_ALD_NUM"]
    assert sorted(s["line"] for s in checks["not_null"].sample) == [";1;8;2020-01-15;;E10", ";1;XX;2020-01-15;;E10"]

    lake = Lake(settings.lake)
    rejects = spark.read.parquet(lake.rejects("IR_IMB_R", "2024-03-01"))
    assert dict(rejects.dtypes)["IMB_ALD_NUM"] == "string"
    got = {r[REJECT_LINE]: r for r in rejects.collect()}
    assert len(got) == 5
    bad_date = got[f"{NIR_B};1;7;2020-13-45;;E10"]
    assert bad_date["IMB_ALD_DTD"] == "2020-13-45" and bad_date[REJECT_REASON] == "type: IMB_ALD_DTD"
    assert bad_date[REJECT_TABLE] == "IR_IMB_R" and bad_date[REJECT_FILE] == "IR_IMB_R/part-0001.csv"
    assert got[f"{NIR_A};1;AB;2020-01-15;;E10"]["IMB_ALD_NUM"] == "AB"
    assert got[f"{NIR_B};1;7;2020-01-15"][REJECT_REASON].startswith("malformed line")
    assert got[";1;8;2020-01-15;;E10"][REJECT_REASON] == "not_null: BEN_NIR_PSA"
    assert got[";1;XX;2020-01-15;;E10"][REJECT_REASON] == "type: IMB_ALD_NUM; not_null: BEN_NIR_PSA"

    curated = spark.read.parquet(lake.curated("IR_IMB_R", "2024-03-01"))
    types = dict(curated.dtypes)
    assert types["IMB_ALD_NUM"] == "int" and types["IMB_ALD_DTD"] == "date" and types["BEN_RNG_GEM"] == "int"
    assert types["MED_NCL_IDT"] == "string"  # a catalog column no file delivered: present, null
    assert curated.count() == 2 and curated.filter("MED_NCL_IDT IS NOT NULL").count() == 0
    assert sorted(r["IMB_ALD_DTF"] for r in curated.collect() if r["IMB_ALD_DTF"]) == [date(1600, 1, 1)]


def test_untypable_rows_are_dropped_first_and_a_shortfall_writes_the_pass_again(spark, settings, catalog,
                                                                                  monkeypatch):
    passes = []
    typed_file = curate._Run._typed_file

    def spy(self, t, f, strict):
        passes.append(strict)
        return typed_file(self, t, f, strict)

    monkeypatch.setattr(curate._Run, "_typed_file", spy)
    good = [f"{NIR_A};1;5;2020-01-15;1600-01-01;E11", f"{NIR_B};1;6;2021-02-01;;I10"]
    (result,) = Delivery(settings, catalog, "2024-03-01").table("IR_IMB_R", IMB_HEADER, good).curate(spark, "IR_IMB_R")
    assert passes == [True]  # clean: the parser dropped nothing, one pass
    assert (result.rows_read, result.rows_curated, result.rows_rejected) == (2, 2, 0)

    passes.clear()
    empty_key = good + [";1;8;2020-01-15;;E10"]  # typed fine by the parser: the strict pass finds and rejects it
    d = Delivery(settings, catalog, "2024-04-01").table("IR_IMB_R", IMB_HEADER, empty_key)
    (result,) = d.curate(spark, "IR_IMB_R")
    assert passes == [True]
    assert (result.rows_read, result.rows_curated, result.rows_rejected) == (3, 2, 1)
    assert by_name(result)["not_null"].failures == 1

    for delivery_id, extra, kind in (("2024-05-01", f"{NIR_A};1;AB;2020-01-15;;E10", "type"),
                                     ("2024-06-01", f"{NIR_B};1;7;2020-01-15", "malformed")):
        passes.clear()
        d = Delivery(settings, catalog, delivery_id).table("IR_IMB_R", IMB_HEADER, good + [extra])
        (result,) = d.curate(spark, "IR_IMB_R")
        assert passes == [True, False], kind  # the parser dropped a row: written again, flagging it
        assert (result.rows_read, result.rows_curated, result.rows_rejected) == (3, 2, 1), kind
        assert by_name(result)["type"].failures == 1 and by_name(result)["rows_reconciled"].passed
        curated = spark.read.parquet(Lake(settings.lake).curated("IR_IMB_R", delivery_id))
        assert sorted(r["IMB_ALD_NUM"] for r in curated.collect()) == [5, 6]  # the first pass left nothing behind


def test_only_a_file_with_a_quoted_newline_is_read_with_multiline():
    """multiLine makes a file one task: asked for by the archive's ``multiline`` flag only, in both modes."""
    fmt = Format()
    assert "multiLine" not in csv_options(fmt) and "multiLine" not in csv_options(fmt, drop_malformed=True)
    assert csv_options(fmt, multiline=True) == {**csv_options(fmt), "multiLine": "true"}
    strict = csv_options(fmt, drop_malformed=True, multiline=True)
    assert strict == {**csv_options(fmt, drop_malformed=True), "multiLine": "true"}
    assert csv_options(fmt)["quote"] == csv_options(fmt)["escape"] == fmt.quote == '"'


def test_tolerance_decides_the_severity_of_warn_rules(spark, settings, catalog):
    rows = [f"{NIR_A};1;{i};2020-01-15;;E11" for i in range(9)] + [f"{NIR_A};1;AB;2020-01-15;;E11"]
    d = Delivery(settings, catalog, "2024-03-01").table("IR_IMB_R", IMB_HEADER, rows)
    (strict,) = d.curate(spark, "IR_IMB_R")
    assert by_name(strict)["type"].failures == 1 and by_name(strict)["type"].severity == ERROR
    (lenient,) = d.curate(spark, "IR_IMB_R", settings=settings.with_(reject_tolerance=0.2))
    assert by_name(lenient)["type"].failures == 1 and by_name(lenient)["type"].severity == WARN
    assert "tolerance" not in by_name(lenient)["type"].details
    (at_tolerance,) = d.curate(spark, "IR_IMB_R", settings=settings.with_(reject_tolerance=0.1))
    assert by_name(at_tolerance)["type"].severity == WARN  # 1 row of 10 rejected: the share passes 10 % only beyond


def test_rows_reconciled_fails_when_rejects_lose_a_row(spark, settings, catalog, monkeypatch):
    """SPEC §5: nothing read is lost. rows_curated is the number of rows written, and a bad row that never reaches
    the rejects (here: the rejects pass made to lose it) fails rows_reconciled, an ERROR."""
    rejected_file = curate._Run._rejected_file

    def losing(self, t, f):
        df, flags = rejected_file(self, t, f)
        return df.limit(0), flags

    monkeypatch.setattr(curate._Run, "_rejected_file", losing)
    rows = [f"{NIR_A};1;5;2020-01-15;;E11", f"{NIR_B};1;6;2020-01-15;;E11", f"{NIR_A};1;AB;2020-01-15;;E11"]
    (result,) = Delivery(settings, catalog, "2024-03-01").table("IR_IMB_R", IMB_HEADER, rows).curate(spark, "IR_IMB_R")
    assert (result.rows_read, result.rows_curated, result.rows_rejected) == (3, 2, 0)
    assert spark.read.parquet(Lake(settings.lake).curated("IR_IMB_R", "2024-03-01")).count() == 2
    check = by_name(result)["rows_reconciled"]
    assert (check.passed, check.failures, check.severity) == (False, 1, ERROR)
    assert "3 read but 2 curated + 0 rejected (1 rows found bad while curating)" in check.details


def test_rows_reconciled_fails_when_spark_reads_fewer_rows_than_the_archive_counted(spark, settings, catalog):
    """A file Spark reads otherwise than as delivered (here a hidden name, which its listing skips; the manifest
    refuses such names) lost its rows unseen: 0 read = 0 curated + 0 rejected passed, the table accepted empty."""
    rows = [ben(NIR_A, 1), ben(NIR_B, 1)]
    d = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", BEN_HEADER, rows, file="_part-0001.csv")
    (result,) = d.curate(spark, "IR_BEN_R")
    check = by_name(result)["rows_reconciled"]
    assert (result.rows_read, check.passed, check.failures, check.severity) == (0, False, 2, ERROR)
    assert "the archive counted 2 rows in the files Spark read" in check.details


def test_a_table_split_in_files_is_read_and_rejected_file_by_file(spark, settings, catalog):
    """A table delivered in several files: every file is read, and the bad rows of the second file are rejected
    with that file named, so that rows read = curated + rejected."""
    d = Delivery(settings, catalog, "2024-03-01")
    d.table("IR_IMB_R", IMB_HEADER, [f"{NIR_A};1;{i};2020-01-15;;E11" for i in range(3)], file="part-0001.csv")
    d.table("IR_IMB_R", IMB_HEADER, [f"{NIR_B};1;7;2020-01-15;;E11", f"{NIR_B};1;XY;2020-01-15;;E11"],
            file="part-0002.csv")
    first, second = d.archived
    d.archived = [ArchivedTable(DeliveredTable("IR_IMB_R", first.delivered.files + second.delivered.files),
                                first.family, None, first.mode, first.files + second.files, [])]
    (result,) = d.curate(spark, "IR_IMB_R", settings=settings.with_(reject_tolerance=1.0))
    assert (result.rows_read, result.rows_curated, result.rows_rejected) == (5, 4, 1)
    assert by_name(result)["rows_reconciled"].passed and by_name(result)["type"].failures == 1
    lake = Lake(settings.lake)
    (reject,) = spark.read.parquet(lake.rejects("IR_IMB_R", "2024-03-01")).collect()
    assert (reject[REJECT_FILE], reject["IMB_ALD_NUM"]) == ("IR_IMB_R/part-0002.csv", "XY")
    assert spark.read.parquet(lake.curated("IR_IMB_R", "2024-03-01")).count() == 4


# --- range, domain, keys --------------------------------------------------------------------------------------
def test_range_and_domain_rules_and_twins(spark, settings, catalog):
    rows = [
        ben(NIR_A, 1),  # death 1600-01-01: the "unknown date" convention, fine
        ben(NIR_T, 1, death="1850-06-15"),  # range: before 1900
        ben(NIR_T, 2, death="2024-03-02"),  # range: after the delivery date; twins share NIR_T
        ben(NIR_B, 1, sex="3"),  # domain: sex code
        ben(NIR_B, 2, birth="1600"),  # unknown birth year: fine for range and domain
        ben(NIR_B, 3, ame="2023-05"),  # yearmonth as YYYY-MM
        ben(NIR_B, 4, birth="1880"),  # range (year before 1900) and domain (birth year before 1890)
    ]
    d = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", BEN_HEADER, rows)
    (result,) = d.curate(spark, "IR_BEN_R")
    checks = by_name(result)
    assert result.rows_rejected == 0
    assert checks["range"].failures == 3 and checks["range"].severity == WARN
    assert set(checks["range"].columns) >= {"BEN_DCD_DTE", "BEN_NAI_ANN"}
    assert {s["value"] for s in checks["range"].sample} >= {"1850-06-15", "2024-03-02"}
    assert checks["domain"].failures == 1 and "sex_code" in checks["domain"].details  # 1850: range only
    assert checks["primary_key"].passed and checks["primary_key"].failures == 0  # twins differ by BEN_RNG_GEM
    assert all(c.passed for c in result.checks if c.name not in ("range", "domain"))
    curated = spark.read.parquet(Lake(settings.lake).curated("IR_BEN_R", "2024-03-01"))
    assert dict(curated.dtypes)["BEN_DCD_AME"] == "date" and dict(curated.dtypes)["BEN_IDT_TOP"] == "boolean"
    assert {r["BEN_DCD_AME"] for r in curated.collect()} == {date(2023, 1, 1), date(2023, 5, 1)}


def test_an_exemption_may_end_after_the_delivery_but_not_start_after_it(spark, settings, catalog):
    rows = [f"{NIR_A};1;1;2020-01-15;2031-01-01;E11",  # an ALD granted until 2031: fine
            f"{NIR_A};1;2;2024-05-01;1600-01-01;E11",  # starts after the delivery: range
            f"{NIR_A};1;3;2020-01-15;1850-01-01;E11"]  # ends before 1900: range
    (result,) = Delivery(settings, catalog, "2024-03-01").table("IR_IMB_R", IMB_HEADER, rows).curate(spark, "IR_IMB_R")
    check = by_name(result)["range"]
    assert check.failures == 2 and check.details == "IMB_ALD_DTD: 1; IMB_ALD_DTF: 1"
    assert {s["value"] for s in check.sample} == {"2024-05-01", "1850-01-01"}


PRS_HEADER = [*domain.DCIR_KEYS, "BEN_NIR_PSA", "BEN_RNG_GEM", "EXE_SOI_DTD", "PRS_ACT_QTE", "PRS_ACT_NBR"]


def prs(order: int, quantity: str) -> str:
    keys = {"DCT_ORD_NUM": "1", "FLX_DIS_DTD": "2024-02-01", "FLX_EMT_NUM": "1", "FLX_EMT_ORD": "0",
            "FLX_EMT_TYP": "1", "FLX_TRT_DTD": "2024-01-20", "ORG_CLE_NUM": "01C", "PRS_ORD_NUM": str(order),
            "REM_TYP_AFF": "1"}
    return ";".join([*(keys[k] for k in domain.DCIR_KEYS), NIR_A, "1", "2024-01-10", quantity, quantity])


def test_a_regularisation_line_is_in_range_with_the_reference_schemas(spark, settings, reference_catalog):
    """SNDS.md: a regularisation repeats a DCIR line with a negative quantity. schema-snds bounds PRS_ACT_QTE and
    PRS_ACT_NBR to [0, 1000]; with SNDS_SCHEMAS on it, a regularisation is not out of range, and the mirror of
    the maximum still bounds it. The bounds themselves are in range."""
    rows = [prs(1, "2"), prs(2, "-2"), prs(3, "-1001"), prs(4, "1001"), prs(5, "1000"), prs(6, "-1000")]
    d = Delivery(settings, reference_catalog, "2024-03-01").table("ER_PRS_F", PRS_HEADER, rows)
    (result,) = d.curate(spark, "ER_PRS_F")
    check = by_name(result)["range"]
    assert result.rows_rejected == 0
    assert check.failures == 2 and sorted(check.details.split("; ")) == ["PRS_ACT_NBR: 2", "PRS_ACT_QTE: 2"]


def test_files_without_header_carry_the_columns_of_their_year(spark, settings, reference_catalog):
    """With ``format.header`` false a file's columns are the catalog's, in its order: for a PMSI year, those its
    files carry by the schema's history (a 2010 T_RIPaaR3AD has no SEJ_IDT), not every column of the family, which
    made every row of such a year a malformed line."""
    table = reference_catalog["T_RIPaaR3AD"]
    old, new = list(table.columns_in(2010)), list(table.columns_in(2012))
    assert "SEJ_IDT" in new and "SEJ_IDT" not in old

    def row(columns: list[str], ipp: str) -> str:
        values = {"ETA_NUM_EPMSI": "123456789", "ETA_NUM_TWO": "123456789", "IPP_IRR_CRY": ipp, "ORD_NUM": "1",
                  "SEJ_IDT": "S1", "ASS_DGN": "F200"}
        return ";".join(values.get(c, "") for c in columns)

    d = Delivery(settings, reference_catalog, "2024-03-01", Format(header=False))
    d.table("T_RIP10R3AD", old, [row(old, "IPP1"), row(old, "IPP2")]).table("T_RIP12R3AD", new, [row(new, "IPP3")])
    results = d.curate(spark, "T_RIPaaR3AD")
    assert [(r.rows_read, r.rows_curated, r.rows_rejected) for r in results] == [(2, 2, 0), (1, 1, 0)]
    curated = spark.read.parquet(Lake(settings.lake).curated("T_RIPaaR3AD", "2024-03-01")).collect()
    assert sorted((r["IPP_IRR_CRY"], r["ASS_DGN"], r["SEJ_IDT"], r[domain.YEAR_COLUMN]) for r in curated) == [
        ("IPP1", "F200", None, 2010), ("IPP2", "F200", None, 2010), ("IPP3", "F200", "S1", 2012)]


def test_a_rule_on_a_column_a_years_files_lack_is_not_said_checked_for_that_year(spark, settings, reference_catalog):
    """COH_NAI_RET and COH_SEX_RET exist from 2013 (the schema's history): their return-code rules were listed as
    checked, and passed, in a 2012 link table whose files carry neither. A 2012 table is told they are not in its
    files; one whose rules all read absent columns is not evaluated, with the reason."""
    header_13 = ["ETA_NUM", "RSA_NUM", "NIR_ANO_17", "NIR_RET", "COH_NAI_RET", "COH_SEX_RET"]
    header_12 = ["ETA_NUM", "RSA_NUM", "NIR_ANO_17", "NIR_RET"]
    d = Delivery(settings, reference_catalog, "2024-03-01").table("T_MCO12C", header_12, [f"E1;1;{NIR_A};0"])
    d.table("T_MCO13C", header_13, [f"E1;2;{NIR_A};0;0;2"])
    old, new = d.curate(spark, "T_MCOaaC")
    domain_12, domain_13 = by_name(old)["domain"], by_name(new)["domain"]
    assert domain_12.passed and domain_12.evaluated and "COH_NAI_RET" not in domain_12.columns, domain_12
    assert domain_12.details == "not checked: COH_NAI_RET, COH_SEX_RET not in the files of T_MCO12C", domain_12.details
    assert (domain_13.passed, domain_13.failures) == (False, 1) and "COH_SEX_RET" in domain_13.columns

    d = Delivery(settings, reference_catalog, "2024-04-01").table("T_MCO12C", ["ETA_NUM", "RSA_NUM"], ["E1;3"])
    d.table("T_MCO13C", header_13, [f"E1;4;{NIR_A};0;0;0"])
    old, new = d.curate(spark, "T_MCOaaC")
    assert not by_name(old)["domain"].evaluated and by_name(new)["domain"].passed
    assert by_name(old)["domain"].details.startswith("COH_NAI_RET, COH_SEX_RET, NIR_RET, NIR_ANO_17 not in the files"), \
        by_name(old)["domain"].details


def test_a_link_whose_columns_a_years_files_lack_is_not_said_checked_for_that_year(spark, settings, catalog):
    """A 2022 MCO link table delivered without NIR_ANO_17: its link to IR_BEN_R has no value to check in it, and
    reported "0 orphan row(s)" as though its rows had been checked; 2023's table, which carries the column, still
    finds its orphan."""
    state = CurrentState(spark, settings, catalog)
    d = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1)])
    d.table("T_MCO22C", ["ETA_NUM", "RSA_NUM", "NIR_RET"], ["2A0000001;1;0"])
    d.table("T_MCO23C", MCO_C_HEADER, [mco_c("2", NIR_A), mco_c("3", NIR_B)])
    d.curate(spark, "IR_BEN_R", state)
    old, new = d.curate(spark, "T_MCOaaC", state)
    [old_link] = [v for v in old.links if v.link.parent == "IR_BEN_R"]
    assert old_link.result is None
    assert old_link.why == f"{old_link.label}: not evaluated, the files of T_MCO22C carry no NIR_ANO_17", old_link.why
    assert "orphan" not in by_name(old)["foreign_key"].details, by_name(old)["foreign_key"].details
    [new_link] = [v for v in new.links if v.link.parent == "IR_BEN_R"]
    assert new_link.result.failures == 1 and by_name(new)["foreign_key"].failures == 1


def test_a_key_column_not_yet_in_use_is_not_required_of_that_years_files(spark, settings, reference_catalog):
    """schema-snds dates SEJ_IDT of T_RIPaaR3AD from 2011: a 2010 file has no such column, and its rows are curated
    (they went to rejects, every one of them) while the rest of the key is still required. Its primary key is not
    whole that year, so rows repeating what there is of it are not reported as duplicates; 2012's key is checked."""
    old_header = ["ETA_NUM_EPMSI", "ETA_NUM_TWO", "IPP_IRR_CRY", "ORD_NUM", "ASS_DGN"]
    old_rows = ["123456789;123456789;IPP1;1;F200", "123456789;123456789;IPP2;1;F201", "123456789;123456789;IPP3;;F202"]
    new_header = [f.name for f in reference_catalog["T_RIPaaR3AD"].fields if f.in_use(2012)]
    assert "SEJ_IDT" in new_header and "SEJ_IDT" not in [f.name for f in reference_catalog["T_RIPaaR3AD"].fields
                                                         if f.in_use(2010)]

    def row(ipp: str, ord_num: str, stay: str) -> str:
        values = {"ETA_NUM_EPMSI": "123456789", "ETA_NUM_TWO": "123456789", "IPP_IRR_CRY": ipp, "ORD_NUM": ord_num,
                  "SEJ_IDT": stay, "ASS_DGN": "F200"}
        return ";".join(values.get(c, "") for c in new_header)

    new_rows = [row("IPP1", "1", "S1"), row("IPP2", "1", "S1"), row("IPP3", "1", "")]
    d = Delivery(settings, reference_catalog, "2024-03-01").table("T_RIP10R3AD", old_header, old_rows)
    d.table("T_RIP12R3AD", new_header, new_rows)
    old, new = d.curate(spark, "T_RIPaaR3AD")

    assert (old.rows_read, old.rows_curated, old.rows_rejected) == (3, 2, 1)
    checks = by_name(old)
    assert (checks["not_null"].failures, checks["not_null"].columns) == (1, ["ETA_NUM_EPMSI", "ORD_NUM"])
    assert "SEJ_IDT not in files of 2010 by the schema's history" in checks["not_null"].details
    assert "missing" not in checks["not_null"].details
    assert not checks["primary_key"].evaluated and "SEJ_IDT not in files of 2010" in checks["primary_key"].details
    assert checks["rows_reconciled"].passed

    assert (new.rows_read, new.rows_curated, new.rows_rejected) == (3, 2, 1)
    checks = by_name(new)
    assert (checks["not_null"].failures, checks["not_null"].columns) == (1, ["ETA_NUM_EPMSI", "ORD_NUM", "SEJ_IDT"])
    assert "SEJ_IDT: 1 empty" in checks["not_null"].details
    assert checks["primary_key"].evaluated and checks["primary_key"].failures == 1
    [rejected] = spark.read.parquet(Lake(settings.lake).rejects("T_RIPaaR3AD", "2024-03-01")).where(
        F.col(REJECT_TABLE) == "T_RIP10R3AD").collect()
    assert rejected["IPP_IRR_CRY"] == "IPP3" and rejected[REJECT_REASON] == "not_null: ORD_NUM"


def test_a_link_to_a_parent_table_that_did_not_exist_that_year_is_not_evaluated(spark, settings, reference_catalog):
    """T_RIPaaFB begins in 2010 (schema-snds: every column created then): a 2009 RIM-P stay (T_RIP09C) can have no
    parent there, so its link to T_RIPaaFB is not evaluated for 2009 (it reported every row an orphan); 2010's is."""
    c_table, fb_table = reference_catalog["T_RIPaaC"], reference_catalog["T_RIPaaFB"]
    assert not fb_table.columns_in(2009) and fb_table.columns_in(2010)

    def rows(table, year: int, stays: list[str]) -> tuple[list[str], list[str]]:
        header = list(table.columns_in(year))
        values = [{"ETA_NUM_EPMSI": "123456789", "RIP_NUM": stay, "NIR_ANO_17": NIR_A} for stay in stays]
        return header, [";".join(v.get(c, "") for c in header) for v in values]

    d = Delivery(settings, reference_catalog, "2024-03-01")
    d.table("T_RIP10FB", *rows(fb_table, 2010, ["S1"]))
    d.table("T_RIP09C", *rows(c_table, 2009, ["S1", "S2"]))
    d.table("T_RIP10C", *rows(c_table, 2010, ["S1", "S2"]))
    state = CurrentState(spark, settings, reference_catalog)
    d.curate(spark, "T_RIPaaFB", state)
    old, new = d.curate(spark, "T_RIPaaC", state)
    assert old.rows_curated == new.rows_curated == 2
    [old_link] = [v for v in old.links if v.link.parent == "T_RIPaaFB"]
    assert old_link.result is None and "T_RIPaaFB's files of 2009 carry no ETA_NUM_EPMSI, RIP_NUM" in old_link.why
    assert by_name(old)["foreign_key"].passed
    [new_link] = [v for v in new.links if v.link.parent == "T_RIPaaFB"]
    assert new_link.result.failures == 1 and by_name(new)["foreign_key"].failures == 1


def test_range_bounds_are_inclusive_and_a_child_born_this_year_is_in_range(spark, settings, catalog):
    """SPEC §6: dates between 1900-01-01 and the delivery date, both included, years likewise: a death on the day
    of the delivery, or a child born in the delivery's year, is no range failure; a day or a year beyond is."""
    rows = [ben(NIR_A, 1, birth="2024", death="2024-03-01"),  # newborn; died on the delivery date
            ben(NIR_B, 1, birth="1900", death="1900-01-01"),  # the first plausible year and day
            ben(NIR_T, 1, birth="2025", death="2024-03-02"),  # a year and a day after: one failing row
            ben(NIR_T, 2, birth="1899", death="1899-12-31")]  # a year and a day before: one failing row
    (result,) = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", BEN_HEADER, rows).curate(spark, "IR_BEN_R")
    check = by_name(result)["range"]
    assert check.failures == 2 and sorted(check.details.split("; ")) == ["BEN_DCD_DTE: 2", "BEN_NAI_ANN: 2"]
    assert {s["value"] for s in check.sample} == {"2025", "1899", "2024-03-02", "1899-12-31"}


def test_a_dcir_flow_released_before_the_years_the_base_keeps_is_out_of_range(spark, settings, catalog):
    """SNDS.md: the base keeps 19 years plus the current one. In a delivery of 2024 a flow released in 2005 is one
    it holds; one of 2004 is not (range, WARN), whatever its care dates, where 1900 was the only bound."""
    header = [*domain.DCIR_KEYS, "BEN_NIR_PSA", "BEN_RNG_GEM", "EXE_SOI_DTD"]

    def line(order: int, flow: str, care: str) -> str:
        return ";".join(prs(order, "1").split(";")[:len(domain.DCIR_KEYS) + 2] + [care]).replace("2024-02-01", flow)

    rows = [line(1, "2005-01-01", "2004-12-20"), line(2, "2004-12-01", "2004-11-20"),
            line(3, "2024-02-01", "2004-11-20")]  # the care of a line is not bounded by the base's years
    (result,) = Delivery(settings, catalog, "2024-03-01").table("ER_PRS_F", header, rows).curate(spark, "ER_PRS_F")
    check = by_name(result)["range"]
    assert (check.passed, check.failures, check.severity, check.details) == (False, 1, WARN, "FLX_DIS_DTD: 1")
    assert [s["value"] for s in check.sample] == ["2004-12-01"]


def test_care_dates_against_the_flow_and_the_unknown_end(spark, settings, catalog):
    """SNDS rules of ER_PRS_F: care starts on or before the release of its flow (FLX_DIS_DTD), and ends on or after
    it starts; an end of 1600-01-01 is the unknown-date convention (SNDS.md), not an end before the start."""
    header = [*domain.DCIR_KEYS, "BEN_NIR_PSA", "BEN_RNG_GEM", "EXE_SOI_DTD", "EXE_SOI_DTF"]

    def line(order: int, start: str, end: str) -> str:  # FLX_DIS_DTD is 2024-02-01
        return ";".join(prs(order, "1").split(";")[:len(domain.DCIR_KEYS) + 2] + [start, end])

    rows = [line(1, "2024-02-01", "1600-01-01"),  # care on its flow's release day, end unknown: fine
            line(2, "1600-01-01", "1600-01-01"),  # both unknown: fine
            line(3, "2024-01-10", "2024-01-10"),  # one day of care: fine
            line(4, "2024-02-02", "2024-02-02"),  # care after its flow: care_before_flow
            line(5, "2024-01-10", "2024-01-09"),  # ends before it starts: care_period
            line(6, "2024-01-01", "2024-01-01").replace("2024-02-01", "2024-01-02")]  # a flow of the 2nd: monthly_flow
    (result,) = Delivery(settings, catalog, "2024-03-01").table("ER_PRS_F", header, rows).curate(spark, "ER_PRS_F")
    check = by_name(result)["domain"]
    assert result.rows_rejected == 0 and by_name(result)["range"].passed
    assert check.failures == 3
    assert sorted(check.details.split("; ")) == ["care_before_flow:EXE_SOI_DTD: 1", "care_period:EXE_SOI_DTF: 1",
                                                 "monthly_flow:FLX_DIS_DTD: 1"]


def test_a_person_with_a_lifelong_nir_is_named_by_it(spark, settings, catalog):
    """SNDS.md: BEN_IDT_ANO equals BEN_NIR_ANO when BEN_IDT_TOP = 1, BEN_NIR_PSA || BEN_RNG_GEM otherwise. Cohorts
    take BEN_IDT_ANO for the person, so an identity breaking this would merge or split persons without a word; the
    rules say nothing of a row whose lifelong NIR is not delivered."""
    header = ["BEN_NIR_PSA", "BEN_RNG_GEM", "BEN_IDT_ANO", "BEN_NIR_ANO", "BEN_IDT_TOP"]
    rows = [f"{NIR_A};1;LIFELONG_A;LIFELONG_A;1",  # named by the lifelong NIR: fine
            f"{NIR_A};2;LIFELONG_X;LIFELONG_B;1",  # another name: lifelong_identity
            f"{NIR_B};1;{NIR_B}1;;0",  # no lifelong NIR, named by itself: fine
            f"{NIR_B};2;{NIR_B}1;LIFELONG_C;0",  # no lifelong NIR, named by another identity: own_identity
            f"{NIR_B};3;{NIR_B}3;;1"]  # TOP 1 and no lifelong NIR delivered: not evaluated
    (result,) = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", header, rows).curate(spark, "IR_BEN_R")
    check = by_name(result)["domain"]
    assert result.rows_rejected == 0
    assert (check.passed, check.failures, check.severity) == (False, 2, WARN), check
    assert sorted(check.details.split("; ")) == ["lifelong_identity:BEN_IDT_ANO: 1", "own_identity:BEN_IDT_ANO: 1"]
    assert sorted(check.sample, key=lambda s: s["BEN_RNG_GEM"]) == [
        {"column": "BEN_IDT_ANO", "value": "LIFELONG_X", "BEN_NIR_ANO": "LIFELONG_B", "BEN_IDT_TOP": True,
         "BEN_NIR_PSA": NIR_A, "BEN_RNG_GEM": 2},
        {"column": "BEN_IDT_ANO", "value": f"{NIR_B}1", "BEN_IDT_TOP": False, "BEN_NIR_PSA": NIR_B,
         "BEN_RNG_GEM": 2}], check.sample


def test_an_integer_column_is_checked_against_its_listed_values_as_its_text_would_be(spark):
    """Values listed as text ('1', '01', 'x') on an integer column: only canonical integer text can match."""
    integer = ColumnPlan("X", None, T.IntegerType(), T.IntegerType())
    values = ["1", "2", "01", "x", "²", "-0"]
    df = spark.createDataFrame([(1,), (2,), (3,), (-1,), (None,)], "X int")
    as_numbers = rules._not_in(integer, "X", values)
    as_text = rules._not_in(None, "X", values)
    got = df.selectExpr("X", f"coalesce({as_numbers}, false) AS n", f"coalesce({as_text}, false) AS t").collect()
    assert "CAST" not in as_numbers and "CAST" in as_text
    assert [(r["X"], r["n"]) for r in got] == [(r["X"], r["t"]) for r in got] == [
        (1, False), (2, False), (3, True), (-1, True), (None, False)]
    assert rules._not_in(integer, "X", ["01", "x", "²"]) == "`X` IS NOT NULL"  # nothing an integer can equal


def test_bare_nomenclature_references_are_checked_against_what_the_column_can_hold(spark, reference_catalog,
                                                                                  reference_nomenclatures):
    """schema-snds's DCIR tables name a nomenclature without its code column. DA_PRA_R.EXC_EXC_NAT is checked on
    IR_EPS_V's EXC_EXC_NAT (the column IR_EPS_V marks as its code holds labels); IR_TAU_V's rates (65.00, 37.50)
    are an integer ARO_THE_TAU's 65 and a number ARO_REM_TAU's 37.5; IR_CAI_V's 6-character ORG_BSE_NUM cannot
    be the 3 characters of NS_PRS_F's CAI_AFF_COD, which is left unchecked with a note: each gave a valid value a
    nomenclature failure."""
    def plan(family: str, columns: list[str]):
        table = reference_catalog[family]
        plans = [p for p in curate.family_columns(table, Format(), []) if p.name in columns]
        return plans, rules.nomenclature_plan(plans, set(columns), str(reference_nomenclatures))

    def failing(family: str, values: dict) -> set[str]:
        plans, nomenclatures = plan(family, list(values))
        df = spark.createDataFrame([tuple(values.values())], ", ".join(
            f"{p.name} {p.dtype.simpleString()}" for p in sorted(plans, key=lambda p: list(values).index(p.name))))
        row = df.selectExpr(*[f"{r.fail} AS `{r.column}`" for r in nomenclatures.rules]).first()
        return {r.column for r in nomenclatures.rules if row[r.column]}

    assert failing("DA_PRA_R", {"EXC_EXC_NAT": "1"}) == set()
    assert failing("DA_PRA_R", {"EXC_EXC_NAT": "77"}) == {"EXC_EXC_NAT"}
    assert reference_catalog["ER_ARO_F"].field("ARO_THE_TAU").type == "integer"
    assert failing("ER_ARO_F", {"ARO_THE_TAU": 65, "ARO_REM_TAU": 37.5}) == set()
    assert failing("ER_ARO_F", {"ARO_THE_TAU": 66, "ARO_REM_TAU": 37.0}) == {"ARO_THE_TAU", "ARO_REM_TAU"}
    _, prs = plan("NS_PRS_F", ["CAI_AFF_COD"])
    assert prs.rules == [] and prs.large == []
    assert prs.notes == ["CAI_AFF_COD: no at most 3-character code in IR_CAI_V.csv (ORG_BSE_NUM)"]
    # An amount or a count whose schema names a nomenclature (ER_CAM_F's CAM_RED_MNT: IR_FOR_V's codes 0-9; NS_DTR_F's
    # kilometres TRS_ACT_QSN: IR_MTR_V's reasons) failed on every real value: a measure is no code.
    assert failing("ER_CAM_F", {"CAM_RED_MNT": 12.5}) == set()
    assert failing("NS_DTR_F", {"TRS_ACT_QSN": 142, "TRS_TRS_MTF": 142}) == {"TRS_TRS_MTF"}


@pytest.mark.parametrize("observed", [True, False], ids=["hashes-observed-by-the-write", "aggregated-after-the-write"])
def test_duplicate_keys_are_counted_beyond_the_first(spark, settings, catalog, monkeypatch, observed):
    """The same verdict whether a small table's key hashes come from its write pass or a table's are aggregated
    afterwards; a clean small table runs no duplicate query at all."""
    if not observed:
        monkeypatch.setattr(keys, "OBSERVED_HASH_ROWS", -1)
    calls = []
    duplicates = keys.duplicates
    monkeypatch.setattr(keys, "duplicates", lambda *a, **k: calls.append(k.get("seen_twice")) or duplicates(*a, **k))
    rows = [ben(NIR_A, 1)] * 3 + [ben(NIR_B, 1)] * 2 + [ben(NIR_T, 1), ben(NIR_T, 2)]
    d = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", BEN_HEADER, rows)
    (result,) = d.curate(spark, "IR_BEN_R")
    pk = by_name(result)["primary_key"]
    assert not pk.passed and pk.failures == 3 and pk.severity == ERROR
    assert pk.columns == ["BEN_NIR_PSA", "BEN_RNG_GEM"]
    assert sorted((s["BEN_NIR_PSA"], s["rows"]) for s in pk.sample) == [(NIR_A, 3), (NIR_B, 2)]
    assert (len(calls[0]) == 2) if observed else (calls == [None])  # the two hashes seen twice, found in the driver

    mco = Delivery(settings, catalog, "2024-04-01")  # the same stay in two years is not a duplicate; twice in one is
    mco.table("T_MCO22B", MCO_B_HEADER, ["2A0000001;1;I10;3;2022", "2A0000001;2;I11;1;2022"])
    mco.table("T_MCO23B", MCO_B_HEADER, ["2A0000001;1;I10;3;2023", "2A0000001;2;I11;1;2023", "2A0000001;2;I11;1;2023"])
    verdicts = {r.delivered_name: by_name(r)["primary_key"] for r in mco.curate(spark, "T_MCOaaB")}
    assert verdicts["T_MCO22B"].passed and verdicts["T_MCO23B"].failures == 1
    assert verdicts["T_MCO23B"].sample == [{"ETA_NUM": "2A0000001", "RSA_NUM": "2", "rows": 2}]


def test_hashes_in_the_driver_find_repeats_and_absentees():
    seen = np.array([5, -3, 7, 5, 2**62, -3, 5], dtype=np.int64)
    assert keys.repeated(seen) == [-3, 5] and keys.repeated(np.array([], dtype=np.int64)) == []
    theirs = np.unique(np.array([7, -3, 2**62], dtype=np.int64))
    assert keys.missing(seen, theirs) == 3  # the three 5s
    assert keys.missing(np.array([2**63 - 1, -(2**63)], dtype=np.int64), theirs) == 2  # beyond both ends
    assert keys.missing(seen, np.array([], dtype=np.int64)) == len(seen) and keys.missing(theirs[:0], theirs) == 0


def test_observed_hash_lists_reach_the_driver_as_they_were_collected(spark):
    df = spark.createDataFrame([(h,) for h in [2**63 - 1, -(2**63), 0, -5, 5, 5]], "h bigint")
    observation = Observation("hash_lists")
    metrics = [F.count(F.lit(1)).alias("rows"), F.count_if(F.col("h") > 10).alias("big"),
               F.max(F.when(F.col("h") == 1, F.col("h"))).alias("none"),
               keys.observed_hashes(F.col("h"), F.col("h") != 0).alias("_L_KEPT"),
               keys.observed_hashes(F.col("h"), F.lit(False)).alias("_L_NONE")]
    df.observe(observation, *metrics).collect()
    got, lists = keys.read_observation(observation, "_L_")
    assert got == {"rows": 6, "big": 1, "none": None}
    assert sorted(lists) == ["_L_KEPT", "_L_NONE"] and lists["_L_NONE"].dtype == np.int64 and not len(lists["_L_NONE"])
    assert sorted(lists["_L_KEPT"].tolist()) == sorted([2**63 - 1, -(2**63), -5, 5, 5])
    assert lists["_L_KEPT"].dtype == np.int64

    class Connect:  # an observation without PySpark's JVM handle (Spark Connect): read through ``get``
        get = {"rows": 6, "_L_KEPT": [5, -5], "_L_NONE": []}

    got, lists = keys.read_observation(Connect(), "_L_")
    assert got == {"rows": 6} and lists["_L_KEPT"].tolist() == [5, -5] and lists["_L_NONE"].dtype == np.int64


def test_a_parent_shares_its_key_hashes_with_its_children(spark, settings, catalog, monkeypatch):
    """IR_BEN_R's duplicate check and IR_IMB_R's foreign-key check count the same hashes: built once, when the
    tables are too large to observe their hashes during the write."""
    monkeypatch.setattr(keys, "OBSERVED_HASH_ROWS", -1)
    d = Delivery(settings, catalog, "2024-03-01")
    d.table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1)] * 3 + [ben(NIR_T, 1), ben(NIR_T, 2)])
    d.table("IR_IMB_R", IMB_HEADER, [f"{NIR_A};1;5;2020-01-15;;E11", f"{NIR_T};2;5;2020-01-15;;E11",
                                     f"{NIR_B};1;5;2020-01-15;;E11"])
    state = CurrentState(spark, settings, catalog)
    (ben_result,) = d.curate(spark, "IR_BEN_R", state)
    pk = by_name(ben_result)["primary_key"]
    assert pk.failures == 2 and [(s["BEN_NIR_PSA"], s["BEN_RNG_GEM"], s["rows"]) for s in pk.sample] == [(NIR_A, 1, 3)]
    shared = [frame for (family, _), frame in state._cache.items() if family == "IR_BEN_R"]
    assert len(shared) == 1 and shared[0].is_cached

    (imb,) = d.curate(spark, "IR_IMB_R", state)
    fk = by_name(imb)["foreign_key"]
    assert fk.failures == 1 and [(s["BEN_NIR_PSA"], s["BEN_RNG_GEM"]) for s in fk.sample] == [(NIR_B, 1)]
    after = [frame for (family, _), frame in state._cache.items() if family == "IR_BEN_R"]
    assert len(after) == 1 and after[0] is shared[0]  # the child found the parent's hashes: no rebuild
    state.close()
    assert not shared[0].is_cached


def test_a_small_parent_hands_its_observed_key_hashes_to_its_children(spark, settings, catalog, monkeypatch):
    """IR_BEN_R observed its key hashes during its write: they are exactly the hashes of its written keys, and
    IR_IMB_R's link to that key is checked against them without a query fetching them."""
    fetched = []
    distinct = keys.distinct_hashes
    monkeypatch.setattr(keys, "distinct_hashes", lambda hashes: fetched.append(hashes) or distinct(hashes))
    d = Delivery(settings, catalog, "2024-03-01")
    d.table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1)] * 2 + [ben(NIR_T, 1), ben(NIR_T, 2)])
    d.table("IR_IMB_R", IMB_HEADER, [f"{NIR_A};1;5;2020-01-15;;E11", f"{NIR_T};2;5;2020-01-15;;E11",
                                     f"{NIR_B};1;5;2020-01-15;;E11"])
    state = CurrentState(spark, settings, catalog)
    d.curate(spark, "IR_BEN_R", state)
    (shared,) = [hashes for (family, _), hashes in state._hashes.items() if family == "IR_BEN_R"]
    written = spark.read.parquet(Lake(settings.lake).curated("IR_BEN_R", "2024-03-01"))
    link = domain.Link("IR_IMB_R", "IR_BEN_R", ("BEN_NIR_PSA", "BEN_RNG_GEM"))
    assert shared.tolist() == distinct(keys.link_hashes(written, link, (False, False), False)).tolist()
    assert len(shared) == 3

    (imb,) = d.curate(spark, "IR_IMB_R", state)
    fk = by_name(imb)["foreign_key"]
    assert fk.failures == 1 and [(s["BEN_NIR_PSA"], s["BEN_RNG_GEM"]) for s in fk.sample] == [(NIR_B, 1)]
    assert fetched == []
    state.close()


def test_a_small_table_gets_the_same_duplicate_verdict_without_a_shuffle(spark):
    """The single-partition path of the duplicate check counts exactly what the shuffled path counts."""
    rows = [(f"N{i:016d}", 1) for i in range(45, 60)] + [("N0000000000000001", 1)] * 2 + [("N0000000000000002", 2)] * 3
    table = spark.createDataFrame(rows, "BEN_NIR_PSA string, BEN_RNG_GEM int")
    key = ["BEN_NIR_PSA", "BEN_RNG_GEM"]

    def verdict(**kwargs):
        return {y: (r.failures, sorted(map(str, r.sample))) for y, r in keys.duplicates(table, key, False, **kwargs).items()}

    assert verdict() == verdict(rows=len(rows)) == {None: (3, sorted(map(str, [
        {"BEN_NIR_PSA": "N0000000000000001", "BEN_RNG_GEM": 1, "rows": 2},
        {"BEN_NIR_PSA": "N0000000000000002", "BEN_RNG_GEM": 2, "rows": 3}])))}


def test_sorted_key_hashes_are_counted_as_they_stream(spark):
    """Key hashes cached partitioned and sorted for the children's foreign-key checks are counted by a sort
    aggregation (no hash table of every key), and the repeated one is found."""
    rows = [(f"N{i:016d}", 1) for i in range(40)] + [("N0000000000000001", 1)] * 2
    table = spark.createDataFrame(rows, "BEN_NIR_PSA string, BEN_RNG_GEM int")
    key = ("BEN_NIR_PSA", "BEN_RNG_GEM")
    prepared = keys.parent_hashes(table, domain.Link("ER_PRS_F", "IR_BEN_R", key), (False, False), False).persist()
    twice = keys.repeated_hashes(prepared)
    repeated = table.where("BEN_NIR_PSA = 'N0000000000000001'").select(F.xxhash64(*key).alias("_H")).distinct()
    assert [r["_H"] for r in twice.collect()] == [r["_H"] for r in repeated.collect()]
    plan = twice._jdf.queryExecution().executedPlan().toString()
    final = plan.split("\n+- == Initial Plan ==")[0]  # the adaptive plan as it ran, not as first planned
    assert "SortAggregate" in final and "HashAggregate" not in final, plan
    assert keys.duplicates(table, list(key), False, prepared)[None].failures == 2
    prepared.unpersist()


# --- foreign keys ---------------------------------------------------------------------------------------------
MCO_C_HEADER = ["ETA_NUM", "RSA_NUM", "NIR_ANO_17", "ENT_DAT", "EXE_SOI_DTD", "NIR_RET", "NAI_RET", "HOS_NN_MAM"]
MCO_B_HEADER = ["ETA_NUM", "RSA_NUM", "DGN_PAL", "SEJ_NBJ", "SOR_ANN"]


def mco_c(rsa: str, nir: str, ret: str = "0") -> str:
    return ";".join(["2A0000001", rsa, nir, "15012023", "15JAN2023:00:00:00", ret, "0", "0"])


@pytest.mark.parametrize("strategy", ["observed", "probed", "anti-joined"])
def test_a_pmsi_year_whose_parent_year_is_nowhere_is_not_evaluated(spark, settings, catalog, monkeypatch, strategy):
    """A year table's link to the same year of its parent is not evaluated when that year's parent table is neither
    in the delivery nor in the state, as when the parent family is absent whole (SPEC §6): T_MCO21B's stay was an
    orphan when T_MCO23C came with it, not evaluated without it. Years the parent holds are checked as before."""
    if strategy != "observed":
        monkeypatch.setattr(keys, "OBSERVED_HASH_ROWS", -1)
    if strategy == "anti-joined":
        monkeypatch.setattr(keys, "PROBED_PARENT_ROWS", -1)
    d = Delivery(settings, catalog, "2024-03-01")
    d.table("T_MCO23C", MCO_C_HEADER, [mco_c("1", NIR_A)])
    d.table("T_MCO23B", MCO_B_HEADER, ["2A0000001;1;I10;3;2023", "2A0000001;9;I12;2;2023"])
    d.table("T_MCO21B", MCO_B_HEADER, ["2A0000001;1;I10;3;2021"])
    state = CurrentState(spark, settings, catalog)
    mco_c_results = d.curate(spark, "T_MCOaaC", state)
    fk = {r.year: by_name(r)["foreign_key"] for r in d.curate(spark, "T_MCOaaB", state)}
    assert fk[2023].evaluated and fk[2023].failures == 1  # stay 9 has no T_MCO23C row
    assert not fk[2021].evaluated and fk[2021].passed and fk[2021].failures == 0, fk[2021]
    assert ("T_MCOaaC(ETA_NUM, RSA_NUM): not evaluated, T_MCOaaC of 2021 is neither in this delivery nor in the "
            "current state") in fk[2021].details
    assert check_deferred_links(spark, settings, catalog, d.manifest, mco_c_results, state, ["T_MCOaaC", "T_MCOaaB"])
    assert by_name(mco_c_results[0])["foreign_key"].passed

    d.accept()  # a later delivery's T_MCO22B meets a state holding 2023 only; its T_MCO23B is checked against it
    later = Delivery(settings, catalog, "2024-04-01")
    later.table("T_MCO22B", MCO_B_HEADER, ["2A0000001;5;I10;3;2022"])
    later.table("T_MCO23B", MCO_B_HEADER, ["2A0000001;7;I10;3;2023"], mode="incremental")
    fk = {r.year: by_name(r)["foreign_key"] for r in later.curate(spark, "T_MCOaaB", state)}
    assert not fk[2022].evaluated and "T_MCOaaC of 2022 is neither in this delivery nor" in fk[2022].details
    assert fk[2023].evaluated and fk[2023].failures == 1 and "the current state of T_MCOaaC" in fk[2023].details
    state.close()


@pytest.mark.parametrize("strategy", ["observed", "probed", "anti-joined"])
def test_foreign_keys_against_the_delivery_the_state_or_nothing(spark, settings, catalog, monkeypatch, strategy):
    """The same verdicts whether a small child observes its link hashes during its write (compared with a small
    parent's in the driver), a larger child probes a small parent during its write, or a large parent is
    anti-joined after it; a link without orphans costs no query of its own, but for the anti-join."""
    probed = strategy != "anti-joined"
    if strategy == "probed":
        monkeypatch.setattr(keys, "OBSERVED_HASH_ROWS", -1)
    if not probed:
        monkeypatch.setattr(keys, "PROBED_PARENT_ROWS", -1)
    anti_joins = []
    orphans = keys.orphans
    monkeypatch.setattr(keys, "orphans", lambda *a, **k: anti_joins.append(a[2].child) or orphans(*a, **k))
    probes = []
    probe = keys.probe
    monkeypatch.setattr(keys, "probe", lambda *a, **k: probes.append(a[2].child) or probe(*a, **k))
    d = Delivery(settings, catalog, "2024-03-01")
    d.table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1), ben(NIR_T, 1), ben(NIR_T, 2)])
    d.table("IR_IMB_R", IMB_HEADER, [f"{NIR_A};1;5;2020-01-15;;E11", f"{NIR_T};2;5;2020-01-15;;E11",
                                     f"{NIR_A};2;5;2020-01-15;;E11", f"{NIR_B};1;5;2020-01-15;;E11"])
    d.table("T_MCO23C", MCO_C_HEADER, [mco_c("1", NIR_A), mco_c("2", NIR_T), mco_c("3", PLACEHOLDER, "1"),
                                       mco_c("4", "XXXXXXXXXXXXXXXXS", "1"), mco_c("5", NIR_B)])
    d.table("T_MCO23B", MCO_B_HEADER, ["2A0000001;1;I10;3;2023", "2A0000001;2;I11;1;2023",
                                       "2A0000001;9;I12;2;2023"])
    state = CurrentState(spark, settings, catalog)
    (ben_result,) = d.curate(spark, "IR_BEN_R", state)
    assert by_name(ben_result)["primary_key"].passed  # twins: one BEN_NIR_PSA, two ranks

    (imb,) = d.curate(spark, "IR_IMB_R", state)
    fk = by_name(imb)["foreign_key"]
    assert fk.evaluated and fk.failures == 2 and fk.severity == WARN  # (NIR_A, 2) and (NIR_B, 1) are unknown
    assert fk.columns == ["BEN_NIR_PSA", "BEN_RNG_GEM"]
    assert sorted((s["BEN_NIR_PSA"], s["BEN_RNG_GEM"]) for s in fk.sample) == [(NIR_A, 2), (NIR_B, 1)]

    mco_c_results = d.curate(spark, "T_MCOaaC", state)
    fk = by_name(mco_c_results[0])["foreign_key"]
    # The link to T_MCOaaB of this delivery waits for B (the cycle B <-> C: C is curated first); the NIR link is
    # checked, and placeholders are not failures, only NIR_B is unknown.
    assert fk.evaluated and fk.failures == 1
    assert "T_MCOaaB(ETA_NUM, RSA_NUM): not evaluated, waits for T_MCOaaB" in fk.details
    assert [v.label for v in mco_c_results[0].pending] == ["T_MCOaaB(ETA_NUM, RSA_NUM)"]
    assert fk.sample == [{"link": "IR_BEN_R(BEN_NIR_PSA)", "NIR_ANO_17": NIR_B}]
    assert by_name(mco_c_results[0])["domain"].failures == 0  # return codes 0/1 and 17-character NIRs

    (mco_b,) = d.curate(spark, "T_MCOaaB", state)
    fk = by_name(mco_b)["foreign_key"]
    assert fk.evaluated and fk.failures == 1  # stay 9 has no T_MCO23C row; T_MCOaaE is absent
    assert "T_MCOaaE" in fk.details and "not evaluated" in fk.details

    # B curated, C's pending link is checked against it: stays 3, 4 and 5 have no T_MCO23B row. Stay 5 (NIR_B)
    # breaks both links: three failing rows, not four (SPEC §6 counts rows).
    assert check_deferred_links(spark, settings, catalog, d.manifest, mco_c_results, state, ["T_MCOaaC", "T_MCOaaB"])
    fk = by_name(mco_c_results[0])["foreign_key"]
    assert fk.evaluated and fk.failures == 3 and not mco_c_results[0].pending
    assert fk.details.startswith("3 row(s) break at least one link; "), fk.details
    assert "T_MCOaaB(ETA_NUM, RSA_NUM): 3 orphan row(s), checked against T_MCOaaB of this delivery" in fk.details
    assert "IR_BEN_R(BEN_NIR_PSA): 1 orphan row(s)" in fk.details
    fragment = load_fragment(settings, "2024-03-01", "T_MCO23C", "curated")
    assert next(c for c in fragment["checks"] if c["name"] == "foreign_key")["failures"] == 3

    alone = Delivery(settings, catalog, "2024-04-01").table("IR_IMB_R", IMB_HEADER, [f"{NIR_A};1;5;2020-01-15;;E11"])
    (no_parent,) = alone.curate(spark, "IR_IMB_R", state)
    fk = by_name(no_parent)["foreign_key"]
    assert not fk.evaluated and fk.passed and "neither in this delivery nor in the current state" in fk.details

    d.accept()  # now IR_BEN_R of 2024-03-01 is the current state: the next delivery is checked against it
    anti_joins.clear()
    (from_state,) = alone.curate(spark, "IR_IMB_R", state)
    fk = by_name(from_state)["foreign_key"]
    assert fk.evaluated and fk.passed and "current state of IR_BEN_R" in fk.details
    assert anti_joins == ([] if probed else ["IR_IMB_R"])
    assert (set(probes) == {"IR_IMB_R", "T_MCOaaC", "T_MCOaaB"}) if strategy == "probed" else probes == []


@pytest.mark.parametrize("observed", [True, False], ids=["hashes-observed-by-the-write", "aggregated-after-the-write"])
def test_a_parent_delivered_full_replaces_its_state_and_incremental_adds_to_it(spark, settings, catalog, monkeypatch,
                                                                             observed):
    """SPEC §2: a referential delivered without a mode is full: its children's identities are checked against it
    alone (a person only in the replaced delivery is an orphan); delivered incremental, against it and the state
    it adds to (a person of the earlier delivery is none), however its key hashes reach the children."""
    if not observed:
        monkeypatch.setattr(keys, "OBSERVED_HASH_ROWS", -1)
    imb = [f"{NIR_A};1;5;2020-01-15;;E11", f"{NIR_B};1;5;2020-01-15;;E11"]
    state = CurrentState(spark, settings, catalog)
    d1 = Delivery(settings, catalog, "2024-01-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1), ben(NIR_B, 1)])
    d1.curate(spark, "IR_BEN_R", state)
    d1.accept()
    full = Delivery(settings, catalog, "2024-02-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1)])
    full.table("IR_IMB_R", IMB_HEADER, imb)
    full.curate(spark, "IR_BEN_R", state)
    (child,) = full.curate(spark, "IR_IMB_R", state)
    fk = by_name(child)["foreign_key"]
    assert fk.failures == 1 and [s["BEN_NIR_PSA"] for s in fk.sample] == [NIR_B]
    assert "IR_BEN_R of this delivery and the current state" in fk.details

    added = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_B, 1)], mode="incremental")
    added.table("IR_IMB_R", IMB_HEADER, imb)
    added.curate(spark, "IR_BEN_R", state)
    (child,) = added.curate(spark, "IR_IMB_R", state)
    assert by_name(child)["foreign_key"].evaluated and by_name(child)["foreign_key"].passed  # NIR_A from 2024-01-01
    state.close()


def test_a_delivery_received_after_a_later_full_parent_is_checked_against_that_parent_and_says_so(
        spark, settings, catalog):
    """Deliveries received out of order: the state once an older delivery is accepted keeps the later full
    IR_BEN_R, not the older one's, so an identity only in the older delivery's IR_BEN_R is an orphan of the state;
    the details say whose rows the link was checked against, not "of this delivery"."""
    state = CurrentState(spark, settings, catalog)
    later = Delivery(settings, catalog, "2024-05-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1)])
    later.curate(spark, "IR_BEN_R", state)
    later.accept()
    older = Delivery(settings, catalog, "2024-04-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1), ben(NIR_B, 1)])
    older.table("IR_IMB_R", IMB_HEADER, [f"{NIR_A};1;5;2020-01-15;;E11", f"{NIR_B};1;5;2020-01-15;;E11"])
    older.curate(spark, "IR_BEN_R", state)
    (child,) = older.curate(spark, "IR_IMB_R", state)
    fk = by_name(child)["foreign_key"]
    assert fk.failures == 1 and [s["BEN_NIR_PSA"] for s in fk.sample] == [NIR_B]
    assert ("checked against the current state of IR_BEN_R: IR_BEN_R of this delivery is replaced by the later full "
            "delivery 2024-05-01, received before it") in fk.details
    assert "of this delivery and the current state" not in fk.details
    state.close()


def test_a_full_delivery_reports_the_rows_of_the_state_it_leaves_without_their_parent(spark, settings, catalog):
    """A full IR_BEN_R without an identity of the state leaves the ALD and stay rows of earlier deliveries that point
    to it without their parent: reported on IR_BEN_R (WARN), once the run has curated the archive, where an
    identity that moved is not lost; the children's rows of the delivery itself are their own foreign_key's."""
    state = CurrentState(spark, settings, catalog)
    d1 = Delivery(settings, catalog, "2024-01-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1), ben(NIR_B, 1),
                                                                                    ben(NIR_T, 1), ben(NIR_T, 2)])
    d1.table("IR_IMB_R", IMB_HEADER, [f"{NIR_B};1;5;2020-01-15;;E11", f"{NIR_T};2;5;2020-01-15;;E11",
                                      f"{NIR_A};1;5;2020-01-15;;E11"], mode="incremental")
    d1.table("T_MCO23C", MCO_C_HEADER, [mco_c("1", NIR_A), mco_c("2", NIR_B), mco_c("3", PLACEHOLDER, "1")])
    (first,) = d1.curate(spark, "IR_BEN_R", state)
    check = by_name(first)["orphaned_children"]
    assert check.passed and check.evaluated and not first.orphans_pending and "replaces nothing" in check.details
    (leaf,) = d1.curate(spark, "IR_IMB_R", state)
    assert by_name(leaf)["orphaned_children"].details == "delivered incremental: it removes no row of the current state"
    d1.curate(spark, "T_MCOaaC", state)
    d1.accept()

    # B leaves IR_BEN_R; T's rank 2 moves to the archive; the delivery brings an ALD row of B of its own.
    d2 = Delivery(settings, catalog, "2024-02-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1), ben(NIR_T, 1)])
    d2.table("IR_BEN_R_ARC", BEN_HEADER, [ben(NIR_T, 2)])
    d2.table("IR_IMB_R", IMB_HEADER, [f"{NIR_B};1;7;2021-01-15;;I10"], mode="incremental")
    (ben_result,) = d2.curate(spark, "IR_BEN_R", state)
    assert ben_result.orphans_pending and not by_name(ben_result)["orphaned_children"].evaluated
    d2.curate(spark, "IR_BEN_R_ARC", state)
    (imb,) = d2.curate(spark, "IR_IMB_R", state)
    assert by_name(imb)["foreign_key"].failures == 1  # the delivery's own row of B

    check_orphaned_children(settings, catalog, d2.manifest, [ben_result], state, ["IR_BEN_R", "IR_BEN_R_ARC"])
    check = by_name(ben_result)["orphaned_children"]
    assert check.evaluated and not check.passed and check.severity == WARN and not ben_result.orphans_pending
    assert check.failures == 2 and check.rule == "foreign_key"
    assert check.columns == ["BEN_NIR_PSA", "BEN_RNG_GEM", "BEN_IDT_ANO"]  # every link to IR_BEN_R
    assert sorted(map(str, check.sample)) == sorted(map(str, [
        {"table": "IR_IMB_R(BEN_NIR_PSA, BEN_RNG_GEM)", "BEN_NIR_PSA": NIR_B, "BEN_RNG_GEM": 1},
        {"table": "T_MCOaaC(NIR_ANO_17)", "NIR_ANO_17": NIR_B}]))
    assert "IR_IMB_R(BEN_NIR_PSA, BEN_RNG_GEM): 1 row(s) of other deliveries lost their IR_BEN_R row" in check.details
    fragment = load_fragment(settings, "2024-02-01", "IR_BEN_R", "curated")
    assert next(c for c in fragment["checks"] if c["name"] == "orphaned_children")["failures"] == 2

    # Delivered again with B, nothing is lost; the keys that left (none) are said.
    d3 = Delivery(settings, catalog, "2024-02-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1), ben(NIR_B, 1),
                                                                                    ben(NIR_T, 1)])
    d3.table("IR_BEN_R_ARC", BEN_HEADER, [ben(NIR_T, 2)])
    (again,) = d3.curate(spark, "IR_BEN_R", state)
    d3.curate(spark, "IR_BEN_R_ARC", state)
    check_orphaned_children(settings, catalog, d3.manifest, [again], state, ["IR_BEN_R", "IR_BEN_R_ARC"])
    check = by_name(again)["orphaned_children"]
    assert check.evaluated and check.passed and "no row of other deliveries lost its IR_BEN_R row" in check.details
    state.close()


def _identities_and_alds(spark, settings, catalog, state) -> None:
    """An accepted delivery: IR_BEN_R (A, B, twins T1 and T2) and ALD rows of A, B and T2."""
    d1 = Delivery(settings, catalog, "2024-01-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1), ben(NIR_B, 1),
                                                                                    ben(NIR_T, 1), ben(NIR_T, 2)])
    d1.table("IR_IMB_R", IMB_HEADER, [f"{nir};{rank};5;2020-01-15;;E11" for nir, rank in
                                      ((NIR_A, 1), (NIR_B, 1), (NIR_T, 2))], mode="incremental")
    d1.curate(spark, "IR_BEN_R", state)
    d1.curate(spark, "IR_IMB_R", state)
    d1.accept()


def test_orphaned_children_waits_for_the_archive_of_the_delivery_and_is_reported_once(spark, settings, catalog):
    """With IR_BEN_R_ARC of the delivery not curated in the run (an asset-graph selection), nothing can be told: not
    evaluated (the archive of an earlier run would not do either); both delivered full, the rows are reported on
    IR_BEN_R alone, which reads its state with the archive's."""
    state = CurrentState(spark, settings, catalog)
    _identities_and_alds(spark, settings, catalog, state)
    d2 = Delivery(settings, catalog, "2024-02-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1), ben(NIR_T, 1)])
    d2.table("IR_BEN_R_ARC", BEN_HEADER, [ben(NIR_T, 2)])
    (current,) = d2.curate(spark, "IR_BEN_R", state)
    check_orphaned_children(settings, catalog, d2.manifest, [current], state, ["IR_BEN_R"])
    check = by_name(current)["orphaned_children"]
    assert not check.evaluated and check.passed and check.failures == 0
    assert check.details == "IR_BEN_R_ARC of this delivery was not curated in this run"

    (archive,) = d2.curate(spark, "IR_BEN_R_ARC", state)
    check = by_name(archive)["orphaned_children"]
    assert not archive.orphans_pending and check.passed
    assert check.details.startswith("reported on IR_BEN_R of this delivery")
    (current,) = d2.curate(spark, "IR_BEN_R", state)
    check_orphaned_children(settings, catalog, d2.manifest, [current], state, ["IR_BEN_R", "IR_BEN_R_ARC"])
    check = by_name(current)["orphaned_children"]
    assert check.evaluated and check.failures == 1 and check.sample[0]["BEN_NIR_PSA"] == NIR_B  # B's ALD row
    state.close()


def test_orphaned_children_follows_identities_and_persons_and_the_reject_tolerance(spark, settings, catalog):
    """A twin's rank left (the other's stays, so a stay of their shared pseudo-NIR keeps its parent), a person's
    BEN_IDT_ANO changed (the death record of the former one loses it), placeholders not counted; past the reject
    tolerance its failure is an ERROR, as every WARN check of the table (SPEC §6)."""
    state = CurrentState(spark, settings, catalog)
    _identities_and_alds(spark, settings, catalog, state)
    d1 = Delivery(settings, catalog, "2024-01-02")
    d1.table("T_MCO23C", MCO_C_HEADER, [mco_c("1", NIR_T), mco_c("2", PLACEHOLDER, "1"), mco_c("3", NIR_B)])
    d1.table("KI_CCI_R", ["BEN_IDT_ANO", "DCD_CIM_COD"], [f"P{NIR_A[:16]}1;C50", f"P{NIR_B[:16]}1;C50"],
             mode="incremental")
    d1.curate(spark, "T_MCOaaC", state)
    d1.curate(spark, "KI_CCI_R", state)
    d1.accept()
    a_new = ";".join([NIR_A, "1", "PNEWPERSON0000001", "1970", "1", "1600-01-01", "202301", "1", "00"])
    bad = ";".join([NIR_B, "X", "PX", "1970", "1", "1600-01-01", "202301", "1", "00"])  # an untypable rank
    for rows, failures, severity in (([a_new, ben(NIR_B, 1), ben(NIR_T, 1)], 2, WARN),
                                     ([a_new, ben(NIR_B, 1), ben(NIR_T, 1), bad], 2, ERROR)):
        d2 = Delivery(settings, catalog, "2024-02-01").table("IR_BEN_R", BEN_HEADER, rows)
        (result,) = d2.curate(spark, "IR_BEN_R", state, settings=settings.with_(reject_tolerance=0.2))
        check_orphaned_children(settings.with_(reject_tolerance=0.2), catalog, d2.manifest, [result], state,
                                ["IR_BEN_R"])
        check = by_name(result)["orphaned_children"]
        assert (check.failures, check.severity) == (failures, severity), check
        assert sorted(s["table"] for s in check.sample) == ["IR_IMB_R(BEN_NIR_PSA, BEN_RNG_GEM)",
                                                            "KI_CCI_R(BEN_IDT_ANO)"]
        assert check.columns == ["BEN_NIR_PSA", "BEN_RNG_GEM", "BEN_IDT_ANO"]
    state.close()


def test_a_pmsi_year_delivered_full_reports_the_rows_of_that_year_it_leaves_without_their_stay(spark, settings,
                                                                                                catalog):
    """T_MCO23B delivered again without stay 2 leaves the 2023 C row of that stay without it; the 2022 C row of a
    stay numbered alike belongs to another year, which the delivery does not replace."""
    state = CurrentState(spark, settings, catalog)
    d1 = Delivery(settings, catalog, "2024-01-01")
    for year in ("22", "23"):
        d1.table(f"T_MCO{year}B", MCO_B_HEADER, [f"2A0000001;{n};I10;3;20{year}" for n in ("1", "2")])
        d1.table(f"T_MCO{year}C", MCO_C_HEADER, [mco_c("1", NIR_A), mco_c("2", NIR_B)])
    d1.curate(spark, "T_MCOaaC", state)
    d1.curate(spark, "T_MCOaaB", state)
    d1.accept()
    d2 = Delivery(settings, catalog, "2024-02-01").table("T_MCO23B", MCO_B_HEADER, ["2A0000001;1;I10;3;2023"])
    (b23,) = d2.curate(spark, "T_MCOaaB", state)
    assert b23.orphans_pending
    check_orphaned_children(settings, catalog, d2.manifest, [b23], state, ["T_MCOaaB"])
    check = by_name(b23)["orphaned_children"]
    assert check.evaluated and check.failures == 1 and check.columns == ["ETA_NUM", "RSA_NUM"]
    assert check.sample == [{"table": "T_MCOaaC(ETA_NUM, RSA_NUM)", "ETA_NUM": "2A0000001", "RSA_NUM": "2"}]
    state.close()


def test_the_keys_a_pmsi_year_leaves_are_told_on_that_years_table_only(spark, settings, catalog):
    """T_MCO22B and T_MCO23B delivered full together, 2023 without stays 2 and 3 (stay 3 had no C row): 2023's
    check counts the C row of stay 2; 2022's, which lost nothing, says no key left, not 2023's two."""
    state = CurrentState(spark, settings, catalog)
    d1 = Delivery(settings, catalog, "2024-01-01")
    for year in ("22", "23"):
        d1.table(f"T_MCO{year}B", MCO_B_HEADER, [f"2A0000001;{n};I10;3;20{year}" for n in ("1", "2", "3")])
        d1.table(f"T_MCO{year}C", MCO_C_HEADER, [mco_c("1", NIR_A), mco_c("2", NIR_B)])
    d1.curate(spark, "T_MCOaaC", state)
    d1.curate(spark, "T_MCOaaB", state)
    d1.accept()
    d2 = Delivery(settings, catalog, "2024-02-01")
    d2.table("T_MCO22B", MCO_B_HEADER, [f"2A0000001;{n};I10;3;2022" for n in ("1", "2", "3")])
    d2.table("T_MCO23B", MCO_B_HEADER, ["2A0000001;1;I10;3;2023"])
    results = d2.curate(spark, "T_MCOaaB", state)
    assert len(results) == 2 and all(r.orphans_pending for r in results)
    check_orphaned_children(settings, catalog, d2.manifest, results, state, ["T_MCOaaB"])
    by_year = {r.year: by_name(r)["orphaned_children"] for r in results}
    assert by_year[2023].failures == 1 and not by_year[2023].passed
    assert by_year[2022].passed and by_year[2022].failures == 0
    assert by_year[2022].details == "no row of other deliveries lost its T_MCOaaB row", by_year[2022].details
    state.close()


def test_a_row_losing_its_parent_through_two_links_is_one_orphaned_row(spark, settings, reference_catalog):
    """With the reference schemas ER_PRS_F points to DA_PRA_R by its executing and its prescribing practitioner: a
    full DA_PRA_R without practitioner B leaves a line that B both executed and prescribed without its parent
    once, not twice (SPEC §6 counts rows); each link still says its own count."""
    state = CurrentState(spark, settings, reference_catalog)
    header = [*PRS_HEADER, "PFS_EXE_NUM", "PFS_PRE_NUM"]
    d1 = Delivery(settings, reference_catalog, "2024-01-01")
    d1.table("DA_PRA_R", ["PFS_PFS_NUM", "PFS_COD_POS"], ["A0000001;75001", "B0000001;75002"])
    d1.table("ER_PRS_F", header, [f"{prs(1, '1')};B0000001;B0000001", f"{prs(2, '1')};B0000001;A0000001",
                                  f"{prs(3, '1')};A0000001;A0000001", f"{prs(4, '1')};A0000001;B0000001"],
             mode="incremental")
    d1.curate(spark, "DA_PRA_R", state)
    d1.curate(spark, "ER_PRS_F", state)
    d1.accept()
    d2 = Delivery(settings, reference_catalog, "2024-02-01").table("DA_PRA_R", ["PFS_PFS_NUM", "PFS_COD_POS"],
                                                                   ["A0000001;75001"], mode="full")
    (result,) = d2.curate(spark, "DA_PRA_R", state)
    assert result.orphans_pending
    check_orphaned_children(settings, reference_catalog, d2.manifest, [result], state, ["DA_PRA_R"])
    check = by_name(result)["orphaned_children"]
    assert check.evaluated and not check.passed and check.failures == 3, check
    assert "ER_PRS_F(PFS_EXE_NUM): 2 row(s) of other deliveries lost their DA_PRA_R row" in check.details
    assert "ER_PRS_F(PFS_PRE_NUM): 2 row(s) of other deliveries lost their DA_PRA_R row" in check.details
    assert "ER_PRS_F: 3 row(s) in all" in check.details
    state.close()


def test_links_of_one_table_to_the_same_parent_column_are_each_checked(spark, settings, reference_catalog):
    """With the reference schemas ER_PRS_F points to DA_PRA_R(PFS_PFS_NUM) by three columns (executing, prescribing
    and attending practitioner): the links shared one name, so that each overwrote the one before and only the last
    was checked. Each is checked and named by its own column; a row breaking two counts once."""
    state = CurrentState(spark, settings, reference_catalog)
    header = [*PRS_HEADER, "PFS_EXE_NUM", "PFS_PRE_NUM"]
    d1 = Delivery(settings, reference_catalog, "2024-01-01")
    d1.table("DA_PRA_R", ["PFS_PFS_NUM", "PFS_COD_POS"], ["A0000001;75001"])
    d1.table("ER_PRS_F", header, [f"{prs(1, '1')};B0000001;A0000001", f"{prs(2, '1')};A0000001;C0000001",
                                  f"{prs(3, '1')};B0000001;C0000001", f"{prs(4, '1')};A0000001;A0000001"],
             mode="incremental")
    d1.curate(spark, "DA_PRA_R", state)
    (result,) = d1.curate(spark, "ER_PRS_F", state)
    check = by_name(result)["foreign_key"]
    assert check.evaluated and check.failures == 3, check
    assert "DA_PRA_R(PFS_PFS_NUM) on PFS_EXE_NUM: 2 orphan row(s)" in check.details
    assert "DA_PRA_R(PFS_PFS_NUM) on PFS_PRE_NUM: 2 orphan row(s)" in check.details
    assert "DA_PRA_R(PFS_PFS_NUM) on PRS_MTT_NUM: not evaluated, the delivery lacks PRS_MTT_NUM" in check.details
    assert {"PFS_EXE_NUM", "PFS_PRE_NUM", "PRS_MTT_NUM"} <= set(check.columns)
    assert {(s["link"], s.get("PFS_EXE_NUM") or s.get("PFS_PRE_NUM")) for s in check.sample} == {
        ("DA_PRA_R(PFS_PFS_NUM) on PFS_EXE_NUM", "B0000001"), ("DA_PRA_R(PFS_PFS_NUM) on PFS_PRE_NUM", "C0000001")}
    state.close()


# --- nomenclatures --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("small_list", [5000, 2, 1], ids=["inline", "rank-inline-sex-anti-joined", "anti-joined"])
def test_nomenclature_codes(spark, settings, catalog, tmp_path, monkeypatch, small_list):
    """``failures`` counts rows: a row off two lists is one, whichever way each list is checked (inline in the
    write, or by an anti-join on distinct values after it); the details count each column."""
    folder = tmp_path / "nomenclatures" / "ORAVAL"
    folder.mkdir(parents=True)
    (folder / "IR_SEX_V.csv").write_text("SEX_COD;SEX_LIB\n1;MASCULIN\n2;FEMININ\n9;INCONNU\n", encoding="utf-8")
    (folder / "IR_BER_V.csv").write_text("BEN_RNG_GEM;LIB\n01;premier\n02;second\n", encoding="utf-8")
    monkeypatch.setattr(rules, "SMALL_CODE_LIST", small_list)  # lists longer than this are anti-joined
    rows = [ben(NIR_A, 1, sex="1"), ben(NIR_B, 1, sex="2"), ben(NIR_T, 1, sex="0"), ben(NIR_T, 2, sex="0"),
            ben(NIR_T, 3, sex="9"), ben(NIR_T, 4, sex="0")]
    d = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", BEN_HEADER, rows)
    with_codes = settings.with_(nomenclatures=str(tmp_path / "nomenclatures"))
    (result,) = d.curate(spark, "IR_BEN_R", settings=with_codes)
    nom = by_name(result)["nomenclature"]
    # sex 0 three times, ranks 3 and 4 (ranks compare as numbers: '01' is rank 1), rank 4 with sex 0: four rows;
    # other coded columns have no CSV here
    assert nom.evaluated and nom.failures == 4 and nom.severity == WARN
    assert nom.columns == ["BEN_RNG_GEM", "BEN_SEX_COD"]
    assert {(s["column"], s["value"]) for s in nom.sample} == {("BEN_SEX_COD", "0"), ("BEN_RNG_GEM", "3"),
                                                               ("BEN_RNG_GEM", "4")}
    # Each way names the list and shows the failing rows' keys (an anti-joined list gave the value alone).
    assert "IR_SEX_V:BEN_SEX_COD: 3" in nom.details and "IR_BER_V:BEN_RNG_GEM: 2" in nom.details, nom.details
    assert {s["BEN_NIR_PSA"] for s in nom.sample if s["column"] == "BEN_RNG_GEM"} == {NIR_T}, nom.sample
    assert all(s.get("BEN_NIR_PSA") in (NIR_T,) and "BEN_RNG_GEM" in s for s in nom.sample), nom.sample
    assert "IR_NIR_V not found" in nom.details


# --- formats ----------------------------------------------------------------------------------------------------
def test_latin1_gzip_and_manifest_date_format(spark, settings, catalog):
    fmt = Format(delimiter="|", encoding="latin-1", date_format="%d/%m/%Y")
    header = ["BEN_NIR_PSA", "BEN_RNG_GEM", "IMB_ALD_DTD", "MED_MTF_COD", "COMMENTAIRE"]
    rows = [f"{NIR_A}|1|15/01/2020|E11|déjà vu", f"{NIR_A}|2|2020-01-15|E11|été"]
    d = Delivery(settings, catalog, "2024-03-01", fmt).table("IR_IMB_R", header, rows, gz=True)
    (result,) = d.curate(spark, "IR_IMB_R", settings=settings.with_(reject_tolerance=0.6))
    assert (result.rows_read, result.rows_curated, result.rows_rejected) == (2, 1, 1)
    assert by_name(result)["type"].columns == ["IMB_ALD_DTD"]
    assert ("COMMENTAIRE", "string") == result.column_schema[-1]  # unknown columns kept, as strings, last
    row = spark.read.parquet(Lake(settings.lake).curated("IR_IMB_R", "2024-03-01")).first()
    assert row["IMB_ALD_DTD"] == date(2020, 1, 15) and row["COMMENTAIRE"] == "déjà vu"
    reject = spark.read.parquet(Lake(settings.lake).rejects("IR_IMB_R", "2024-03-01")).first()
    assert reject["COMMENTAIRE"] == "été" and reject["IMB_ALD_DTD"] == "2020-01-15"


@pytest.mark.parametrize("strftime", [
    "%d/%m/%Y", "%Y%m%d", "%d%b%Y", "%d %B %Y", "%j/%Y", "le %d.%m.%Y", "%d{%m}%Y", "%d[%m]%Y", "%d#%m#%Y",
    "%d'%m'%Y", "%d%%%m%%%Y", "%Y-%m-%dT%H:%M:%S", "%d%b%Y:%H:%M:%S",
])
def test_a_manifest_date_format_reads_back_the_dates_written_with_it(spark, tmp_path, strftime):
    """Dates written with the manifest's strftime pattern (as the generator writes them) are read back by the CSV
    parser as the same dates, the 1600-01-01 convention included. Literals were passed to java.time unquoted:
    ``[`` ``]`` made an optional part (every date a type failure) and ``#``, ``{`` ``}`` failed the reception."""
    from snds_assets.curation.columns import csv_options
    from snds_assets.generator.values import strftime_c

    days = [date(1600, 1, 1), date(1955, 3, 7), date(1999, 12, 31), date(2000, 1, 1), date(2023, 11, 5)]
    path = tmp_path / "dates.csv"
    path.write_text("D\n" + "".join(strftime_c(d, strftime) + "\n" for d in days), encoding="utf-8")
    fmt = parse_format({"date_format": strftime})
    read = spark.read.schema("D date, _CORRUPT_RECORD string").options(**csv_options(fmt)).csv(str(path)).collect()
    assert [(r["D"], r["_CORRUPT_RECORD"]) for r in read] == [(d, None) for d in days]


def test_a_month_field_holds_1_to_12(spark, settings, catalog):
    """BEN_NAI_MOI is a date of format %m: 1 to 12, zero-padded or not; 0, 13 or a year is a type failure."""
    header = BEN_HEADER + ["BEN_NAI_MOI"]
    months = {NIR_A: "05", NIR_B: "12", NIR_T: "7"}
    rows = [ben(nir, 1) + f";{m}" for nir, m in months.items()]
    rows += [ben(NIR_T, rank) + f";{m}" for rank, m in ((2, "13"), (3, "0"), (4, "2020"), (5, "-1"))]
    d = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", header, rows)
    (result,) = d.curate(spark, "IR_BEN_R", settings=settings.with_(reject_tolerance=1.0))
    assert (result.rows_read, result.rows_curated, result.rows_rejected) == (7, 3, 4)
    assert by_name(result)["type"].failures == 4 and by_name(result)["type"].columns == ["BEN_NAI_MOI"]
    curated = spark.read.parquet(Lake(settings.lake).curated("IR_BEN_R", "2024-03-01"))
    assert dict(curated.dtypes)["BEN_NAI_MOI"] == "int"
    assert sorted((r["BEN_NIR_PSA"], r["BEN_NAI_MOI"]) for r in curated.collect()) == [(NIR_A, 5), (NIR_B, 12), (NIR_T, 7)]
    rejects = spark.read.parquet(Lake(settings.lake).rejects("IR_BEN_R", "2024-03-01")).collect()
    assert sorted(r["BEN_NAI_MOI"] for r in rejects) == ["-1", "0", "13", "2020"]
    assert {r[REJECT_REASON] for r in rejects} == {"type: BEN_NAI_MOI"}


def test_a_quoted_empty_value_is_null_whatever_the_null_value(spark, settings, catalog):
    """With ``null_value`` "NA", an empty value written ``""`` is the empty value written ``;;``: null. Spark read it
    as an empty text, so that a key written ``""`` was curated with nothing in it while the same key written ``;;``
    was rejected, and an optional date written ``""`` was a type failure."""
    rows = [f"{NIR_A};1;5;2020-01-15;NA;E11", f'{NIR_A};1;6;2020-01-15;"";E11', '"";1;7;2020-01-15;NA;E11',
            "NA;1;8;2020-01-15;NA;E11", f'{NIR_A};1;9;2020-01-15;;""']
    d = Delivery(settings, catalog, "2024-03-01", Format(null_value="NA")).table("IR_IMB_R", IMB_HEADER, rows)
    (result,) = d.curate(spark, "IR_IMB_R", settings=settings.with_(reject_tolerance=1.0))
    assert (result.rows_read, result.rows_curated, result.rows_rejected) == (5, 3, 2)
    checks = by_name(result)
    assert checks["type"].passed and checks["not_null"].failures == 2
    assert "BEN_NIR_PSA: 2 empty" in checks["not_null"].details and "BEN_RNG_GEM" not in checks["not_null"].details
    curated = spark.read.parquet(Lake(settings.lake).curated("IR_IMB_R", "2024-03-01")).collect()
    assert sorted((r["IMB_ALD_NUM"], r["IMB_ALD_DTF"], r["MED_MTF_COD"]) for r in curated) == [
        (5, None, "E11"), (6, None, "E11"), (9, None, None)]


def test_date_times_are_parquet_timestamps_that_pandas_reads(spark, settings, catalog):
    """Curated date-times are Parquet's standard timestamps in microseconds (Spark's INT96 default is read by pandas
    and arrow in nanoseconds, which made the SNDS's unknown date 1600-01-01 the year 2184), without time zone: the
    SNDS's date-times are French wall-clock values, and an instant would move a stay ending at 23:30 to the next day
    for a researcher reading it in Paris time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    late = mco_c("3", NIR_A).replace("15JAN2023:00:00:00", "15JAN2023:23:30:00")
    assert late != mco_c("3", NIR_A)
    d = Delivery(settings, catalog, "2024-03-01").table(
        "T_MCO23C", MCO_C_HEADER, [mco_c("1", NIR_A).replace("15JAN2023", "01JAN1600"), mco_c("2", NIR_A), late])
    d.curate(spark, "T_MCOaaC")
    table = pq.read_table(Lake(settings.lake).curated("T_MCOaaC", "2024-03-01"))
    assert table.schema.field("EXE_SOI_DTD").type == pa.timestamp("us")
    assert sorted(table.to_pandas()["EXE_SOI_DTD"].dt.year) == [1600, 2023, 2023]
    zone = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "Europe/Paris")
    try:
        shown = spark.read.parquet(Lake(settings.lake).curated("T_MCOaaC", "2024-03-01")).selectExpr(
            "CAST(EXE_SOI_DTD AS STRING) AS t").collect()
    finally:
        spark.conf.set("spark.sql.session.timeZone", zone)
    assert "2023-01-15 23:30:00" in {r["t"] for r in shown}


def test_a_year_field_is_written_yyyy(spark, settings, catalog):
    """BEN_NAI_ANN is a year: YYYY (SPEC §2). 20 or 12345 is a type failure (rejected), not a year of the range
    check; 1600, the unknown year, and 1850, an implausible one, are years that the range check judges."""
    years = {NIR_A: "1970", NIR_B: "1600", NIR_T: "1850"}
    rows = [ben(nir, 1, birth=y) for nir, y in years.items()]
    rows += [ben(NIR_T, rank, birth=y) for rank, y in ((2, "20"), (3, "12345"), (4, "+1970"), (5, "1970.0"))]
    d = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", BEN_HEADER, rows)
    (result,) = d.curate(spark, "IR_BEN_R", settings=settings.with_(reject_tolerance=1.0))
    assert (result.rows_read, result.rows_curated, result.rows_rejected) == (7, 3, 4)
    assert by_name(result)["type"].failures == 4 and by_name(result)["type"].columns == ["BEN_NAI_ANN"]
    assert by_name(result)["range"].failures == 1  # 1850
    curated = spark.read.parquet(Lake(settings.lake).curated("IR_BEN_R", "2024-03-01"))
    assert sorted(r["BEN_NAI_ANN"] for r in curated.collect()) == [1600, 1850, 1970]
    rejects = spark.read.parquet(Lake(settings.lake).rejects("IR_BEN_R", "2024-03-01")).collect()
    assert sorted(r["BEN_NAI_ANN"] for r in rejects) == sorted(["20", "12345", "+1970", "1970.0"])


def test_an_iso_datetime_is_a_whole_date_and_time(spark, settings, catalog):
    """T_RIPaaC's EXE_SOI_DTD is an ISO date-time (schema format default): a date, or a date and a time. 2020,
    2020-1 or +2020-01-15, which a bare cast completes into a date, are type failures."""
    header = ["ETA_NUM_EPMSI", "RIP_NUM", "NIR_ANO_17", "EXE_SOI_DTD"]
    values = {"2022-03-01": datetime(2022, 3, 1), "2022-03-01T10:15:30": datetime(2022, 3, 1, 10, 15, 30),
              "2022-03-01 10:15": datetime(2022, 3, 1, 10, 15), "2020": None, "2020-1": None, "+2020-01-15": None,
              "2022-02-30": None, "01/03/2022": None}
    rows = [f"E1;{i};psa-{i};{v}" for i, v in enumerate(values)]
    d = Delivery(settings, catalog, "2024-03-01").table("T_RIP22C", header, rows)
    (result,) = d.curate(spark, "T_RIPaaC", settings=settings.with_(reject_tolerance=1.0))
    assert (result.rows_read, result.rows_curated, result.rows_rejected) == (8, 3, 5)
    assert by_name(result)["type"].failures == 5 and by_name(result)["type"].columns == ["EXE_SOI_DTD"]
    curated = spark.read.parquet(Lake(settings.lake).curated("T_RIPaaC", "2024-03-01"))
    assert sorted(r["EXE_SOI_DTD"] for r in curated.collect()) == sorted(v for v in values.values() if v)


def test_a_decimal_comma_number_holds_no_point_nor_special_value(spark, settings, catalog):
    """With the manifest's decimal ",", "1.234" is no number (a thousands separator would make it 1234), nor are
    "NaN", a Java suffix or an infinite value; exponents and spaces around are read as with the decimal "."."""
    keys = ";".join(["1", "2024-02-01", "1", "1", "1", "2024-02-05", "01C", "1", "1"])
    header = list(domain.DCIR_KEYS) + ["PHA_ACT_PRU"]
    values = {"3,5": 3.5, "-0,25": -0.25, "1,5e3": 1500.0, " 2,5 ": 2.5, "7": 7.0,
              "1.234": None, "1.234,5": None, "NaN": None, "2,5d": None, "Infinity": None, "1e999": None,
              "-1,5e400": None}
    d = Delivery(settings, catalog, "2024-03-01", Format(decimal=",")).table(
        "ER_PHA_F", header, [f"{keys};{v}" for v in values])
    (result,) = d.curate(spark, "ER_PHA_F", settings=settings.with_(reject_tolerance=1.0))
    assert (result.rows_read, result.rows_curated, result.rows_rejected) == (12, 5, 7)
    assert by_name(result)["type"].failures == 7 and by_name(result)["type"].columns == ["PHA_ACT_PRU"]
    curated = spark.read.parquet(Lake(settings.lake).curated("ER_PHA_F", "2024-03-01"))
    assert sorted(r["PHA_ACT_PRU"] for r in curated.collect()) == sorted(v for v in values.values() if v is not None)
    rejects = spark.read.parquet(Lake(settings.lake).rejects("ER_PHA_F", "2024-03-01")).collect()
    assert sorted(r["PHA_ACT_PRU"] for r in rejects) == sorted(k for k, v in values.items() if v is None)


def test_a_number_is_finite(spark, settings, catalog):
    """Java's double parser takes "NaN", "Infinity" and 1e999 (infinite): none is a number of the delivery. A value
    it cannot parse still counts as a type failure, not as a malformed line."""
    keys = ";".join(["1", "2024-02-01", "1", "1", "1", "2024-02-05", "01C", "1", "1"])
    header = list(domain.DCIR_KEYS) + ["PHA_ACT_PRU"]
    values = {"3.5": 3.5, "-1e2": -100.0, "7": 7.0, "NaN": None, "Infinity": None, "-Infinity": None, "1e999": None,
              "1,5": None}
    d = Delivery(settings, catalog, "2024-03-01").table("ER_PHA_F", header, [f"{keys};{v}" for v in values])
    (result,) = d.curate(spark, "ER_PHA_F", settings=settings.with_(reject_tolerance=1.0))
    assert (result.rows_read, result.rows_curated, result.rows_rejected) == (8, 3, 5)
    assert by_name(result)["type"].failures == 5 and by_name(result)["type"].columns == ["PHA_ACT_PRU"]
    assert "malformed" not in by_name(result)["type"].details
    curated = spark.read.parquet(Lake(settings.lake).curated("ER_PHA_F", "2024-03-01"))
    assert sorted(r["PHA_ACT_PRU"] for r in curated.collect()) == [-100.0, 3.5, 7.0]
    rejects = spark.read.parquet(Lake(settings.lake).rejects("ER_PHA_F", "2024-03-01")).collect()
    assert sorted(r["PHA_ACT_PRU"] for r in rejects) == sorted(k for k, v in values.items() if v is None)
    assert {r[REJECT_REASON] for r in rejects} == {"type: PHA_ACT_PRU"}


# --- PMSI years -------------------------------------------------------------------------------------------------
def test_pmsi_years_are_folded_into_one_family_partition(spark, settings, catalog):
    d = Delivery(settings, catalog, "2024-03-01")
    d.table("T_MCO22C", MCO_C_HEADER, [mco_c("1", NIR_A), mco_c("2", NIR_A)])
    d.table("T_MCO23C", MCO_C_HEADER, [mco_c("1", NIR_A), mco_c("1", NIR_A), mco_c("3", NIR_A)])
    results = d.curate(spark, "T_MCOaaC")
    assert [(r.delivered_name, r.year, r.rows_curated) for r in results] == [("T_MCO22C", 2022, 2), ("T_MCO23C", 2023, 3)]
    pk22, pk23 = (by_name(r)["primary_key"] for r in results)
    assert pk22.passed and not pk23.passed and pk23.failures == 1  # stay 1 is in both years: only 2023 repeats it
    curated = spark.read.parquet(Lake(settings.lake).curated("T_MCOaaC", "2024-03-01"))
    assert dict(curated.dtypes)[domain.YEAR_COLUMN] == "int"
    assert dict(curated.dtypes)["EXE_SOI_DTD"] == "timestamp_ntz" and dict(curated.dtypes)["ENT_DAT"] == "date"
    assert sorted(r[domain.YEAR_COLUMN] for r in curated.collect()) == [2022, 2022, 2023, 2023, 2023]
    assert {r["ENT_DAT"] for r in curated.collect()} == {date(2023, 1, 15)}


# --- re-curation --------------------------------------------------------------------------------------------------
def test_recuration_replaces_the_partition(spark, settings, catalog):
    rows = [f"{NIR_A};1;{i};2020-01-15;;E11" for i in range(5)] + [f"{NIR_A};1;AB;2020-01-15;;E11"]
    d = Delivery(settings, catalog, "2024-03-01").table("IR_IMB_R", IMB_HEADER, rows)
    lake = Lake(settings.lake)
    first = d.curate(spark, "IR_IMB_R")
    second = d.curate(spark, "IR_IMB_R")
    assert [(r.rows_curated, r.rows_rejected) for r in first] == [(r.rows_curated, r.rows_rejected) for r in second]
    assert spark.read.parquet(lake.curated("IR_IMB_R", "2024-03-01")).count() == 5
    assert spark.read.parquet(lake.rejects("IR_IMB_R", "2024-03-01")).count() == 1
    staging = Path(lake.staging())
    assert not staging.exists() or not any(p.is_file() for p in staging.rglob("*"))
    leftovers = [p.name for p in Path(lake.curated("IR_IMB_R")).iterdir()]
    assert leftovers == ["delivery_id=2024-03-01"]

    d2 = Delivery(settings, catalog, "2024-03-01").table("IR_IMB_R", IMB_HEADER, rows[:3])  # fixed: no reject
    d2.curate(spark, "IR_IMB_R")
    assert spark.read.parquet(lake.curated("IR_IMB_R", "2024-03-01")).count() == 3
    assert not Path(lake.rejects("IR_IMB_R", "2024-03-01")).exists()


def test_recuration_withdraws_the_delivery_report_until_the_next_one(spark, settings, catalog):
    """A reception of an accepted delivery killed half-way, or one family curated again from the UI: the families
    published anew must not count under the earlier verdict. From the first one published until the next report,
    the delivery counts for nothing; the earlier report is kept aside, and `snds report` says where."""
    from snds_assets.cli import UsageError
    from snds_assets.commands import cmd_report
    from snds_assets.reception.report import previous_report_path

    state = CurrentState(spark, settings, catalog)
    d = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1)])
    d.curate(spark, "IR_BEN_R", state)
    d.accept()
    report = Path(Lake(settings.lake).delivery_report("2024-03-01"))
    earlier = report.read_text()
    report.with_suffix(".html").write_text("<html>earlier</html>")
    assert [p.delivery_id for p in state.parts("IR_BEN_R")] == ["2024-03-01"]

    d.curate(spark, "IR_BEN_R", state)
    assert not report.exists() and not report.with_suffix(".html").exists()
    assert state.parts("IR_BEN_R") == []
    assert Path(previous_report_path(settings, "2024-03-01")).read_text() == earlier
    assert Path(previous_report_path(settings, "2024-03-01", "html")).read_text() == "<html>earlier</html>"
    args = type("Args", (), {"target": "2024-03-01"})()
    with pytest.raises(UsageError, match="reception started again and has not finished .* run snds ingest 2024-03-01"):
        cmd_report(settings, args, "text")
    d.accept()  # the next report
    assert [p.delivery_id for p in state.parts("IR_BEN_R")] == ["2024-03-01"]


def test_a_publication_that_fails_leaves_the_published_partition_in_place(settings, monkeypatch):
    """The partition in place is moved aside before the new one is renamed in: were that rename to fail, readers
    would find no partition at all (the family's current state would lose a delivery). It is put back."""
    from snds_assets.curation import publish as publishing

    lake = Lake(settings.lake)
    target, staged = Path(lake.curated("IR_BEN_R", "2024-03-01")), Path(lake.root) / "_staging" / "x" / "curated"
    for folder, content in ((target, b"published"), (staged, b"new")):
        folder.mkdir(parents=True)
        (folder / "part-00000.parquet").write_bytes(content)
    move = publishing._move

    def failing(fs, src, dst):
        if src.rstrip("/").endswith("curated"):
            raise OSError("no space left on device")
        move(fs, src, dst)

    monkeypatch.setattr(publishing, "_move", failing)
    with pytest.raises(OSError, match="no space left"):
        publishing.publish(str(staged), str(target))
    assert (target / "part-00000.parquet").read_bytes() == b"published"
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # nothing left aside
    monkeypatch.setattr(publishing, "_move", move)
    publishing.publish(str(staged), str(target))
    assert (target / "part-00000.parquet").read_bytes() == b"new" and not staged.exists()


@pytest.mark.parametrize("name, decoy", [("part[1].csv", "part1.csv"), ("p?x.csv", "pax.csv"),
                                         ("a{b}.csv", None), ("c\\d*.csv", "c\\dd.csv")])
def test_a_delivered_file_name_is_read_as_written(spark, settings, catalog, name, decoy):
    """Hadoop reads ``*?[]{}`` and ``\\`` in a path as a pattern: ``part[1].csv`` was read as ``part1.csv``, ``p?x.csv``
    with every file it matched (an archived file of another delivered table, say), ``a{b}.csv`` not at all."""
    d = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1), ben(NIR_B, 1)],
                                                         file=name)
    if decoy:
        Path(Lake(settings.lake).raw("2024-03-01", f"IR_BEN_R/{decoy}")).write_text(
            ";".join(BEN_HEADER) + "\n" + ben(NIR_T, 1) + "\n")
    (result,) = d.curate(spark, "IR_BEN_R")
    assert (result.rows_read, result.rows_curated, result.rows_rejected) == (2, 2, 0)
    curated = spark.read.parquet(Lake(settings.lake).curated("IR_BEN_R", "2024-03-01"))
    assert sorted(r["BEN_NIR_PSA"] for r in curated.collect()) == [NIR_A, NIR_B]


def test_a_delivered_column_named_like_a_column_of_curation_is_kept(spark, settings, catalog):
    """Unknown columns are kept (SPEC §2), whatever their names: a delivered ``_BAD``, ``_FILE``, ``_CORRUPT_RECORD``,
    ``_REJECT_REASON``, ``MALFORMED``, ``type:IMB_ALD_NUM`` or ``_FOUND0`` shared its name with a column of the write
    pass, the rejects or the probe of a small parent, and the run failed on an ambiguous or repeated column
    (``X;X;X_2`` likewise: the second X was renamed X_2 beside the delivered X_2); a delivered ``PMSI_YEAR`` was
    dropped for the year curation adds, a ``DELIVERY_ID`` replaced by the state's. Each is kept under a free name, as
    a repeated one is."""
    extras = ["_BAD", "_file", "_CORRUPT_RECORD", "_REJECT_REASON", "_SOURCE_FILE", "Malformed", "_FOUND0",
              "type:IMB_ALD_NUM", "X", "X", "X_2", "delivery_id", "PMSI_YEAR"]
    values = ";".join(f"v{i}" for i in range(len(extras)))
    rows = [f"{NIR_A};1;5;2020-01-15;1600-01-01;E11;{values}", f"{NIR_A};1;AB;2020-01-15;;E10;{values}"]
    d = (Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1)])
         .table("IR_IMB_R", IMB_HEADER + extras, rows))
    d.curate(spark, "IR_BEN_R")
    (result,) = d.curate(spark, "IR_IMB_R")
    assert (result.rows_read, result.rows_curated, result.rows_rejected) == (2, 1, 1)
    checks = by_name(result)
    assert checks["foreign_key"].evaluated and checks["foreign_key"].passed
    assert checks["rows_reconciled"].passed
    kept = ["_BAD_2", "_FILE_2", "_CORRUPT_RECORD_2", "_REJECT_REASON_2", "_SOURCE_FILE_2", "MALFORMED_2",
            "_FOUND0_2", "TYPE:IMB_ALD_NUM_2", "X", "X_3", "X_2", "DELIVERY_ID_2", "PMSI_YEAR_2"]
    lake = Lake(settings.lake)
    (curated,) = spark.read.parquet(lake.curated("IR_IMB_R", "2024-03-01")).collect()
    assert [curated[c] for c in kept] == [f"v{i}" for i in range(len(extras))]
    (reject,) = spark.read.parquet(lake.rejects("IR_IMB_R", "2024-03-01")).collect()
    assert [reject[c] for c in kept] == [f"v{i}" for i in range(len(extras))]
    assert reject[REJECT_REASON] == "type: IMB_ALD_NUM" and reject["IMB_ALD_NUM"] == "AB"


def test_a_delivered_column_name_is_kept_whatever_its_characters(spark, settings, catalog):
    """Unknown columns are kept under their delivered names (SPEC §2): the write pass selected them by name, which
    Spark parses, so ``X`Y`` failed the run (a syntax error) and ``A.B`` was taken for field B of a column A."""
    extras = ["A.B", "X`Y", "MY COL", "(P)", "{X}", "A=B"]
    values = ";".join(f"v{i}" for i in range(len(extras)))
    rows = [f"{NIR_A};1;5;2020-01-15;1600-01-01;E11;{values}", f"{NIR_A};1;AB;2020-01-15;;E10;{values}"]
    d = Delivery(settings, catalog, "2024-03-01").table("IR_IMB_R", IMB_HEADER + extras, rows)
    (result,) = d.curate(spark, "IR_IMB_R")
    assert (result.rows_read, result.rows_curated, result.rows_rejected) == (2, 1, 1)
    lake = Lake(settings.lake)
    (curated,) = spark.read.parquet(lake.curated("IR_IMB_R", "2024-03-01")).collect()
    assert [curated[c] for c in extras] == [f"v{i}" for i in range(len(extras))]
    (reject,) = spark.read.parquet(lake.rejects("IR_IMB_R", "2024-03-01")).collect()
    assert [reject[c] for c in extras] == [f"v{i}" for i in range(len(extras))]


def test_a_death_matched_to_no_beneficiary_is_curated(spark, settings, catalog):
    """CépiDc records that could not be matched (DCD_IDT_TOP = 0) have no BEN_IDT_ANO: they are records all the
    same, not rejects (a few percent of them would have pushed KI_CCI_R past the reject tolerance); a matched
    one without its person fails the matched_death rule. Nor is a record without its person an orphan of its
    foreign key to IR_BEN_R (empty link values are not checked)."""
    header = ["DCD_IDT_ENC", "DCD_IDT_TOP", "BEN_IDT_ANO", "FLX_PER_ANN"]
    rows = ["D1;1;PAAAAAAAAAAAAAAAA1;2023", "D2;0;;2023", "D3;1;;2023", "D4;;;2023"]
    d = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1)])
    d.table("KI_CCI_R", header, rows)
    state = CurrentState(spark, settings, catalog)
    d.curate(spark, "IR_BEN_R", state)
    (result,) = d.curate(spark, "KI_CCI_R", state)
    assert (result.rows_read, result.rows_curated, result.rows_rejected) == (4, 4, 0)
    checks = by_name(result)
    assert checks["not_null"].passed
    assert checks["foreign_key"].evaluated and checks["foreign_key"].passed, checks["foreign_key"].details
    assert (checks["domain"].passed, checks["domain"].failures) == (False, 1)
    assert "matched_death" in checks["domain"].details
    # KI_CCI_R has no key: its sample shows its first columns, the death certificate first, to find the record
    assert checks["domain"].sample == [{"column": "BEN_IDT_ANO", "DCD_IDT_ENC": "D3",
                                        "DCD_IDT_TOP": 1}], checks["domain"].sample


def test_a_row_breaking_two_links_is_one_failing_row(spark, settings, catalog):
    """A death whose person neither IR_BEN_R nor IR_IBA_R knows broke two links: the foreign_key check counted it
    twice (two rows of three failing in a table of three). SPEC §6: ``failures`` counts the failing rows."""
    known, only_ben, unknown = f"P{NIR_A[:16]}1", f"P{NIR_B[:16]}1", "PNOBODY0000000001"
    d = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1), ben(NIR_B, 1)])
    d.table("IR_IBA_R", ["BEN_IDT_ANO", "BEN_NAI_ANN"], [f"{known};1970"])
    d.table("KI_CCI_R", ["BEN_IDT_ANO", "DCD_CIM_COD"], [f"{known};C50", f"{only_ben};C50", f"{unknown};C50"])
    state = CurrentState(spark, settings, catalog)
    for family in ("IR_BEN_R", "IR_IBA_R"):
        d.curate(spark, family, state)
    (result,) = d.curate(spark, "KI_CCI_R", state)
    fk = by_name(result)["foreign_key"]
    assert (fk.passed, fk.failures, fk.severity) == (False, 2, WARN), fk
    assert fk.details.startswith("2 row(s) break at least one link; IR_BEN_R(BEN_IDT_ANO): 1 orphan row(s)"), fk.details
    assert "IR_IBA_R(BEN_IDT_ANO): 2 orphan row(s)" in fk.details
    fragment = load_fragment(settings, "2024-03-01", "KI_CCI_R", "curated")
    assert next(c for c in fragment["checks"] if c["name"] == "foreign_key")["failures"] == 2
    state.close()


# --- current state ---------------------------------------------------------------------------------------------
def test_current_state_incremental_then_full(spark, settings, catalog):
    state = CurrentState(spark, settings, catalog)
    d1 = Delivery(settings, catalog, "2024-01-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1), ben(NIR_B, 1)],
                                                          mode="incremental")
    d1.curate(spark, "IR_BEN_R", state)
    d1.accept()
    d2 = Delivery(settings, catalog, "2024-02-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_B, 1), ben(NIR_T, 1)],
                                                          mode="incremental")
    (second,) = d2.curate(spark, "IR_BEN_R", state)
    pk_state = by_name(second)["primary_key_state"]
    assert pk_state.evaluated and pk_state.failures == 1 and pk_state.severity == WARN  # NIR_B again
    assert by_name(second)["primary_key"].passed
    d2.accept()
    assert state.deliveries("IR_BEN_R") == ["2024-01-01", "2024-02-01"]
    df = state.read("IR_BEN_R")
    assert sorted((r["DELIVERY_ID"], r["BEN_NIR_PSA"]) for r in df.collect()) == [
        ("2024-01-01", NIR_A), ("2024-01-01", NIR_B), ("2024-02-01", NIR_B), ("2024-02-01", NIR_T)]
    assert state.read("IR_BEN_R", exclude_delivery="2024-02-01").count() == 2

    rejected = Delivery(settings, catalog, "2024-02-15").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 5)])
    rejected.curate(spark, "IR_BEN_R", state)
    rejected.accept(status="rejected")
    assert state.deliveries("IR_BEN_R") == ["2024-01-01", "2024-02-01"]  # a rejected delivery does not count

    d3 = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_T, 2)])  # full (default)
    (third,) = d3.curate(spark, "IR_BEN_R", state)
    assert not by_name(third)["primary_key_state"].evaluated
    d3.accept()
    assert state.deliveries("IR_BEN_R") == ["2024-03-01"]
    assert [(r["DELIVERY_ID"], r["BEN_RNG_GEM"]) for r in state.read("IR_BEN_R").collect()] == [("2024-03-01", 2)]
    assert state.read("IR_IMB_R") is None and state.deliveries("IR_IMB_R") == []


def test_key_already_in_state_is_not_reported_for_a_table_a_later_full_delivery_replaces(spark, settings, catalog):
    """A delivery received late (or again) after a later full delivery of the family does not join the current
    state: its keys duplicate nothing there (the check is not evaluated, and says why); per year for PMSI."""
    state = CurrentState(spark, settings, catalog)
    d1 = Delivery(settings, catalog, "2024-01-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1), ben(NIR_B, 1)],
                                                          mode="incremental")
    d1.table("T_MCO22C", MCO_C_HEADER, [mco_c("1", NIR_A)]).table("T_MCO23C", MCO_C_HEADER, [mco_c("2", NIR_A)])
    for family in ("IR_BEN_R", "T_MCOaaC"):
        d1.curate(spark, family, state)
    d1.accept()
    d3 = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_B, 1)], mode="full")
    d3.table("T_MCO23C", MCO_C_HEADER, [mco_c("2", NIR_A)], mode="full")
    for family in ("IR_BEN_R", "T_MCOaaC"):
        d3.curate(spark, family, state)
    d3.accept()
    late = Delivery(settings, catalog, "2024-02-01")
    late.table("IR_BEN_R", BEN_HEADER, [ben(NIR_B, 1)], mode="incremental")
    late.table("T_MCO22C", MCO_C_HEADER, [mco_c("1", NIR_A)], mode="incremental")
    late.table("T_MCO23C", MCO_C_HEADER, [mco_c("2", NIR_A)], mode="incremental")
    (ben_result,) = late.curate(spark, "IR_BEN_R", state)
    check = by_name(ben_result)["primary_key_state"]
    assert not check.evaluated and check.passed and "later full delivery" in check.details
    by_year = {r.year: by_name(r)["primary_key_state"] for r in late.curate(spark, "T_MCOaaC", state)}
    assert by_year[2022].evaluated and by_year[2022].failures == 1  # 2022 of 2024-01-01 is still in the state
    assert not by_year[2023].evaluated and by_year[2023].passed and "later full delivery" in by_year[2023].details
    # A late full delivery replaces nothing either (it said "full delivery: it replaces the current state").
    late_full = Delivery(settings, catalog, "2024-02-15").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1)], mode="full")
    (full_result,) = late_full.curate(spark, "IR_BEN_R", state)
    check = by_name(full_result)["primary_key_state"]
    assert not check.evaluated and check.passed and "later full delivery" in check.details


def test_a_late_full_delivery_is_checked_against_the_later_deliveries_that_stay_above_it(spark, settings, catalog):
    """A full delivery replaces what came before it, not an incremental one of a later date: a full delivery
    received after it (late, or again) joins the state beneath it, and their keys meet there. It said "full
    delivery: it replaces the current state", and nobody was told of the duplicates the projects then got."""
    state = CurrentState(spark, settings, catalog)
    first = Delivery(settings, catalog, "2024-01-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1)], mode="full")
    first.table("T_MCO22C", MCO_C_HEADER, [mco_c("1", NIR_A)], mode="full")
    first.table("T_MCO23C", MCO_C_HEADER, [mco_c("2", NIR_A)], mode="full")
    later = Delivery(settings, catalog, "2024-03-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_T, 1)],
                                                             mode="incremental")
    later.table("T_MCO23C", MCO_C_HEADER, [mco_c("3", NIR_T)], mode="incremental")
    for delivery in (first, later):
        for family in ("IR_BEN_R", "T_MCOaaC"):
            delivery.curate(spark, family, state)
        delivery.accept()
    late = Delivery(settings, catalog, "2024-02-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_B, 1), ben(NIR_T, 1)],
                                                            mode="full")
    late.table("T_MCO23C", MCO_C_HEADER, [mco_c("2", NIR_A), mco_c("3", NIR_T)], mode="full")
    (ben_result,) = late.curate(spark, "IR_BEN_R", state)
    check = by_name(ben_result)["primary_key_state"]
    assert (check.evaluated, check.failures, check.severity) == (True, 1, WARN)  # NIR_T of 2024-03-01 stays
    (mco_result,) = late.curate(spark, "T_MCOaaC", state)
    check = by_name(mco_result)["primary_key_state"]
    assert (check.evaluated, check.failures) == (True, 1)  # stay 3 of 2023; 2022 of 2024-01-01 is another year
    # Alone above nothing, a full delivery is still not checked against the state it replaces.
    last = Delivery(settings, catalog, "2024-04-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1)], mode="full")
    (last_result,) = last.curate(spark, "IR_BEN_R", state)
    check = by_name(last_result)["primary_key_state"]
    assert not check.evaluated and "full delivery: it replaces the current state" in check.details


def test_current_state_keeps_deliveries_whose_suffixes_have_the_same_value(settings, catalog, monkeypatch):
    """``_2`` and ``_02`` are two deliveries of one day: both count, in one order whatever the reports' listing,
    and the state once one is accepted still holds the other (its rows are no orphans of the first)."""
    from snds_assets.curation.state import Part
    from snds_assets.reception.manifest import delivery_order

    ids = ["2026-12-01_2", "2026-12-01_02"]
    order = ["2026-12-01_02", "2026-12-01_2"]
    assert sorted(ids, key=delivery_order) == sorted(ids[::-1], key=delivery_order) == order
    state = CurrentState(None, settings, catalog)
    for listed in (ids, ids[::-1]):
        parts = [Part(i, None, domain.INCREMENTAL) for i in sorted(listed, key=delivery_order)]
        monkeypatch.setattr(state, "parts", lambda family, exclude_delivery=None, parts=parts: [
            p for p in parts if p.delivery_id != exclude_delivery])
        for delivery_id in ids:
            mine = [p for p in parts if p.delivery_id == delivery_id]
            assert list(state.plan("ER_PRS_F", after=(delivery_id, mine))) == ["2026-12-01_02", "2026-12-01_2"]
    full = [Part(i, None, domain.FULL) for i in sorted(ids, key=delivery_order)]
    assert list(CurrentState.compose(full)) == ["2026-12-01_2"]


def test_current_state_from_the_reports_alone(settings, catalog):
    """Which partitions make up a family's state, from the reception reports (no Spark): same-day deliveries in
    suffix order (``_10`` after ``_9``, the order of the state's rows and of the deliveries an extract used); a
    PMSI year delivered full replaces that year only, incremental adds to it; a rejected delivery counts for
    nothing, even full."""
    ids = ["2026-12-01", "2026-12-01_9", "2026-12-01_10"]
    for delivery_id in ids:
        Delivery(settings, catalog, delivery_id).table("ER_PRS_F", ["DCT_ORD_NUM"], []).accept()
    Delivery(settings, catalog, "2026-12-02").table("ER_PRS_F", ["DCT_ORD_NUM"], [], mode="full").accept("rejected")

    def mco(delivery_id: str, *tables: tuple[str, str | None], status: str = "accepted") -> None:
        d = Delivery(settings, catalog, delivery_id)
        for name, mode in tables:
            d.table(name, MCO_C_HEADER, [], mode=mode)
        d.accept(status)

    mco("2024-01-01", ("T_MCO22C", None), ("T_MCO23C", None))  # full by default
    mco("2024-02-01", ("T_MCO23C", "incremental"))
    mco("2024-03-01", ("T_MCO23C", "full"))
    mco("2024-04-01", ("T_MCO23C", "incremental"))
    mco("2024-05-01", ("T_MCO22C", "full"), status="rejected")
    state = CurrentState(None, settings, catalog)
    assert state.deliveries("ER_PRS_F") == ids
    assert state.plan("T_MCOaaC") == {"2024-01-01": {2022}, "2024-03-01": {2023}, "2024-04-01": {2023}}
    assert list(state.plan("T_MCOaaC")) == ["2024-01-01", "2024-03-01", "2024-04-01"]


def test_a_damaged_report_is_named_with_what_to_run(settings, catalog):
    """Every state reads every report: one truncated by hand failed the reception of another delivery with a bare
    ``JSONDecodeError``, naming neither the file nor the command that writes it again."""
    from snds_assets.reception.report import ReportError

    Delivery(settings, catalog, "2026-12-01").table("ER_PRS_F", ["DCT_ORD_NUM"], []).accept()
    Delivery(settings, catalog, "2026-12-02").table("ER_PRS_F", ["DCT_ORD_NUM"], []).accept()
    path = Path(Lake(settings.lake).delivery_report("2026-12-02"))
    path.write_text(path.read_text()[:40])
    with pytest.raises(ReportError, match=r"2026-12-02\.json is not a readable reception report .*"
                                          r"run snds ingest 2026-12-02 to write it again"):
        CurrentState(None, settings, catalog).deliveries("ER_PRS_F")
    path.write_text("[]")
    with pytest.raises(ReportError, match="2026-12-02"):
        CurrentState(None, settings, catalog).deliveries("ER_PRS_F")


def test_a_curated_partition_damaged_by_hand_is_not_read_as_the_state(spark, settings, catalog):
    """A Parquet file removed or truncated under an accepted delivery's partition made an extraction read fewer
    rows, or none, and call itself complete: the state is read only when each partition holds the rows its report
    says were curated, else the error names the partition and the command that curates it again."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from snds_assets.curation.state import DamagedPartition

    lake = Lake(settings.lake)
    for delivery_id, rows in (("2026-12-01", 3), ("2026-12-02", 2)):
        report = {"delivery_id": delivery_id, "status": "accepted", "tables": {"ER_PRS_F": {
            "family": "ER_PRS_F", "status": "accepted", "mode": "incremental", "rows_curated": rows}}}
        path = Path(lake.delivery_report(delivery_id))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report))
        folder = Path(lake.curated("ER_PRS_F", delivery_id))
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"DCT_ORD_NUM": [f"{delivery_id}-{i}" for i in range(rows)]}),
                       folder / "part-00000.parquet")
    assert CurrentState(spark, settings, catalog).read("ER_PRS_F").count() == 5
    damaged = Path(lake.curated("ER_PRS_F", "2026-12-02")) / "part-00000.parquet"
    damaged.write_bytes(damaged.read_bytes()[:20])
    with pytest.raises(DamagedPartition, match=r"delivery_id=2026-12-02 of accepted delivery 2026-12-02 cannot be "
                                               r"read: run snds ingest 2026-12-02 to curate it again \(ArrowInvalid"):
        CurrentState(spark, settings, catalog).read("ER_PRS_F")
    damaged.unlink()
    with pytest.raises(DamagedPartition, match=r"delivery_id=2026-12-02 holds 0 rows where the report of accepted "
                                               r"delivery 2026-12-02 says 2 were curated"):
        CurrentState(spark, settings, catalog).read("ER_PRS_F")


def test_a_reception_does_not_check_against_a_damaged_state(spark, settings, catalog):
    """The state a reception checks keys against is matched with its reports too: with an earlier delivery's
    Parquet file removed, a key it held was no longer reported as already in the state (nor a foreign key found)."""
    from snds_assets.curation.state import DamagedPartition

    state = CurrentState(spark, settings, catalog)
    d1 = Delivery(settings, catalog, "2024-01-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1), ben(NIR_B, 1)],
                                                          mode="incremental")
    d1.curate(spark, "IR_BEN_R", state)
    d1.accept()
    path = Path(Lake(settings.lake).delivery_report("2024-01-01"))
    report = json.loads(path.read_text())
    report["tables"]["IR_BEN_R"]["rows_curated"] = 2
    path.write_text(json.dumps(report))
    for file in Path(Lake(settings.lake).curated("IR_BEN_R", "2024-01-01")).glob("*.parquet"):
        file.unlink()
    d2 = Delivery(settings, catalog, "2024-02-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_B, 1)], mode="incremental")
    with pytest.raises(DamagedPartition, match=r"delivery_id=2024-01-01 holds 0 rows where the report of accepted "
                                               r"delivery 2024-01-01 says 2 were curated"):
        d2.curate(spark, "IR_BEN_R", CurrentState(spark, settings, catalog))


def test_the_archive_of_identities_is_a_family_read_with_its_current_table(spark, settings, catalog):
    """IR_BEN_R_ARC has no schema of its own: it is curated with IR_BEN_R's, and persons are read from both."""
    assert catalog["IR_BEN_R_ARC"].columns == catalog["IR_BEN_R"].columns
    assert catalog["IR_BEN_R_ARC"].primary_key == catalog["IR_BEN_R"].primary_key == ("BEN_NIR_PSA", "BEN_RNG_GEM")
    state = CurrentState(spark, settings, catalog)
    d = (Delivery(settings, catalog, "2024-01-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1)])
         .table("IR_BEN_R_ARC", BEN_HEADER, [ben(NIR_B, 1), ben(NIR_T, 1), ben(NIR_T, 1)]))
    d.curate(spark, "IR_BEN_R", state)
    (arc,) = d.curate(spark, "IR_BEN_R_ARC", state)
    assert (arc.family, arc.rows_read, arc.rows_curated) == ("IR_BEN_R_ARC", 3, 3)
    assert by_name(arc)["primary_key"].failures == 1 and by_name(arc)["primary_key"].severity == ERROR
    d.accept()
    assert sorted(r["BEN_NIR_PSA"] for r in state.read("IR_BEN_R_ARC").collect()) == [NIR_B, NIR_T, NIR_T]
    assert sorted(r["BEN_NIR_PSA"] for r in beneficiary_rows(state).collect()) == [NIR_A, NIR_B, NIR_T, NIR_T]


def test_an_identity_found_only_in_the_archive_is_no_orphan(spark, settings, catalog):
    """Identity links to IR_BEN_R read IR_BEN_R_ARC with it; the archive of a delivery is curated first."""
    assert domain.fk_parents(catalog, catalog["IR_IMB_R"]) == ["IR_BEN_R", "IR_BEN_R_ARC"]
    imb = [f"{nir};1;{i};2020-01-15;;E11" for i, nir in enumerate([NIR_A, NIR_B, NIR_T])]
    d = (Delivery(settings, catalog, "2024-01-01").table("IR_BEN_R", BEN_HEADER, [ben(NIR_A, 1)])
         .table("IR_BEN_R_ARC", BEN_HEADER, [ben(NIR_B, 1)]).table("IR_IMB_R", IMB_HEADER, imb))
    state = CurrentState(spark, settings, catalog)
    for family in ("IR_BEN_R", "IR_BEN_R_ARC"):
        d.curate(spark, family, state)
    (result,) = d.curate(spark, "IR_IMB_R", state)
    fk = by_name(result)["foreign_key"]
    assert fk.failures == 1 and [s["BEN_NIR_PSA"] for s in fk.sample] == [NIR_T]  # NIR_B is in the archive
    assert "IR_BEN_R_ARC" in fk.details
    state.close()
    d.accept()
    later = Delivery(settings, catalog, "2024-02-01").table("IR_IMB_R", IMB_HEADER, imb, mode="full")
    (alone,) = later.curate(spark, "IR_IMB_R", CurrentState(spark, settings, catalog))  # parents from the state
    assert by_name(alone)["foreign_key"].failures == 1
    assert "the current state of IR_BEN_R and IR_BEN_R_ARC" in by_name(alone)["foreign_key"].details


def test_current_state_replaces_a_pmsi_year_only(spark, settings, catalog):
    state = CurrentState(spark, settings, catalog)
    d1 = Delivery(settings, catalog, "2024-01-01")
    d1.table("T_MCO22C", MCO_C_HEADER, [mco_c("1", NIR_A)]).table("T_MCO23C", MCO_C_HEADER, [mco_c("2", NIR_A)])
    d1.curate(spark, "T_MCOaaC", state)
    d1.accept()
    d2 = Delivery(settings, catalog, "2024-06-01").table("T_MCO23C", MCO_C_HEADER, [mco_c("3", NIR_A), mco_c("4", NIR_A)])
    d2.curate(spark, "T_MCOaaC", state)
    d2.accept()
    assert state.deliveries("T_MCOaaC") == ["2024-01-01", "2024-06-01"]
    rows = sorted((r[domain.YEAR_COLUMN], r["RSA_NUM"], r["DELIVERY_ID"]) for r in state.read("T_MCOaaC").collect())
    assert rows == [(2022, "1", "2024-01-01"), (2023, "3", "2024-06-01"), (2023, "4", "2024-06-01")]


def test_pmsi_keys_are_compared_within_their_year(spark, settings, catalog):
    """Stay numbers start again each year: stay 1 of 2023 is neither a key already in the state's 2022, nor a link
    to stay 1 of T_MCO22C (same-year links, SNDS.md)."""
    state = CurrentState(spark, settings, catalog)
    d1 = Delivery(settings, catalog, "2024-01-01").table("T_MCO22C", MCO_C_HEADER, [mco_c("1", NIR_A)])
    d1.curate(spark, "T_MCOaaC", state)
    d1.accept()
    d2 = Delivery(settings, catalog, "2024-02-01")
    d2.table("T_MCO22C", MCO_C_HEADER, [mco_c("1", NIR_A)], mode="incremental")
    d2.table("T_MCO23C", MCO_C_HEADER, [mco_c("1", NIR_A), mco_c("2", NIR_A)], mode="incremental")
    d2.table("T_MCO23B", MCO_B_HEADER, ["2A0000001;2;I10;3;2023"])
    d2.table("T_MCO22B", MCO_B_HEADER, ["2A0000001;2;I10;3;2022"])  # stay 2 exists in 2023 only
    by_year = {r.year: by_name(r)["primary_key_state"] for r in d2.curate(spark, "T_MCOaaC", state)}
    assert by_year[2022].failures == 1 and by_year[2023].evaluated and by_year[2023].passed
    fk = {r.year: by_name(r)["foreign_key"] for r in d2.curate(spark, "T_MCOaaB", state)}
    assert fk[2023].passed and fk[2022].failures == 1
    assert [s["RSA_NUM"] for s in fk[2022].sample] == ["2"]


# --- the state a delivery's keys can meet ---------------------------------------------------------------------
PHA_HEADER = [*domain.DCIR_KEYS, "PHA_ACT_PRU"]


def flow(month: str, order: int) -> str:
    """An ER_PRS_F line of the flow of ``month`` (YYYY-MM), treated on its second day."""
    return prs(order, "1").replace("2024-02-01", f"{month}-01", 1).replace("2024-01-20", f"{month}-02", 1)


def pha(month: str, order: int) -> str:
    return ";".join(flow(month, order).split(";")[:len(domain.DCIR_KEYS)] + ["1.5"])


def test_a_delivery_is_checked_against_the_state_partitions_its_keys_can_meet(spark, settings, catalog,
                                                                              monkeypatch):
    """A monthly DCIR delivery's keys and links hold its own flow dates: the earlier partitions whose footers say
    they hold other dates are not read (they were, every month, for the whole history), and the verdicts are
    those of the whole state."""
    monkeypatch.setattr(keys, "OBSERVED_HASH_ROWS", -1)  # ER_PRS_F is a large parent: anti-joined, not probed
    monkeypatch.setattr(keys, "PROBED_PARENT_ROWS", -1)
    state = CurrentState(spark, settings, catalog)
    for month, orders in (("2024-01", [1, 2]), ("2024-02", [1, 2, 3])):
        d = Delivery(settings, catalog, f"{month}-05")
        d.table("ER_PRS_F", PRS_HEADER, [flow(month, o) for o in orders], mode="incremental")
        d.curate(spark, "ER_PRS_F", state)
        d.accept()
    d3 = Delivery(settings, catalog, "2024-03-05")
    d3.table("ER_PRS_F", PRS_HEADER, [flow("2024-02", 3), flow("2024-03", 1)], mode="incremental")
    d3.table("ER_PHA_F", PHA_HEADER, [pha("2024-02", 2), pha("2024-02", 9), pha("2024-03", 1)], mode="incremental")
    read, hashed = [], []
    read_plan = state.read_plan
    monkeypatch.setattr(state, "read_plan", lambda family, kept, columns=None: read.append(
        (family, sorted(kept))) or read_plan(family, kept, columns))
    parent_hashes = keys.parent_hashes
    monkeypatch.setattr(keys, "parent_hashes", lambda rows, *a: hashed.append(rows) or parent_hashes(rows, *a))

    (result,) = d3.curate(spark, "ER_PRS_F", state)
    check = by_name(result)["primary_key_state"]
    assert check.evaluated and check.failures == 1  # February's order 3, delivered again
    assert [(s["FLX_DIS_DTD"], s["PRS_ORD_NUM"]) for s in check.sample] == [("2024-02-01", 3)]
    assert "1 of 2 other partition(s) of the state read" in check.details
    # January's keys cannot meet February's and March's: only February's partition is read
    assert [r for r in read if r[0] == "ER_PRS_F"] == [("ER_PRS_F", ["2024-02-05"])]

    (result,) = d3.curate(spark, "ER_PHA_F", state)
    fk = by_name(result)["foreign_key"]
    assert fk.evaluated and fk.failures == 1 and [s["PRS_ORD_NUM"] for s in fk.sample] == [9]
    assert "ER_PRS_F of this delivery and the current state (1 of 2 other partition(s)" in fk.details
    (rows,) = hashed
    scanned = {f.split("delivery_id=")[1].split("/")[0] for f in rows.inputFiles()}
    assert scanned == {"2024-02-05", "2024-03-05"}  # the parent's partitions January's cannot meet: not read

    d4 = Delivery(settings, catalog, "2024-04-05")  # a late line of January: January is read, and only it
    d4.table("ER_PRS_F", PRS_HEADER, [flow("2024-01", 2)], mode="incremental")
    read.clear()
    (result,) = d4.curate(spark, "ER_PRS_F", state)
    check = by_name(result)["primary_key_state"]
    assert check.failures == 1 and [r for r in read if r[0] == "ER_PRS_F"] == [("ER_PRS_F", ["2024-01-05"])]
    state.close()


def test_a_partitions_value_ranges_come_from_its_footers(tmp_path):
    """Dates (as days) and integers are ranged (nulls and a file lacking the column counted as nulls); strings are
    not, and an empty partition meets nothing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from snds_assets.reception.storage import ValueRange, parquet_summary

    def day(*ymd: int) -> int:
        return (date(*ymd) - date(1970, 1, 1)).days

    pq.write_table(pa.table({"D": pa.array([date(2024, 1, 5), None, date(2024, 1, 31)]),
                             "I": pa.array([3, 7, 5], pa.int32()), "S": ["a", "b", "c"]}),
                   tmp_path / "a.parquet", row_group_size=2)
    pq.write_table(pa.table({"D": [date(2023, 6, 1)], "I": pa.array([1], pa.int32()), "N": pa.array([4], pa.int64())}),
                   tmp_path / "b.parquet")
    summary = parquet_summary(str(tmp_path))
    assert summary.rows == 4 and summary.columns == {"D", "I", "S", "N"}
    assert summary.ranges == {"D": ValueRange(day(2023, 6, 1), day(2024, 1, 31), True, "DATE"),
                              "I": ValueRange(1, 7, False, "INT"), "N": ValueRange(4, 4, True, "INT")}
    assert not ValueRange(day(2024, 2, 1), day(2024, 2, 29), False, "DATE").meets(summary.ranges["D"])
    assert ValueRange(day(2024, 1, 31), day(2024, 2, 29), False, "DATE").meets(summary.ranges["D"])
    assert ValueRange(None, None, True).meets(summary.ranges["D"])  # a null meets a null
    assert not ValueRange(None, None, True).meets(summary.ranges["I"])
    assert ValueRange(1, 1, False, "INT").meets(summary.ranges["D"])  # typed otherwise: not comparable


def test_a_date_no_python_date_holds_leaves_the_state_readable(spark, settings, catalog):
    """Spark curates a date of year 0 (its range check fails, WARN): its partition's footers are read all the same
    (pyarrow's dates could not hold it), by the next reception and by whoever reads the state."""
    d1 = Delivery(settings, catalog, "2024-01-05")
    d1.table("ER_PRS_F", PRS_HEADER, [flow("2024-01", 1).replace("2024-01-10", "0000-01-01")], mode="incremental")
    (first,) = d1.curate(spark, "ER_PRS_F", CurrentState(spark, settings, catalog))
    assert first.rows_curated == 1 and by_name(first)["range"].failures == 1
    d1.accept()
    d2 = Delivery(settings, catalog, "2024-02-05")
    d2.table("ER_PRS_F", PRS_HEADER, [flow("2024-02", 1).replace("2024-01-10", "+10000-01-01"), flow("2024-01", 1)],
             mode="incremental")
    (second,) = d2.curate(spark, "ER_PRS_F", CurrentState(spark, settings, catalog))
    assert by_name(second)["primary_key_state"].failures == 1
    assert CurrentState(spark, settings, catalog).read("ER_PRS_F").count() == 1


def test_a_cycles_link_is_checked_against_the_years_its_rows_can_meet(spark, settings, catalog):
    """T_MCOaaC's link to T_MCOaaB (a cycle: checked once B of the delivery is curated) is a same-year link: the
    state's partitions of other years are not read, and the orphans are those of the whole state."""
    state = CurrentState(spark, settings, catalog)
    d1 = Delivery(settings, catalog, "2024-01-01").table("T_MCO22B", MCO_B_HEADER, ["2A0000001;1;I10;3;2022"])
    d1.curate(spark, "T_MCOaaB", state)
    d1.accept()
    d2 = Delivery(settings, catalog, "2024-02-01")
    d2.table("T_MCO23C", MCO_C_HEADER, [mco_c("1", NIR_A), mco_c("2", NIR_A)], mode="incremental")
    d2.table("T_MCO23B", MCO_B_HEADER, ["2A0000001;2;I10;3;2023"], mode="incremental")
    results = d2.curate(spark, "T_MCOaaC", state)
    d2.curate(spark, "T_MCOaaB", state)
    assert check_deferred_links(spark, settings, catalog, d2.manifest, results, state, ["T_MCOaaC", "T_MCOaaB"])
    fk = by_name(results[0])["foreign_key"]
    assert fk.failures == 1 and [s["RSA_NUM"] for s in fk.sample if s["link"].startswith("T_MCOaaB")] == ["1"]
    assert ("T_MCOaaB(ETA_NUM, RSA_NUM): 1 orphan row(s), checked against T_MCOaaB of this delivery and the current "
            "state (0 of 1 other partition(s) of the state read") in fk.details
    state.close()
