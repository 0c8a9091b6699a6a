"""Provision to research projects: cohort, extracts, project pseudonyms, report (SPEC §3, §5).

One small base whose expected cohort and extracts are known by construction:

    person  identities (pseudo-NIR, rank)  born  sex   what happens
    P1      (psa-a, 1), (psa-a2, 1)        1970  1     identified by NIR_ANO_17=psa-a; diagnosis U072 (T_MCOaaD)
                                                       on a stay linked by psa-a2 -> both; a stay with SEJ_RET '1'
                                                       and a stay before the period are not extracted
    P2, P3  twins (psa-t, 1), (psa-t, 2)   2000  2     psa-t alone is ambiguous; (psa-t, 2) identifies P3; a stay
                                                       on psa-t with U071 targets nobody
    P4      (psa-d, 1)                     1600  1     identified by psa-d; drug in period, but unknown birth year
                                                       fails the age filter -> identified only
    P5      (psa-e, 1)                     2010  2     diagnosis U071 on a good stay, 12 years old -> out
    P6      (psa-f, 1)                     1950  1     ALD E11 since 2015, end 1600-01-01 (ongoing) -> targeted
    P7      (psa-g, 1)                     1960  2     ALD E10 ended 2021-12-31 -> out
    P8      (psa-h, 1)                     1980  2     ALD E11 from 2023-12-31 (period's last day), no end -> targeted
    P9      (psa-i, 1)                     1990  1     drug only on an information-only line -> not targeted;
                                                       identified by BEN_IDT_ANO -> that line is extracted
    P10     (psa-j, 1)                     1985  2     drug on 2023-12-31 -> targeted; lines on 2021-12-31 and
                                                       2024-01-01 are not extracted, 2022-01-01 is
    P11     (psa-k, 1)                     1975  1     diagnosis U071 on a stay with NIR_RET '1' -> out
    P13     (psa-m, 1)                     1980  1     CCAM DEQP003 in ER_CAM_F, empty DPN_QLF -> targeted
    P14     (psa-n, 1)                     1970  2     CCAM DEQP003 in T_MCOaaA -> targeted
                                                       (a U071 stay of 2022 with P14's 2023 stay key is ignored)
    P15     (psa-o, 1)                     1970  1     its 2023 stay shares the key of P1's 2022 stay (U072): out
    P17     (psa-q, 1)                     1970  9     drug, sex 9 -> out
    P18     (psa-r, 1)                     2004  1     drug; 18 at the period start (edge of age min) -> targeted
"""
from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import shutil
from datetime import date, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dagster import DagsterInstance, materialize

from snds_assets import domain
from snds_assets.catalog import Catalog
from snds_assets.config import Settings
from snds_assets.lake import Lake
from snds_assets.provision import extract as extract_module
from snds_assets.provision.assets import PROJECT_REPORT_KEY, build_extract_assets
from snds_assets.provision.extract import Selector, extract_family, join_keys
from snds_assets.provision.identify import build_cohort
from snds_assets.provision.links import valid_pmsi_links
from snds_assets.provision.pseudonymize import project_secret, pseudonym, pseudonym_value, pseudonymize
from snds_assets.provision.request import RequestError, list_requests, load_request
from snds_assets.provision import storage
from snds_assets.provision.run import run_cohort, run_extract, run_project, write_parquet
from snds_assets.provision.source import FrameSource
from snds_assets.reception.assets import curated_key
from snds_assets.resources import SndsResource
from snds_assets.spark import SparkResource

PERIOD = (date(2022, 1, 1), date(2023, 12, 31))
SPARK_TYPES = {"string": "string", "integer": "bigint", "number": "double", "date": "date", "datetime": "timestamp_ntz",
               "boolean": "boolean", "year": "int", "yearmonth": "date"}

PERSONS = {  # IDT: [(NIR, rank)], birth year, sex
    "idt-p1": ([("psa-a", 1), ("psa-a2", 1)], 1970, 1),
    "idt-p2": ([("psa-t", 1)], 2000, 2),
    "idt-p3": ([("psa-t", 2)], 2000, 2),
    "idt-p4": ([("psa-d", 1)], 1600, 1),
    "idt-p5": ([("psa-e", 1)], 2010, 2),
    "idt-p6": ([("psa-f", 1)], 1950, 1),
    "idt-p7": ([("psa-g", 1)], 1960, 2),
    "idt-p8": ([("psa-h", 1)], 1980, 2),
    "idt-p9": ([("psa-i", 1)], 1990, 1),
    "idt-p10": ([("psa-j", 1)], 1985, 2),
    "idt-p11": ([("psa-k", 1)], 1975, 1),
    "idt-p13": ([("psa-m", 1)], 1980, 1),
    "idt-p14": ([("psa-n", 1)], 1970, 2),
    "idt-p15": ([("psa-o", 1)], 1970, 1),
    "idt-p17": ([("psa-q", 1)], 1970, 9),
    "idt-p18": ([("psa-r", 1)], 2004, 1),
}
# DCIR care lines: marker (PRS_NAT_REF) -> (NIR, rank, EXE_SOI_DTD, DPN_QLF)
PRS = {
    1: ("psa-a", 1, date(2022, 3, 1), 0),
    2: ("psa-a2", 1, date(2023, 5, 5), 0),
    3: ("psa-d", 1, date(2022, 6, 1), 0),
    4: ("psa-i", 1, date(2022, 7, 1), 71),
    5: ("psa-j", 1, date(2021, 12, 31), 0),
    6: ("psa-j", 1, date(2022, 1, 1), 0),
    7: ("psa-j", 1, date(2023, 12, 31), 0),
    8: ("psa-j", 1, date(2024, 1, 1), 0),
    9: ("psa-m", 1, date(2022, 2, 2), None),
    10: ("psa-t", 1, date(2022, 2, 2), 0),
    11: ("psa-t", 2, date(2022, 2, 3), 0),
    12: ("psa-q", 1, date(2022, 5, 5), 0),
    13: ("psa-r", 1, date(2022, 5, 6), 0),
}
DRUG, OTHER_DRUG = 3400930000001, 3400930000999
PHA = {101: (3, DRUG), 102: (4, DRUG), 103: (7, DRUG), 104: (7, OTHER_DRUG), 105: (12, DRUG), 106: (13, DRUG),
       107: (5, DRUG)}  # marker (PHA_ORD_NUM) -> (PRS marker, CIP13)
CAM = {201: (9, "DEQP003"), 202: (1, "YYYY001")}
# PMSI MCO stays: (ETA_NUM, RSA_NUM, year) -> (NIR_ANO_17, EXE_SOI_DTD, return-code overrides)
STAYS = {
    ("E1", "1", 2022): ("psa-a2", datetime(2022, 4, 1), {}),                     # P1, good
    ("E1", "2", 2022): ("psa-t", datetime(2022, 5, 1), {}),                      # twins: ambiguous
    ("E1", "3", 2022): ("psa-a", datetime(2022, 6, 1), {"SEJ_RET": "1"}),        # P1, bad link
    ("E2", "1", 2023): ("psa-n", datetime(2023, 6, 1), {}),                      # P14, good
    ("E1", "1", 2023): ("psa-o", datetime(2023, 2, 1), {}),                      # P15, good
    ("E1", "4", 2022): ("xxxxxxxxxxxxxxxxx", datetime(2022, 7, 1), {}),          # placeholder
    ("E2", "2", 2021): ("psa-a", datetime(2021, 6, 1), {}),                      # P1, before the period
    ("E2", "3", 2023): ("psa-k", datetime(2023, 3, 1), {"NIR_RET": "1"}),        # P11, bad link
    ("E3", "1", 2022): ("psa-e", datetime(2022, 8, 1), {}),                      # P5, good (but 12 years old)
}
B_ROWS = {  # stay key -> DGN_PAL
    ("E1", "1", 2022): "I10", ("E1", "2", 2022): "U071", ("E1", "3", 2022): "U071", ("E2", "1", 2023): "K35",
    ("E1", "1", 2023): "J18", ("E2", "1", 2022): "U071", ("E2", "2", 2021): "I10", ("E2", "3", 2023): "U071",
    ("E3", "1", 2022): "U071",
}
D_ROWS = {301: (("E1", "1", 2022), "U072"), 302: (("E1", "1", 2022), "Z000"), 303: (("E2", "3", 2023), "U071")}
A_ROWS = {401: (("E2", "1", 2023), "DEQP003"), 402: (("E1", "2", 2022), "DEQP003")}
IMB = {  # marker (IMB_ALD_NUM) -> (NIR, rank, code, start, end)
    501: ("psa-f", 1, "E11", date(2015, 1, 1), date(1600, 1, 1)),
    502: ("psa-g", 1, "E10", date(2010, 1, 1), date(2021, 12, 31)),
    503: ("psa-h", 1, "E110", date(2023, 12, 31), None),
    504: ("psa-a", 1, "E10", date(2000, 1, 1), date(2010, 1, 1)),
}

TABLES = ["IR_BEN_R", "IR_IMB_R", "IR_IBA_R", "KI_CCI_R", "ER_PRS_F", "ER_PHA_F", "ER_CAM_F",
          "T_MCOaaC", "T_MCOaaB", "T_MCOaaD", "T_MCOaaA"]
REQUEST = """\
id: {id}
title: Test project
period: {{start: 2022-01-01, end: 2023-12-31}}
tables: [{tables}]
columns:
  ER_PRS_F: [EXE_SOI_DTD, PRS_NAT_REF]
cohort:
  identifiers: {id}-ids.csv
  criteria:
    any_of:
      - diagnosis: {{icd10: [U071, U072]}}
      - drug: {{cip13: ["{drug}"]}}
      - act: {{ccam: [DEQP003]}}
      - ald: {{icd10: [E10, E11]}}
    age: {{min: 18, max: 120}}
    sex: [1, 2]
"""
IDENTIFIERS = """BEN_IDT_ANO;BEN_NIR_PSA;BEN_RNG_GEM;NIR_ANO_17
idt-p9;;;
;psa-t;;
;psa-t;2;
;;;psa-a
idt-unknown;;;
;;;psa-zzz
;psa-d;;
"""
EXPECTED_COHORT = {  # person -> (found by, criteria)
    "idt-p1": ("both", ["any_of[0]:diagnosis"]),
    "idt-p3": ("identified", []),
    "idt-p4": ("identified", []),
    "idt-p6": ("targeted", ["any_of[3]:ald"]),
    "idt-p8": ("targeted", ["any_of[3]:ald"]),
    "idt-p9": ("identified", []),
    "idt-p10": ("targeted", ["any_of[1]:drug"]),
    "idt-p13": ("targeted", ["any_of[2]:act"]),
    "idt-p14": ("targeted", ["any_of[2]:act"]),
    "idt-p18": ("targeted", ["any_of[1]:drug"]),
}


# --- The small base ----------------------------------------------------------------------------------------
def frame(spark, catalog: Catalog, family: str, rows: list[dict]):
    """A curated-like DataFrame, typed as curated: the key and identifier columns and those the rows fill.

    Only those columns, so that Spark compiles small plans (tests stay fast); the extraction does not depend
    on which other columns a family has.
    """
    table = catalog[family]
    used = {k for r in rows for k in r} | set(domain.required_columns(table))
    fields = [T.StructField(f.name, T._parse_datatype_string(SPARK_TYPES[domain.effective_type(table, f)]))
              for f in table.fields if f.name in used]
    if table.is_yearly:
        fields.append(T.StructField(domain.YEAR_COLUMN, T.IntegerType()))
    schema = T.StructType(fields)
    unknown = {k for r in rows for k in r} - set(schema.names)
    assert not unknown, f"test data names unknown columns of {family}: {unknown}"
    data = [tuple(r.get(name) for name in schema.names) for r in rows]
    return spark.createDataFrame(data, schema)


DCIR_KEY_VALUES = {"DCT_ORD_NUM": 1, "FLX_DIS_DTD": date(2024, 2, 1), "FLX_EMT_NUM": 1, "FLX_EMT_ORD": 0,
                   "FLX_EMT_TYP": 1, "FLX_TRT_DTD": date(2024, 1, 20), "ORG_CLE_NUM": "01C", "REM_TYP_AFF": 1}


def dcir_keys(marker: int) -> dict:
    return {**DCIR_KEY_VALUES, "PRS_ORD_NUM": marker}


def return_codes(overrides: dict) -> dict:
    codes = {c: "0" for c in domain.PMSI_RETURN_CODES}
    codes.update(overrides)
    return codes


def build_frames(spark, catalog: Catalog) -> dict:
    ben = [{"BEN_NIR_PSA": nir, "BEN_RNG_GEM": rank, "BEN_IDT_ANO": idt, "BEN_NIR_ANO": f"ano-{idt}",
            "ASS_NIR_ANO": f"ass-{idt}", "BEN_NAI_ANN": born, "BEN_SEX_COD": sex}
           for idt, (ids, born, sex) in PERSONS.items() for nir, rank in ids]
    prs = [{**dcir_keys(m), "BEN_NIR_PSA": nir, "BEN_RNG_GEM": rank, "EXE_SOI_DTD": d, "DPN_QLF": q,
            "PRS_NAT_REF": m, "PRS_ACT_QTE": 1.0} for m, (nir, rank, d, q) in PRS.items()]
    pha = [{**dcir_keys(prs_m), "PHA_ORD_NUM": m, "PHA_PRS_C13": cip} for m, (prs_m, cip) in PHA.items()]
    cam = [{**dcir_keys(prs_m), "CAM_ORD_NUM": m, "CAM_PRS_IDE": code} for m, (prs_m, code) in CAM.items()]
    mco_c = [{"ETA_NUM": e, "RSA_NUM": r, domain.YEAR_COLUMN: y, "NIR_ANO_17": nir, "EXE_SOI_DTD": d,
              "NIR_ANO_MAM": "mam-" + nir, **return_codes(over)} for (e, r, y), (nir, d, over) in STAYS.items()]
    mco_b = [{"ETA_NUM": e, "RSA_NUM": r, domain.YEAR_COLUMN: y, "DGN_PAL": dgn} for (e, r, y), dgn in B_ROWS.items()]
    mco_d = [{"ETA_NUM": e, "RSA_NUM": r, domain.YEAR_COLUMN: y, "DGN_ASS_NUM": m, "ASS_DGN": dgn}
             for m, ((e, r, y), dgn) in D_ROWS.items()]
    mco_a = [{"ETA_NUM": e, "RSA_NUM": r, domain.YEAR_COLUMN: y, "NBR_EXE_ACT": m, "CDC_ACT": act}
             for m, ((e, r, y), act) in A_ROWS.items()]
    imb = [{"BEN_NIR_PSA": nir, "BEN_RNG_GEM": rank, "IMB_ALD_NUM": m, "MED_MTF_COD": code, "IMB_ALD_DTD": s,
            "IMB_ALD_DTF": e} for m, (nir, rank, code, s, e) in IMB.items()]
    cci = [{"BEN_IDT_ANO": idt, "BEN_NIR_ANO": f"ano-{idt}", "CER_VER_NUM": n} for n, idt in ((1, "idt-p6"), (2, "idt-p7"))]
    iba = [{"BEN_IDT_ANO": idt, "ASS_NIR_ANO": f"ass-{idt}", "BEN_NAI_ANN": 1970} for idt in ("idt-p1", "idt-p2")]
    data = {"IR_BEN_R": ben, "ER_PRS_F": prs, "ER_PHA_F": pha, "ER_CAM_F": cam, "T_MCOaaC": mco_c,
            "T_MCOaaB": mco_b, "T_MCOaaD": mco_d, "T_MCOaaA": mco_a, "IR_IMB_R": imb, "KI_CCI_R": cci,
            "IR_IBA_R": iba}
    return {family: frame(spark, catalog, family, rows) for family, rows in data.items()}


RAW_PSEUDONYMS = ({idt for idt in PERSONS} | {f"ano-{idt}" for idt in PERSONS} | {f"ass-{idt}" for idt in PERSONS}
                  | {nir for ids, _, _ in PERSONS.values() for nir, _ in ids}
                  | {"mam-" + nir for nir, _, _ in STAYS.values()})


# --- Fixtures ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def catalog(reference_schemas) -> Catalog:
    return Catalog.load(reference_schemas)


@pytest.fixture(scope="module")
def source(spark, catalog) -> FrameSource:
    frames = {f: df.cache() for f, df in build_frames(spark, catalog).items()}
    return FrameSource(frames, delivery_id="2024-03-01")


def write_request(projects: Path, project_id: str, tables=TABLES, identifiers: str = IDENTIFIERS,
                  text: str | None = None) -> None:
    projects.mkdir(parents=True, exist_ok=True)
    body = text if text is not None else REQUEST.format(id=project_id, tables=", ".join(tables), drug=DRUG)
    (projects / f"{project_id}.yaml").write_text(body, encoding="utf-8")
    (projects / f"{project_id}-ids.csv").write_text(identifiers, encoding="utf-8")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("provision")
    settings = Settings.from_env(env={}, home=str(home))
    for pid in ("study-a", "study-b"):
        write_request(Path(settings.projects), pid)
    return settings


@pytest.fixture(scope="module")
def project(spark, env, catalog, source):
    """Project study-a run end to end once: cohort, every family, report."""
    request = load_request(env, catalog, "study-a")
    report = run_project(spark, env, catalog, request, source)
    return request, report


@pytest.fixture(scope="module")
def cohort(spark, env, catalog, source):
    request = load_request(env, catalog, "study-a")
    return build_cohort(spark, catalog, request, source)


def read_extract(spark, settings, project_id, family):
    return spark.read.parquet(Lake(settings.lake).project(project_id, family))


def label_key(secret: bytes, label: str) -> bytes:
    """A pseudonym family's key worked out here, not by the code under test (pseudonymize.py's derivation):
    ``HMAC-SHA256(secret, "snds_assets/project-pseudonym/" + label)``."""
    return hmac.new(secret, b"snds_assets/project-pseudonym/" + label.encode("utf-8"), hashlib.sha256).digest()


def keyed_hash(secret: bytes, label: str, value: str) -> str:
    """A project pseudonym worked out here: hex ``HMAC-SHA256(label_key, value)``."""
    return hmac.new(label_key(secret, label), value.encode("utf-8"), hashlib.sha256).hexdigest()


def nenq(settings, project_id, value, label="NUM_ENQ"):
    return keyed_hash(project_secret(settings, project_id), label, value)


# --- Identification ----------------------------------------------------------------------------------------------
def test_cohort_persons_and_how_they_were_found(cohort):
    result = cohort
    got = {r["BEN_IDT_ANO"]: (r["FOUND_BY"], list(r["CRITERIA"])) for r in result.cohort.collect()}
    assert got == EXPECTED_COHORT
    assert result.counts["persons"] == 10
    assert (result.counts["identified"], result.counts["targeted"], result.counts["both"]) == (4, 7, 1)
    # P4 (drug, unknown birth year) and P5 (12 years old) matched a criterion before the filters; P17 too (sex 9).
    assert result.counts["targeted_before_filters"] == 10
    assert result.counts["criteria"]["any_of[1]:drug"]["persons"] == 4  # P4, P10, P17, P18 (not P9: info only)
    # Every identity of the cohort's persons, and only those (P3's twin P2 is not there).
    ids = {(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"], r["BEN_IDT_ANO"], r["NIR_UNIQUE"]) for r in result.identities.collect()}
    assert ("psa-a", 1, "idt-p1", True) in ids and ("psa-a2", 1, "idt-p1", True) in ids
    assert ("psa-t", 2, "idt-p3", False) in ids and not any(i[2] == "idt-p2" for i in ids)
    assert len(ids) == 11


def test_identifiers_resolution(cohort):
    result = cohort
    got = {r["LINE"]: (r["METHOD"], r["STATUS"], r["PERSONS"], r["RESOLVED_IDT"]) for r in result.resolution.collect()}
    assert got == {
        2: ("BEN_IDT_ANO", "resolved", 1, "idt-p9"),
        3: ("BEN_NIR_PSA", "ambiguous", 2, None),
        4: ("BEN_NIR_PSA+BEN_RNG_GEM", "resolved", 1, "idt-p3"),
        5: ("NIR_ANO_17", "resolved", 1, "idt-p1"),
        6: ("BEN_IDT_ANO", "unknown", 0, None),
        7: ("NIR_ANO_17", "unknown", 0, None),
        8: ("BEN_NIR_PSA", "resolved", 1, "idt-p4"),
    }
    ids = result.counts["identifiers"]
    assert (ids["rows"], ids["resolved"], ids["ambiguous"], ids["unknown"]) == (7, 4, 1, 2)
    assert [u["LINE"] for u in result.unresolved] == [3, 6, 7]


def test_criteria_alone_and_all_of(spark, env, catalog, source, tmp_path):
    """Without identifiers only targeted persons; all_of needs every item; filters are inclusive."""
    text = REQUEST.format(id="crit", tables="IR_BEN_R, ER_PRS_F", drug=DRUG).replace("  identifiers: crit-ids.csv\n", "")
    text = text.replace("    any_of:", "    all_of: [{act: {ccam: [DEQP003]}}]\n    any_of:")
    path = tmp_path / "crit.yaml"
    path.write_text(text)
    from snds_assets.provision.request import parse_request

    request = parse_request(text, catalog, path)
    result = build_cohort(spark, catalog, request, source)
    got = {r["BEN_IDT_ANO"]: sorted(r["CRITERIA"]) for r in result.cohort.collect()}
    # DEQP003 (all_of) and one any_of item: P13 (DCIR act) and P14 (PMSI act) hold both, nobody else.
    assert got == {"idt-p13": ["all_of[0]:act", "any_of[2]:act"], "idt-p14": ["all_of[0]:act", "any_of[2]:act"]}
    assert result.resolution is None


def test_stay_counting_exclusions_and_the_wider_information_flag_do_not_apply_to_identification(spark, catalog):
    """SPEC §3: the stay-counting exclusions of SNDS.md (GHM 90*, SEJ_TYP 'B') do not apply to identification, and
    only DPN_QLF = 71 marks a line sent for information; PRS_DPN_QLP = 71 is wider (SNDS.md) and excludes nothing."""
    stay = {"ETA_NUM": "E9", "RSA_NUM": "9", domain.YEAR_COLUMN: 2022}
    rows = {
        "IR_BEN_R": [{"BEN_NIR_PSA": f"psa-{p}", "BEN_RNG_GEM": 1, "BEN_IDT_ANO": f"idt-{p}", "BEN_NAI_ANN": 1970,
                      "BEN_SEX_COD": 1} for p in ("p30", "p31", "p32")],
        "T_MCOaaC": [{**stay, "NIR_ANO_17": "psa-p30", "EXE_SOI_DTD": datetime(2022, 9, 1), **return_codes({})}],
        "T_MCOaaB": [{**stay, "DGN_PAL": "U071", "GRG_GHM": "90Z00Z", "SEJ_TYP": "B"}],
        "ER_PRS_F": [{**dcir_keys(31), "BEN_NIR_PSA": "psa-p31", "BEN_RNG_GEM": 1, "EXE_SOI_DTD": date(2022, 9, 1),
                      "DPN_QLF": 0, "PRS_DPN_QLP": 71},
                     {**dcir_keys(32), "BEN_NIR_PSA": "psa-p32", "BEN_RNG_GEM": 1, "EXE_SOI_DTD": date(2022, 9, 1),
                      "DPN_QLF": 71, "PRS_DPN_QLP": 71}],
        "ER_PHA_F": [{**dcir_keys(31), "PHA_ORD_NUM": 131, "PHA_PRS_C13": DRUG},
                     {**dcir_keys(32), "PHA_ORD_NUM": 132, "PHA_PRS_C13": DRUG}]}
    base = FrameSource({family: frame(spark, catalog, family, r) for family, r in rows.items()}, delivery_id="2024-03-01")
    from snds_assets.provision.request import parse_request

    text = ("id: excl\nperiod: {start: 2022-01-01, end: 2023-12-31}\ntables: [IR_BEN_R]\ncohort:\n  criteria:\n"
            f"    any_of: [{{diagnosis: {{icd10: [U071]}}}}, {{drug: {{cip13: ['{DRUG}']}}}}]\n")
    result = build_cohort(spark, catalog, parse_request(text, catalog, Path("excl.yaml")), base)
    got = {r["BEN_IDT_ANO"]: sorted(r["CRITERIA"]) for r in result.cohort.collect()}
    # P30: an error GHM and a type B stay still find them; P31: PRS_DPN_QLP = 71 alone, a reimbursed line; not P32:
    # DPN_QLF = 71, information only.
    assert got == {"idt-p30": ["any_of[0]:diagnosis"], "idt-p31": ["any_of[1]:drug"]}, got


# --- Extraction --------------------------------------------------------------------------------------------------
def test_extract_rows_by_construction(spark, env, project):
    request, report = project
    pid = request.id

    def markers(family, column):
        return sorted(r[0] for r in read_extract(spark, env, pid, family).select(column).collect())

    assert markers("ER_PRS_F", "PRS_NAT_REF") == [1, 2, 3, 4, 6, 7, 9, 11, 13]
    assert markers("ER_PHA_F", "PHA_ORD_NUM") == [101, 102, 103, 104, 106]
    assert markers("ER_CAM_F", "CAM_ORD_NUM") == [201, 202]
    assert markers("IR_IMB_R", "IMB_ALD_NUM") == [501, 503, 504]
    assert markers("KI_CCI_R", "CER_VER_NUM") == [1]

    def stays(family):
        df = read_extract(spark, env, pid, family)
        return sorted((r["ETA_NUM"], r["RSA_NUM"], r[domain.YEAR_COLUMN]) for r in df.collect())

    assert stays("T_MCOaaC") == [("E1", "1", 2022), ("E2", "1", 2023)]
    assert stays("T_MCOaaB") == [("E1", "1", 2022), ("E2", "1", 2023)]
    assert stays("T_MCOaaD") == [("E1", "1", 2022), ("E1", "1", 2022)]
    assert stays("T_MCOaaA") == [("E2", "1", 2023)]

    # Identities under NUM_ENQ: P1's two pseudo-NIRs, P3's rank only (not the twin P2's).
    ben = read_extract(spark, env, pid, "IR_BEN_R")
    got = sorted((r["NUM_ENQ"], r["BEN_RNG_GEM"], r["NUM_ENQ_IDT"]) for r in ben.collect())
    expected = sorted((nenq(env, pid, nir), rank, nenq(env, pid, idt, "NUM_ENQ_IDT"))
                      for idt in EXPECTED_COHORT for nir, rank in PERSONS[idt][0])
    assert got == expected and len(got) == 11
    iba = read_extract(spark, env, pid, "IR_IBA_R")
    assert [r["NUM_ENQ_IDT"] for r in iba.collect()] == [nenq(env, pid, "idt-p1", "NUM_ENQ_IDT")]
    # The same pseudo-NIR has the same NUM_ENQ in DCIR (BEN_NIR_PSA) and PMSI (NIR_ANO_17).
    mco = {r["NUM_ENQ"] for r in read_extract(spark, env, pid, "T_MCOaaC").collect()}
    prs = {r["NUM_ENQ"] for r in read_extract(spark, env, pid, "ER_PRS_F").collect()}
    assert nenq(env, pid, "psa-a2") in mco & prs


def test_granted_columns_only(spark, env, project):
    request, _ = project
    prs = read_extract(spark, env, request.id, "ER_PRS_F")
    assert set(prs.columns) == {"EXE_SOI_DTD", "PRS_NAT_REF", "NUM_ENQ", "BEN_RNG_GEM", *domain.DCIR_KEYS}
    for family in request.tables:
        cols = read_extract(spark, env, request.id, family).columns
        assert "DELIVERY_ID" not in cols
        assert not set(cols) & set(domain.PROJECT_PSEUDONYMS), family
    mco = read_extract(spark, env, request.id, "T_MCOaaD")
    assert {"ETA_NUM", "RSA_NUM", domain.YEAR_COLUMN} <= set(mco.columns)


def test_join_keys_keep_each_row_joinable(catalog):
    """A column list never drops what tells rows apart: SSR weekly rows keep their week (RHS_NUM)."""
    assert join_keys(catalog["T_SSRaaB"]) == ("ETA_NUM", "RHA_NUM", "RHS_NUM", domain.YEAR_COLUMN)
    assert join_keys(catalog["T_SSRaaC"]) == ("ETA_NUM", "RHA_NUM", domain.YEAR_COLUMN)
    assert join_keys(catalog["T_MCOaaD"]) == ("ETA_NUM", "RSA_NUM", domain.YEAR_COLUMN)
    assert join_keys(catalog["ER_PHA_F"]) == domain.DCIR_KEYS


def test_every_dcir_table_keeps_the_nine_keys(reference_catalog):
    """ER_DCT_F joins ER_PRS_F on seven keys, and a column list kept those seven only: the nine DCIR keys are
    always kept, whichever of them a table has."""
    assert join_keys(reference_catalog["ER_DCT_F"]) == domain.DCIR_KEYS
    for table in reference_catalog:
        link = domain.parent_link(table)
        if link is not None and link.parent == domain.DCIR_CENTRAL:
            assert set(domain.DCIR_KEYS) & set(table.columns) <= set(join_keys(table)), table.name


def test_the_archive_of_identities_finds_persons_and_is_extracted_when_listed(spark, catalog, source, tmp_path):
    """A person known only to IR_BEN_R_ARC is identified, the archive's delivery counted among the cohort's
    sources; a project listing the archive gets its rows."""
    ben = source.read("IR_BEN_R").drop("DELIVERY_ID")
    p1 = ben.where("BEN_IDT_ANO = 'idt-p1'").limit(1)
    arc = (p1.withColumn("BEN_NIR_PSA", F.lit("psa-old"))
           .unionByName(p1.withColumn("BEN_NIR_PSA", F.lit("psa-99")).withColumn("BEN_IDT_ANO", F.lit("idt-p99")))
           .unionByName(p1.withColumn("BEN_NIR_PSA", F.lit("psa-77")).withColumn("BEN_IDT_ANO", F.lit("idt-p77"))))
    archived = FrameSource({**source.frames, "IR_BEN_R_ARC": arc}, delivery_id="2024-05-01")
    settings = Settings.from_env(env={}, home=str(tmp_path))
    projects = Path(settings.projects)
    projects.mkdir(parents=True)
    (projects / "arc.yaml").write_text("id: arc\nperiod: {start: 2022-01-01, end: 2023-12-31}\n"
                                       "tables: [IR_BEN_R, IR_BEN_R_ARC]\ncohort: {identifiers: arc-ids.csv}\n")
    (projects / "arc-ids.csv").write_text("BEN_IDT_ANO,BEN_NIR_PSA\nidt-p99,\n,psa-old\n")
    request = load_request(settings, catalog, "arc")
    result = build_cohort(spark, catalog, request, archived)
    assert sorted(r["BEN_IDT_ANO"] for r in result.cohort.collect()) == ["idt-p1", "idt-p99"]
    # The archive's delivery is one the cohort was built from (the report lists it among the deliveries used).
    assert result.sources["IR_BEN_R_ARC"] == ["2024-05-01"] and result.sources["IR_BEN_R"] == ["2024-03-01"]
    selector = Selector(catalog, request, archived, result)
    got = {r["BEN_NIR_PSA"] for r in selector.rows("IR_BEN_R_ARC").collect()}
    assert got == {"psa-old", "psa-99"}  # not idt-p77, outside the cohort
    assert {r["BEN_IDT_ANO"] for r in selector.rows("IR_BEN_R").collect()} == {"idt-p1"}
    # psa-old (P1's former identity) and psa-99 are the archive's alone: the project lists it, nothing is missed.
    assert result.counts["identities_archived"] == 2


def test_a_project_not_listing_the_archive_is_told_what_it_misses(spark, catalog, source, tmp_path):
    """A cohort person's former identity is only in IR_BEN_R_ARC: a project granted IR_BEN_R but not the archive
    gets that identity's care with no IR_BEN_R row naming its person, which its report says (a count, the JSON;
    a sentence, the readable report). Without an archive delivered, or with the archive listed, it says nothing."""
    from snds_assets.provision.report import archive_not_requested, build_report, render_html

    frames = {family: df.drop("DELIVERY_ID") for family, df in source.frames.items()}
    ben = frames["IR_BEN_R"]
    former = ben.where("BEN_IDT_ANO = 'idt-p1'").limit(1).withColumn("BEN_NIR_PSA", F.lit("psa-old"))
    archived = FrameSource({**frames, "IR_BEN_R_ARC": former}, delivery_id="2024-05-01")
    settings = Settings.from_env(env={}, home=str(tmp_path))
    projects = Path(settings.projects)
    projects.mkdir(parents=True)
    for name, tables in (("ben", "[IR_BEN_R, ER_PRS_F]"), ("both", "[IR_BEN_R, IR_BEN_R_ARC]")):
        (projects / f"{name}.yaml").write_text(f"id: {name}\nperiod: {{start: 2022-01-01, end: 2023-12-31}}\n"
                                               f"tables: {tables}\ncohort: {{identifiers: ids.csv}}\n")
    (projects / "ids.csv").write_text("BEN_IDT_ANO\nidt-p1\n")
    request = load_request(settings, catalog, "ben")
    report = build_report(request, run_cohort(spark, settings, catalog, request, archived), None)
    assert report["cohort"]["identities_archived"] == 1
    note = archive_not_requested(report)
    assert note == ("1 of the cohort's identities are only in IR_BEN_R_ARC, which the request does not list: their "
                    "rows in the extracts have no IR_BEN_R row naming their person (list IR_BEN_R_ARC in the "
                    "request's tables to hand them out)")
    assert f"<p class='failed'>{html.escape(note)}.</p>" in render_html(report)
    listed = load_request(settings, catalog, "both")
    report = build_report(listed, run_cohort(spark, settings, catalog, listed, archived), None)
    assert report["cohort"]["identities_archived"] == 1 and archive_not_requested(report) is None
    current = FrameSource(frames, delivery_id="2024-03-01")
    report = build_report(request, run_cohort(spark, settings, catalog, request, current), None)
    assert report["cohort"]["identities_archived"] == 0 and archive_not_requested(report) is None
    assert "IR_BEN_R_ARC" not in render_html(report)


def test_an_identity_without_person_makes_its_pseudo_nir_name_no_one(spark, catalog, source, tmp_path):
    """An IR_BEN_R row lacking BEN_IDT_ANO is an unknown beneficiary sharing psa-a2 with P1: psa-a2 no longer
    names P1 alone, so neither an identifier nor P1's U072 stay (linked by psa-a2) is given to P1."""
    frames = {family: df.drop("DELIVERY_ID") for family, df in source.frames.items()}
    ben = frames["IR_BEN_R"]
    blank = (ben.where("BEN_NIR_PSA = 'psa-a2'").withColumn("BEN_RNG_GEM", F.lit(2))
             .withColumn("BEN_IDT_ANO", F.lit(None).cast("string")))
    base = FrameSource({**frames, "IR_BEN_R": ben.unionByName(blank)}, delivery_id="2024-03-01")
    settings = Settings.from_env(env={}, home=str(tmp_path))
    projects = Path(settings.projects)
    projects.mkdir(parents=True)
    (projects / "blank.yaml").write_text(
        "id: blank\nperiod: {start: 2022-01-01, end: 2023-12-31}\ntables: [IR_BEN_R, T_MCOaaC]\n"
        "cohort:\n  identifiers: blank-ids.csv\n  criteria: {any_of: [{diagnosis: {icd10: [U072]}}]}\n")
    (projects / "blank-ids.csv").write_text("BEN_IDT_ANO,BEN_NIR_PSA,BEN_RNG_GEM\nidt-p1,,\n,psa-a2,\n,psa-a2,2\n")
    result = build_cohort(spark, catalog, load_request(settings, catalog, "blank"), base)
    assert [(r["LINE"], r["STATUS"]) for r in result.resolution.orderBy("LINE").collect()] == [
        (2, "resolved"), (3, "ambiguous"), (4, "unknown")]
    assert [(r["BEN_IDT_ANO"], r["FOUND_BY"]) for r in result.cohort.collect()] == [("idt-p1", "identified")]
    unique = {r["BEN_NIR_PSA"]: r["NIR_UNIQUE"] for r in result.identities.collect()}
    assert unique == {"psa-a": True, "psa-a2": False}
    selector = Selector(catalog, load_request(settings, catalog, "blank"), base, result)
    assert selector.rows("T_MCOaaC").count() == 0  # P1's stays are linked by psa-a2 (in the period) only


def test_extract_family_alone_with_cohort_dataframe(spark, env, catalog, source):
    """The library call the benchmark uses: a bare cohort DataFrame, no lake."""
    request = load_request(env, catalog, "study-a")
    cohort = spark.createDataFrame([("idt-p10",), ("idt-p1",)], "BEN_IDT_ANO string")
    prs = extract_family(spark, catalog, request, "ER_PRS_F", cohort, source)
    assert sorted(r["PRS_NAT_REF"] for r in prs.collect()) == [1, 2, 6, 7]
    selector = Selector(catalog, request, source, cohort)
    pha = extract_family(spark, catalog, request, "ER_PHA_F", cohort, source, selector=selector)
    assert sorted(r["PHA_ORD_NUM"] for r in pha.collect()) == [103, 104]
    with pytest.raises(ValueError, match="not in the perimeter"):
        extract_family(spark, catalog, request, "T_SSRaaC", cohort, source)


def test_checks_and_report(env, project):
    request, report = project
    lake = Lake(env.lake)
    saved = json.loads(Path(lake.project_report(request.id)).read_text())
    assert saved["status"] == "complete" and saved["failed_checks"] == []
    assert saved["cohort"]["size"] == 10
    assert saved["cohort"]["found_by"] == {"identified": 3, "targeted": 6, "both": 1}
    ids = saved["identifiers"]
    assert (ids["rows"], ids["resolved"], ids["ambiguous"], ids["unknown"]) == (7, 4, 1, 2)
    assert [u["line"] for u in ids["unresolved"]] == [3, 6, 7]
    rows = {f: t["rows"] for f, t in saved["tables"].items()}
    assert rows == {"IR_BEN_R": 11, "IR_IMB_R": 3, "IR_IBA_R": 1, "KI_CCI_R": 1, "ER_PRS_F": 9, "ER_PHA_F": 5,
                    "ER_CAM_F": 2, "T_MCOaaC": 2, "T_MCOaaB": 2, "T_MCOaaD": 2, "T_MCOaaA": 1}
    assert saved["deliveries_used"] == ["2024-03-01"]
    for family, table in saved["tables"].items():
        verdicts = {c["name"]: (c["passed"], c["evaluated"]) for c in table["checks"]}
        assert all(passed for passed, _ in verdicts.values()), (family, verdicts)
        assert verdicts["belongs_to_cohort"] == (True, True), family
    assert {c["name"]: c["passed"] for c in saved["cohort"]["checks"]} == {
        "unresolved_identifiers": False, "no_snds_pseudonym": True}
    page = Path(lake.project_report(request.id, "html")).read_text()
    assert "<svg" in page and "<script" not in page and "ER_PRS_F" in page
    # The report names no SNDS pseudonym, not even the unresolved identifiers' values.
    text = json.dumps(saved) + page
    assert not [v for v in RAW_PSEUDONYMS | {"idt-unknown", "psa-zzz"} if v in text]
    restricted = json.loads(Path(lake.restricted(request.id, "identifiers.json")).read_text())
    assert {u["LINE"]: u.get("BEN_IDT_ANO") or u.get("NIR_ANO_17") or u.get("BEN_NIR_PSA")
            for u in restricted["unresolved"]} == {3: "psa-t", 6: "idt-unknown", 7: "psa-zzz"}


def test_the_correspondence_table_names_every_cohort_identity_under_its_project_pseudonyms(env, project):
    """SPEC §3: the correspondence table, under ``<lake>/restricted/projects/<P>/`` only, maps each identity of every
    cohort person (BEN_IDT_ANO, BEN_NIR_PSA and rank, BEN_NIR_ANO) to the NUM_ENQ_IDT, NUM_ENQ and NUM_ENQ_ANO its
    extracts carry: the one way back from a project pseudonym to the SNDS."""
    request, _ = project
    pid = request.id
    rows = pq.read_table(Path(env.lake) / "restricted" / "projects" / pid / "correspondence").to_pylist()
    table = {(r["BEN_IDT_ANO"], r["BEN_NIR_PSA"], int(r["BEN_RNG_GEM"])): r for r in rows}
    assert len(rows) == len(table) == 11
    assert set(table) == {(idt, nir, rank) for idt in EXPECTED_COHORT for nir, rank in PERSONS[idt][0]}
    for (idt, nir, _), row in table.items():
        assert row["BEN_NIR_ANO"] == f"ano-{idt}"
        assert (row["NUM_ENQ_IDT"], row["NUM_ENQ"], row["NUM_ENQ_ANO"]) == (
            nenq(env, pid, idt, "NUM_ENQ_IDT"), nenq(env, pid, nir), nenq(env, pid, f"ano-{idt}", "NUM_ENQ_ANO"))
    # The extracts' identities are the table's, and every project pseudonym of any extract is found in it.
    ben = pq.read_table(Lake(env.lake).project(pid, "IR_BEN_R")).to_pylist()
    assert sorted((r["NUM_ENQ"], int(r["BEN_RNG_GEM"]), r["NUM_ENQ_IDT"], r["NUM_ENQ_ANO"]) for r in ben) == sorted(
        (r["NUM_ENQ"], int(r["BEN_RNG_GEM"]), r["NUM_ENQ_IDT"], r["NUM_ENQ_ANO"]) for r in rows)
    known = {column: {r[column] for r in rows} for column in ("NUM_ENQ", "NUM_ENQ_IDT", "NUM_ENQ_ANO")}
    found = 0
    for family in [*request.tables, "cohort"]:
        extract = pq.read_table(Lake(env.lake).project(pid, family)).to_pylist()
        for column, values in known.items():
            used = {r[column] for r in extract if column in r and r[column] is not None}
            assert used <= values, (family, column, used - values)
            found += len(used)
    assert found > 30


@pytest.mark.parametrize("granted", ["EXE_SOI_DTD, PRS_NAT_REF", "PRS_NAT_REF"], ids=["date-granted", "date-not-granted"])
def test_in_period_catches_rows_a_faulty_selection_let_through(spark, env, catalog, source, monkeypatch, granted):
    """The check reads what the project receives (or, when the care date is not granted, the selected rows), so
    it fails if the selection let rows outside the period through: P10's lines of 2021-12-31 and 2024-01-01."""
    pid = "study-c" if "," in granted else "study-d"
    write_request(Path(env.projects), pid, text=REQUEST.replace("[EXE_SOI_DTD, PRS_NAT_REF]", f"[{granted}]").format(
        id=pid, tables=", ".join(TABLES), drug=DRUG))
    request = load_request(env, catalog, pid)
    run_cohort(spark, env, catalog, request, source)
    check = {c.name: c for c in run_extract(spark, env, catalog, request, "ER_PRS_F", source)["checks"]}["in_period"]
    assert check.evaluated and check.passed and check.columns == ["EXE_SOI_DTD"]
    assert ("of the extract" in check.details) == ("," in granted)

    monkeypatch.setattr(extract_module, "dated_rows", lambda table, df, *a, **k: df)  # the period forgotten
    info = run_extract(spark, env, catalog, request, "ER_PRS_F", source)
    check = {c.name: c for c in info["checks"]}["in_period"]
    assert not check.passed and check.failures == 2 and check.severity == "ERROR"
    assert info["rows"] == 9 + 2


def test_an_empty_extract_is_written_and_counted(spark, env, catalog, source):
    """A family with no row for the cohort (no care in a period of 2010): its extract's counts, observed during the
    write, were lost once the rows were reordered (adaptive execution replaced the empty stage) and the run failed
    on "assertion failed"."""
    write_request(Path(env.projects), "study-e", text=REQUEST.replace("2022-01-01, end: 2023-12-31", "2010-01-01, "
                  "end: 2010-12-31").format(id="study-e", tables=", ".join(TABLES), drug=DRUG))
    request = load_request(env, catalog, "study-e")
    run_cohort(spark, env, catalog, request, source)
    info = run_extract(spark, env, catalog, request, "ER_PRS_F", source)
    checks = {c.name: c for c in info["checks"]}
    assert (info["status"], info["rows"], info["deliveries"]) == ("extracted", 0, [])
    assert checks["row_count"].passed and checks["in_period"].passed
    assert read_extract(spark, env, "study-e", "ER_PRS_F").count() == 0


def _project_values(root: Path) -> list:
    values = []
    for path in root.rglob("*.parquet"):
        table = pq.read_table(path)
        for column in table.columns:
            values.extend(v for v in column.to_pylist() if v is not None)
    return values


def _flatten(values):
    for v in values:
        if isinstance(v, list):
            yield from _flatten(v)
        else:
            yield v


def test_no_snds_pseudonym_nor_secret_in_the_project_space(env, project):
    request, _ = project
    lake = Lake(env.lake)
    root = Path(lake.project(request.id))
    values = {str(v) for v in _flatten(_project_values(root))}
    assert values, "the project space holds data"
    assert not values & RAW_PSEUDONYMS
    secret = project_secret(env, request.id)
    assert not values & {secret.hex(), secret.hex().upper()}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret not in data and secret.hex().encode() not in data, path
    # The secret lives under restricted/ only, readable by its owner only.
    secret_file = Path(lake.restricted(request.id, "secret.key"))
    assert secret_file.read_bytes() == secret and oct(secret_file.stat().st_mode & 0o777) == "0o600"
    assert not [p for p in Path(env.lake).rglob("*") if p.is_file() and "restricted" not in p.parts
                and secret in p.read_bytes()]


def test_a_pseudonym_of_someone_outside_the_cohort_fails_the_extract_that_carries_it(spark, catalog, source,
                                                                                     tmp_path):
    """A delivery can carry a pseudonym in a column the domain does not declare: here an ALD row of P6 (in the
    cohort) whose code holds psa-e, the pseudo-NIR of P5 (not in it). The extract would hand it out as delivered;
    no_snds_pseudonym looks for the pseudonyms of every identity of the state, not only the cohort's, and fails.
    The extract is then withheld: kept under restricted/ for the operator, no longer in the project's space (it was
    left there, marked "extracted", a folder one could hand over), the earlier extract of the family removed too."""
    from snds_assets.provision.report import build_report
    from snds_assets.provision.run import collect_infos

    frames = {family: df.drop("DELIVERY_ID") for family, df in source.frames.items()}
    leak = frame(spark, catalog, "IR_IMB_R", [{"BEN_NIR_PSA": "psa-f", "BEN_RNG_GEM": 1, "IMB_ALD_NUM": 505,
                                                "MED_MTF_COD": "psa-e", "IMB_ALD_DTD": date(2016, 1, 1),
                                                "IMB_ALD_DTF": None}])
    base = FrameSource({**frames, "IR_IMB_R": frames["IR_IMB_R"].unionByName(leak)}, delivery_id="2024-03-01")
    settings = Settings.from_env(env={}, home=str(tmp_path))
    write_request(Path(settings.projects), "leak")
    request = load_request(settings, catalog, "leak")
    run_cohort(spark, settings, catalog, request, base)
    lake = Lake(settings.lake)
    clean = FrameSource(frames, delivery_id="2024-03-01")
    assert run_extract(spark, settings, catalog, request, "IR_IMB_R", clean)["status"] == "extracted"
    assert Path(lake.project("leak", "IR_IMB_R")).is_dir()
    info = run_extract(spark, settings, catalog, request, "IR_IMB_R", base)
    check = next(c for c in info["checks"] if c.name == "no_snds_pseudonym")
    assert not check.passed and check.failures == 1 and check.columns == ["MED_MTF_COD"] and check.severity == "ERROR"
    assert check.details == "1 text value(s) are or hold SNDS pseudonyms: MED_MTF_COD"
    assert info["status"] == "withheld (no_snds_pseudonym failed)" and info["path"] == lake.withheld("leak", "IR_IMB_R")
    assert not Path(lake.project("leak", "IR_IMB_R")).exists()
    assert not [p for p in Path(lake.project("leak")).rglob("*") if "IR_IMB_R" in p.name]
    withheld = spark.read.parquet(lake.withheld("leak", "IR_IMB_R"))
    assert "psa-e" in {r["MED_MTF_COD"] for r in withheld.collect()}
    info = run_extract(spark, settings, catalog, request, "IR_BEN_R", base)
    assert next(c for c in info["checks"] if c.name == "no_snds_pseudonym").passed
    assert info["status"] == "extracted"
    report = build_report(request, *collect_infos(settings, request))
    assert report["tables"]["IR_IMB_R"]["status"] == "withheld (no_snds_pseudonym failed)"
    assert report["status"] == "failed" and report["failed_checks"] == ["IR_IMB_R: no_snds_pseudonym"]
    # Extracted again from a state without the leak: handed out, and the withheld copy gone.
    assert run_extract(spark, settings, catalog, request, "IR_IMB_R", clean)["status"] == "extracted"
    assert Path(lake.project("leak", "IR_IMB_R")).is_dir() and not Path(lake.withheld("leak", "IR_IMB_R")).exists()


def test_a_pseudonym_written_in_a_sentence_is_found(spark):
    """no_snds_pseudonym matched whole values only: `VOIR CCFF306F529A9949S MERE` in a free-text field went to the
    project, the check passed. A value is counted once however many pseudonyms it holds; a longer word that merely
    contains one is no pseudonym."""
    from snds_assets.provision.run import _pseudonym_values

    raw = spark.createDataFrame([("CCFF306F529A9949S",), ("4F8FA48146B156ABV",), ("psa-e",)], "v string")
    df = spark.createDataFrame([
        ("VOIR CCFF306F529A9949S MERE", "A12", 1),
        ("CCFF306F529A9949S/4F8FA48146B156ABV", None, 2),
        ("XCCFF306F529A9949S", "psa-e", 3),
        ("ras", "4F8FA48146B156ABV", 4),
        (None, "(4F8FA48146B156ABV)", 5),
    ], "ECD_CAU_LIB string, CODE string, N int")
    assert _pseudonym_values(df, raw) == (5, ["CODE", "ECD_CAU_LIB"])
    assert _pseudonym_values(df.where("N = 3").select("ECD_CAU_LIB"), raw) == (0, [])


def test_a_column_unknown_to_the_catalog_is_withheld_and_reported(spark, catalog, source, tmp_path):
    """CNAM may deliver a column the catalog does not know (curated as text, SPEC §2): nothing tells whether it holds
    a pseudonym, so no extract hands it out, even to a request granting every column; the extract's info, its
    granted_columns check and the project report name it, so that the project learns it exists."""
    from snds_assets.provision.report import build_report, render_html

    frames = {family: df.drop("DELIVERY_ID") for family, df in source.frames.items()}
    base = FrameSource({**frames, "IR_IMB_R": frames["IR_IMB_R"].withColumn("IMB_NEW_COD", F.lit("x"))},
                       delivery_id="2024-03-01")
    settings = Settings.from_env(env={}, home=str(tmp_path))
    write_request(Path(settings.projects), "new-col")
    request = load_request(settings, catalog, "new-col")
    cohort = run_cohort(spark, settings, catalog, request, base)
    info = run_extract(spark, settings, catalog, request, "IR_IMB_R", base)
    assert "IMB_NEW_COD" not in read_extract(spark, settings, "new-col", "IR_IMB_R").columns
    assert info["columns_withheld"] == ["IMB_NEW_COD"]
    check = next(c for c in info["checks"] if c.name == "granted_columns")
    assert check.passed and check.details == "granted: all columns; not handed out, unknown to the catalog: IMB_NEW_COD"
    # The lake's own columns (DELIVERY_ID, a PMSI family's year) are not counted as delivered ones.
    mco = run_extract(spark, settings, catalog, request, "T_MCOaaC", base)
    assert mco["columns_withheld"] == [] and domain.YEAR_COLUMN in mco["columns"]
    assert next(c for c in mco["checks"] if c.name == "granted_columns").details == "granted: all columns"
    report = build_report(request, cohort, {"IR_IMB_R": info, "T_MCOaaC": mco})
    assert report["tables"]["IR_IMB_R"]["columns_withheld"] == ["IMB_NEW_COD"]
    assert report["tables"]["T_MCOaaC"]["columns_withheld"] == []
    assert "not handed out, unknown to the catalog: IR_IMB_R: IMB_NEW_COD</p>" in render_html(report)


def test_cohort_file_and_project_pseudonyms(spark, env, catalog, source, project):
    """Stable within a project across runs; two projects get different, unlinkable pseudonyms. The cohort run
    again is a project of this test's own: run again, study-a's saved report, which other tests read, was left
    incomplete (its extracts not run again), and they failed when run after this test."""
    lake = Lake(env.lake)

    def cohort_of(project_id: str) -> dict:
        return {r["NUM_ENQ_IDT"]: r["FOUND_BY"] for r in spark.read.parquet(lake.project(project_id, "cohort")).collect()}

    before = cohort_of("study-a")
    assert before == {nenq(env, "study-a", idt, "NUM_ENQ_IDT"): found for idt, (found, _) in EXPECTED_COHORT.items()}
    write_request(Path(env.projects), "study-rerun")
    rerun = load_request(env, catalog, "study-rerun")
    runs = []
    for _ in range(2):
        run_cohort(spark, env, catalog, rerun, source)
        runs.append(cohort_of("study-rerun"))
    assert runs[0] == runs[1] == {nenq(env, "study-rerun", idt, "NUM_ENQ_IDT"): found
                                  for idt, (found, _) in EXPECTED_COHORT.items()}

    other = load_request(env, catalog, "study-b")
    run_cohort(spark, env, catalog, other, source)
    run_extract(spark, env, catalog, other, "IR_BEN_R", source)
    b_cohort = {r["NUM_ENQ_IDT"] for r in spark.read.parquet(lake.project("study-b", "cohort")).collect()}
    assert len(b_cohort) == len(before) and not b_cohort & set(before)
    a_ben = read_extract(spark, env, "study-a", "IR_BEN_R").collect()
    b_ben = read_extract(spark, env, "study-b", "IR_BEN_R").collect()
    a_values = {v for r in a_ben for v in (r["NUM_ENQ"], r["NUM_ENQ_IDT"], r["NUM_ENQ_ANO"])}
    b_values = {v for r in b_ben for v in (r["NUM_ENQ"], r["NUM_ENQ_IDT"], r["NUM_ENQ_ANO"])}
    assert len(a_values) == len(b_values) == 31 and not a_values & b_values
    assert project_secret(env, "study-a") != project_secret(env, "study-b")


# Written by the derivation every release so far used (from f164ee2 on), for the secret bytes(range(32)).
KNOWN_PSEUDONYMS = {
    ("NUM_ENQ", "psa-a"): "bf991933386488ef5e5a7cc64b5552719d92ab8f93146dc575e87862d05106f7",
    ("NUM_ENQ_IDT", "idt-p1"): "01da95159eece71df277ba577d42f81a1ef810988ae84ffb98590ee787301d0b",
    ("NUM_ENQ_ANO", "ano-idt-p1"): "2b6491b3566d48de8e348ec69b877f139372a9fad2ff3a79dc50c3fd00dccc04",
}


def test_project_pseudonyms_are_the_documented_keyed_hashes(spark, catalog, source, tmp_path):
    """A project's pseudonyms must stay the same across runs and releases (SPEC §3): a changed derivation would give
    its researchers new NUM_ENQ that match none of their earlier extracts. Every other test computes the expected
    values with the code under test; here the extraction of a project whose secret is known is held to the hashes
    worked out in the test and to values an earlier release wrote."""
    settings = Settings.from_env(env={}, home=str(tmp_path))
    secret = bytes(range(32))
    restricted = Path(settings.lake) / "restricted" / "projects" / "kat"  # README: where the secret is kept
    restricted.mkdir(parents=True)
    (restricted / "secret.key").write_bytes(secret)
    write_request(Path(settings.projects), "kat", identifiers="BEN_IDT_ANO\nidt-p1\n",
                  text="id: kat\nperiod: {start: 2022-01-01, end: 2023-12-31}\ntables: [IR_BEN_R]\n"
                       "cohort: {identifiers: kat-ids.csv}\n")
    request = load_request(settings, catalog, "kat")
    run_cohort(spark, settings, catalog, request, source)
    run_extract(spark, settings, catalog, request, "IR_BEN_R", source)
    rows = pq.read_table(Path(settings.lake) / "projects" / "kat" / "IR_BEN_R").to_pylist()
    got = sorted((r["NUM_ENQ"], r["NUM_ENQ_IDT"], r["NUM_ENQ_ANO"]) for r in rows)
    assert got == sorted((keyed_hash(secret, "NUM_ENQ", nir), keyed_hash(secret, "NUM_ENQ_IDT", "idt-p1"),
                          keyed_hash(secret, "NUM_ENQ_ANO", "ano-idt-p1")) for nir in ("psa-a", "psa-a2"))
    for (label, value), expected in KNOWN_PSEUDONYMS.items():
        assert keyed_hash(secret, label, value) == expected
        assert pseudonym_value(value, secret, label) == expected
    assert KNOWN_PSEUDONYMS["NUM_ENQ", "psa-a"] in {r["NUM_ENQ"] for r in rows}
    cohort = pq.read_table(Path(settings.lake) / "projects" / "kat" / "cohort").to_pylist()
    assert [r["NUM_ENQ_IDT"] for r in cohort] == [KNOWN_PSEUDONYMS["NUM_ENQ_IDT", "idt-p1"]]
    # The secret's fingerprint for the project (secret.check), derived alike: a changed one refuses every secret.
    check = hmac.new(secret, b"snds_assets/project-pseudonym/key-check/kat", hashlib.sha256).hexdigest()
    assert (restricted / "secret.check").read_bytes().strip() == check.encode()


def test_restricted_data_is_staged_inside_restricted(spark, env, monkeypatch):
    """A file keeps the access rights of the folder it was created in (ADLS default ACLs, an owner-only local
    folder): a correspondence staged in the lake's shared ``_staging`` was readable there, and stayed there after a
    killed run. It is staged hidden beside its place; a hidden leftover is not taken for an extract."""
    lake = Lake(env.lake)
    target = lake.restricted("staging-test", "correspondence")
    staged, publish = [], storage.publish_dir
    monkeypatch.setattr(storage, "publish_dir", lambda src, dst: (staged.append(
        (src, sorted(p.name for p in Path(src).glob("*.parquet")))), publish(src, dst)))
    write_parquet(spark.range(3), target)
    (src, files), = staged
    assert Path(src).parent == Path(target).parent and Path(src).name.startswith(".") and files
    assert spark.read.parquet(target).count() == 3 and not Path(src).exists()
    (Path(lake.project("staging-test")) / ".ER_PRS_F.staging-killed").mkdir(parents=True)
    (Path(lake.project("staging-test")) / "ER_PRS_F").mkdir()
    assert storage.list_dirs(lake.project("staging-test")) == ["ER_PRS_F"]


def test_a_lost_secret_is_not_replaced_while_the_project_has_extracts(env):
    lake = Lake(env.lake)
    Path(lake.project("lost-key", "cohort")).mkdir(parents=True)
    with pytest.raises(ValueError, match="secret of project lost-key is missing"):
        project_secret(env, "lost-key")
    assert not Path(lake.restricted("lost-key", "secret.key")).exists()
    shutil.rmtree(lake.project("lost-key"))
    assert len(project_secret(env, "lost-key")) == 32  # its space removed: extracted again under a new secret


def test_a_replaced_secret_is_refused(env):
    """A secret replaced after its first use (a wrong backup restored, another project's secret.key copied over it)
    was taken as it came: the project's researchers got new pseudonyms, or another project's, with a COMPLETE report.
    Its fingerprint for the project, written beside it at first use, must match."""
    from snds_assets.provision.pseudonymize import CHECK_FILE, SecretError

    lake = Lake(env.lake)
    first, other = project_secret(env, "keyed-a"), project_secret(env, "keyed-b")
    assert project_secret(env, "keyed-a") == first and first != other
    secret_file = Path(lake.restricted("keyed-a", "secret.key"))
    check_file = Path(lake.restricted("keyed-a", CHECK_FILE))
    assert oct(check_file.stat().st_mode & 0o777) == "0o600" and first not in check_file.read_bytes()
    secret_file.write_bytes(Path(lake.restricted("keyed-b", "secret.key")).read_bytes())
    with pytest.raises(SecretError, match="secret of project keyed-a under restricted/ is not the one its pseudonyms"):
        project_secret(env, "keyed-a")
    secret_file.write_bytes(bytes(32))
    with pytest.raises(SecretError, match="is not the one"):
        project_secret(env, "keyed-a")
    secret_file.write_bytes(first)
    assert project_secret(env, "keyed-a") == first
    # A project extracted before fingerprints were kept: its secret as it is becomes the reference.
    check_file.unlink()
    assert project_secret(env, "keyed-a") == first and check_file.exists()
    # A folder in the secret's place is told as such, not as Python's IsADirectoryError.
    secret_file.unlink()
    secret_file.mkdir()
    with pytest.raises(SecretError, match="secret of project keyed-a under restricted/ cannot be read"):
        project_secret(env, "keyed-a")


def test_pseudonym_expression_matches_reference(spark):
    secret = bytes(range(32))
    df = spark.createDataFrame([("psa-a", "psa-a", "IDT", None, " ")],
                               "BEN_NIR_PSA string, NIR_ANO_17 string, BEN_IDT_ANO string, BEN_NIR_ANO string, ASS_NIR_ANO string")
    row = pseudonymize(df.select("BEN_NIR_PSA", "BEN_IDT_ANO", "BEN_NIR_ANO", "ASS_NIR_ANO"), secret).first()
    assert row.asDict() == {"NUM_ENQ": keyed_hash(secret, "NUM_ENQ", "psa-a"),
                            "NUM_ENQ_IDT": keyed_hash(secret, "NUM_ENQ_IDT", "IDT"),
                            "NUM_ENQ_ANO": None, "ASS_NIR_ANO": None}
    nir17 = df.select(pseudonym("NIR_ANO_17", secret, "NUM_ENQ", spark).alias("x")).first()["x"]
    assert nir17 == row["NUM_ENQ"] and len(nir17) == 64
    assert pseudonym_value("psa-a", secret, "NUM_ENQ") != pseudonym_value("psa-a", secret, "NUM_ENQ_IDT")
    assert "ASS_NIR_ANO" not in pseudonymize(df, secret, drop_other=True).columns


def test_an_insured_pseudonym_is_hashed_as_the_beneficiaries_it_names(spark):
    """ASS_NIR_ANO holds the BEN_NIR_ANO of the beneficiary who opens the rights (SPEC §3: "pseudonymised the same
    way"): hashed with its own key, a dependent's row could not be tied to the insured's NUM_ENQ_ANO in the same
    extract. NIR_ANO_MAM, a 32-character mother-child number, shares no pseudo-NIR's space."""
    secret = bytes(range(32))
    df = spark.createDataFrame([("ano-parent", "ano-parent", "psa-a", "psa-a"),
                                ("ano-child", "ano-parent", "psa-b", "psa-a")],
                               "BEN_NIR_ANO string, ASS_NIR_ANO string, BEN_NIR_PSA string, NIR_ANO_MAM string")
    rows = {r["NUM_ENQ"]: r for r in pseudonymize(df, secret).collect()}
    parent, child = (rows[keyed_hash(secret, "NUM_ENQ", psa)] for psa in ("psa-a", "psa-b"))
    assert parent["ASS_NIR_ANO"] == parent["NUM_ENQ_ANO"] == child["ASS_NIR_ANO"] != child["NUM_ENQ_ANO"]
    assert parent["ASS_NIR_ANO"] == keyed_hash(secret, "NUM_ENQ_ANO", "ano-parent")
    assert parent["NIR_ANO_MAM"] == keyed_hash(secret, "NIR_ANO_MAM", "psa-a") != parent["NUM_ENQ"]


def test_no_query_plan_holds_a_sub_key(spark):
    """A sub-key was a literal of every extraction query: the Spark UI, a cluster's query history and an analysis
    error's message (which ends with the plan, and reaches the run's failure and the details log) showed it, and
    with it anyone computes a pseudo-NIR's NUM_ENQ. Spark now reads it when the query runs."""
    from pyspark.errors import AnalysisException

    secret = bytes(range(32))
    keys = [label_key(secret, label).hex() for label in ("NUM_ENQ", "NUM_ENQ_IDT")]
    df = pseudonymize(spark.createDataFrame([("psa-a", "IDT")], "BEN_NIR_PSA string, BEN_IDT_ANO string"), secret)
    assert df.first()["NUM_ENQ"] == keyed_hash(secret, "NUM_ENQ", "psa-a")
    execution = df._jdf.queryExecution()
    plans = execution.toString() + execution.executedPlan().toString()
    with pytest.raises(AnalysisException) as failed:
        df.select("NUM_ENQ", "NO_SUCH_COLUMN").collect()
    for text in (plans, str(failed.value)):
        assert not any(key in text.lower() for key in keys), text


def test_an_extract_is_not_in_the_order_of_the_snds_pseudonyms(spark, tmp_path):
    """Written in the order they were read, extract rows followed the curated table, itself in the order of the
    SNDS pseudo-NIRs when CNAM sorts a table by patient: two projects sharing patients saw them in the same
    order. Now each file holds a hash-chosen share of the rows, sorted by project pseudonym then values."""
    import pyarrow.parquet as pq

    from snds_assets.provision.pseudonymize import in_content_order
    from snds_assets.provision.run import write_parquet

    secret = bytes(range(32))
    psa = [f"psa-{i:03d}" for i in range(200)]
    rows = spark.createDataFrame([(v, i % 7) for i, v in enumerate(psa)], "BEN_NIR_PSA string, PRS_ACT_QTE int")
    target = str(tmp_path / "ER_PRS_F")
    write_parquet(in_content_order(pseudonymize(rows.repartition(1), secret)), target)
    back = {keyed_hash(secret, "NUM_ENQ", v): v for v in psa}
    files = [pq.read_table(f).to_pylist() for f in sorted(Path(target).glob("*.parquet"))]
    for part in files:
        assert [r["NUM_ENQ"] for r in part] == sorted(r["NUM_ENQ"] for r in part)
    order = [back[r["NUM_ENQ"]] for part in files for r in part]
    assert sorted(order) == psa and order != psa


def test_every_extract_file_is_in_the_order_of_its_project_pseudonyms(project, env):
    import pyarrow.parquet as pq

    request, _ = project
    checked = 0
    for family in request.tables:
        for path in Path(Lake(env.lake).project(request.id, family)).glob("*.parquet"):
            part = pq.read_table(path).to_pylist()
            key = next((c for c in ("NUM_ENQ", "NUM_ENQ_IDT") if part and c in part[0]), None)
            if key:
                values = [r[key] for r in part]
                assert values == sorted(values, key=lambda v: (v is not None, v)), (family, path.name)
                checked += 1
    assert checked >= 3


def test_death_and_cartography_ids_do_not_leave_the_lake(spark):
    """One per deceased person (DCD_IDT_ENC), one per beneficiary (ID_CARTO): as is, they would link projects."""
    secret, other = bytes(range(32)), bytes(range(1, 33))
    df = spark.createDataFrame([("d" * 64, "carto-1", "x")], "DCD_IDT_ENC string, ID_CARTO string, DCD_CAU string")
    row, row_b = pseudonymize(df, secret).first(), pseudonymize(df, other).first()
    assert row["DCD_IDT_ENC"] == keyed_hash(secret, "DCD_IDT_ENC", "d" * 64) != "d" * 64
    assert row["ID_CARTO"] == keyed_hash(secret, "ID_CARTO", "carto-1") != "carto-1"
    assert row["DCD_IDT_ENC"] != row_b["DCD_IDT_ENC"] and row["DCD_CAU"] == "x"


def test_hospital_patient_ids_do_not_leave_the_lake(spark, catalog, source, tmp_path):
    """RIM-P's encrypted IPP (IPP_IRR_CRY, one per patient and hospital) and MCO's mother-child chaining number
    (ID_MAM_ENF) are patient pseudonyms: an extract of T_RIPaaRSA carries the IPP under the project's key only."""
    rip_c = frame(spark, catalog, "T_RIPaaC", [{
        "ETA_NUM_EPMSI": "E9", "RIP_NUM": "1", domain.YEAR_COLUMN: 2022, "NIR_ANO_17": "psa-a2",
        "EXE_SOI_DTD": datetime(2022, 4, 1), **return_codes({})}])
    rip_rsa = frame(spark, catalog, "T_RIPaaRSA", [
        {"ETA_NUM_EPMSI": "E9", "RIP_NUM": "1", domain.YEAR_COLUMN: 2022, "IPP_IRR_CRY": "ipp-of-p1"}])
    both = FrameSource({**source.frames, "T_RIPaaC": rip_c, "T_RIPaaRSA": rip_rsa})
    path = tmp_path / "rip.yaml"
    text = "id: rip\nperiod: {start: 2022-01-01, end: 2023-12-31}\ntables: [T_RIPaaRSA]\ncohort: {identifiers: x.csv}\n"
    from snds_assets.provision.request import parse_request

    (tmp_path / "x.csv").write_text("BEN_IDT_ANO\nidt-p1\n")
    request = parse_request(text, catalog, path)
    secret = bytes(range(32))
    cohort = spark.createDataFrame([("idt-p1",)], "BEN_IDT_ANO string")
    rows = extract_family(spark, catalog, request, "T_RIPaaRSA", cohort, both, secret=secret).collect()
    assert [r["IPP_IRR_CRY"] for r in rows] == [keyed_hash(secret, "IPP_IRR_CRY", "ipp-of-p1")]
    df = spark.createDataFrame([("m" * 32,)], "ID_MAM_ENF string")
    assert pseudonymize(df, secret).first()["ID_MAM_ENF"] == keyed_hash(secret, "ID_MAM_ENF", "m" * 32)
    assert "ID_MAM_ENF" not in pseudonymize(df, secret, drop_other=True).columns


def test_an_outpatient_act_without_its_own_nir_belongs_to_the_cohort_through_its_link(spark, catalog, source,
                                                                                      tmp_path):
    """T_MCOaaFASTC's files carry no NIR_ANO_17 since 2008 (schema-snds): its rows reach the patient through
    T_MCOaaCSTC on (ETA_NUM, SEQ_NUM), as they are selected, and belongs_to_cohort checks that link (it checked
    their empty NUM_ENQ, failing every row and so the project)."""
    settings = Settings.from_env(env={}, home=str(tmp_path / "h"))
    stay = {"ETA_NUM": "E7", "SEQ_NUM": "Q1", domain.YEAR_COLUMN: 2022}
    linked = {"EXE_SOI_DTD": datetime(2022, 5, 2), "NIR_RET": "0", "NAI_RET": "0", "SEX_RET": "0"}
    base = _extended(spark, catalog, source, {
        "T_MCOaaCSTC": [{**stay, "NIR_ANO_17": "psa-a", **linked}, {**stay, "SEQ_NUM": "Q2", "NIR_ANO_17": "psa-b",
                                                                     **linked}],
        "T_MCOaaFASTC": [{**stay, "COD_SEX": "1"}, {**stay, "SEQ_NUM": "Q2"}]})
    text = ("id: acts\nperiod: {start: 2022-01-01, end: 2023-12-31}\ntables: [T_MCOaaCSTC, T_MCOaaFASTC]\n"
            "cohort: {identifiers: acts-ids.csv}\n")
    write_request(Path(settings.projects), "acts", text=text)
    request = load_request(settings, catalog, "acts")
    run_cohort(spark, settings, catalog, request, base)
    info = run_extract(spark, settings, catalog, request, "T_MCOaaFASTC", base)
    assert info["rows"] == 1 and info["links"] == ["T_MCOaaFASTC -> T_MCOaaCSTC on ETA_NUM, SEQ_NUM"]
    belongs = next(c for c in info["checks"] if c.name == "belongs_to_cohort")
    assert (belongs.passed, belongs.evaluated, belongs.columns) == (True, True, ["ETA_NUM", "SEQ_NUM", "PMSI_YEAR"])


def test_missing_family_and_perimeter_pruning(spark, env, catalog, source, tmp_path):
    """A family not delivered is reported, not fatal; extracts the request no longer grants leave the space."""
    settings = Settings.from_env(env={}, home=str(tmp_path / "h"))
    small = ("id: small\nperiod: {start: 2022-01-01, end: 2023-12-31}\ntables: [%s]\n"
             "cohort: {identifiers: small-ids.csv}\n")
    write_request(Path(settings.projects), "small", text=small % "IR_BEN_R, T_SSRaaC")
    request = load_request(settings, catalog, "small")
    run_cohort(spark, settings, catalog, request, source)
    info = run_extract(spark, settings, catalog, request, "T_SSRaaC", source)
    assert info["status"] == "not delivered" and info["rows"] == 0
    run_extract(spark, settings, catalog, request, "IR_BEN_R", source)
    lake = Lake(settings.lake)
    Path(lake.project("small", "ER_PRS_F")).mkdir(parents=True)
    write_request(Path(settings.projects), "small", text=small % "T_SSRaaC")
    request = load_request(settings, catalog, "small")
    with pytest.raises(LookupError, match="earlier version of the request"):
        run_extract(spark, settings, catalog, request, "T_SSRaaC", source)
    info = run_cohort(spark, settings, catalog, request, source)
    assert sorted(info["removed_extracts"]) == ["ER_PRS_F", "IR_BEN_R"]
    assert sorted(p.name for p in Path(lake.project("small")).iterdir()) == ["cohort"]


def _report_alone(snds: SndsResource, project_id: str):
    """The project's report materialised alone, as selecting `reports/project` in the UI does: the ``extract``
    step, which writes it after the selected extracts, runs for it alone."""
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("projects", [project_id])
    result = materialize([build_extract_assets(snds.catalog(), curated_key)], selection=[PROJECT_REPORT_KEY],
                         partition_key=project_id, instance=instance,
                         resources={"snds": snds, "spark": SparkResource()})
    assert result.success
    [materialization] = result.asset_materializations_for_node("extract")
    assert materialization.asset_key == PROJECT_REPORT_KEY
    return materialization.metadata


def test_report_asset_before_any_cohort(tmp_path):
    """Materialised alone from the UI before the cohort ran, the report says so instead of failing."""
    settings = Settings.from_env(env={}, home=str(tmp_path))
    write_request(Path(settings.projects), "early")
    metadata = _report_alone(SndsResource(home=str(tmp_path), lake=settings.lake, projects=settings.projects), "early")
    assert metadata["cohort size"].value == 0
    assert metadata["request fingerprint"].value == ""  # nothing extracted: the sensors still ask for it
    assert json.loads(Path(Lake(settings.lake).project_report("early")).read_text())["cohort"] is None


def test_report_asset_names_the_request_a_complete_extraction_was_made_for(spark, catalog, source, tmp_path):
    """The sensors skip a project whose last report was made for its current request (`snds demo`, then `snds ui`).
    Not once the state has changed beneath its extracts: the report materialised alone after a delivery named the
    request all the same, and the refresh sensor, taking it for an extraction of the new state, never extracted the
    project again (while `snds report` said OUT OF DATE)."""
    settings = Settings.from_env(env={}, home=str(tmp_path))
    write_request(Path(settings.projects), "study-b")
    request = load_request(settings, catalog, "study-b")

    def accept(delivery_id: str, families: list[str]) -> None:
        path = Path(Lake(settings.lake).delivery_report(delivery_id))
        path.parent.mkdir(parents=True, exist_ok=True)
        tables = {catalog.delivered_name(f, 2023) if catalog[f].is_yearly else f: {"family": f, "status": "accepted"}
                  for f in families}
        path.write_text(json.dumps({"delivery_id": delivery_id, "status": "accepted", "tables": tables}))

    accept("2024-03-01", list(request.tables))  # the state the source stands for
    report = run_project(spark, settings, catalog, request, source)
    assert report["status"] == "complete"
    snds = SndsResource(home=settings.home, lake=settings.lake, projects=settings.projects)
    assert _report_alone(snds, request.id)["request fingerprint"].value == request.fingerprint
    accept("2024-04-01", ["ER_PRS_F"])
    assert _report_alone(snds, request.id)["request fingerprint"].value == ""


def test_a_new_cohort_withdraws_the_complete_report_of_the_earlier_one(spark, catalog, source, tmp_path, monkeypatch):
    """A re-extraction failing after its new cohort was published left the earlier ``complete`` report beside
    extracts made for the earlier cohort: the report now says what the project space holds."""
    settings = Settings.from_env(env={}, home=str(tmp_path))
    write_request(Path(settings.projects), "again", tables=("IR_BEN_R", "ER_PRS_F"))
    request = load_request(settings, catalog, "again")
    assert run_project(spark, settings, catalog, request, source)["status"] == "complete"
    path = Path(Lake(settings.lake).project_report("again"))
    seen = []

    def full_disk(*args, **kwargs):
        seen.append(path.exists())
        raise OSError("No space left on device")

    monkeypatch.setattr("snds_assets.provision.run.write_parquet", full_disk)
    with pytest.raises(OSError):
        run_cohort(spark, settings, catalog, request, source)
    assert seen == [False] and not path.exists()  # withdrawn before the first write of the new cohort
    monkeypatch.undo()
    run_cohort(spark, settings, catalog, request, source)
    report = json.loads(path.read_text())
    assert report["status"] == "incomplete"
    assert {t["status"] for t in report["tables"].values()} == {"stale (extracted for an earlier cohort)"}
    assert Path(Lake(settings.lake).project_report("again", "html")).exists()


def test_an_extract_refuses_a_state_other_than_its_cohorts(spark, catalog, source, tmp_path):
    """`snds extract` alongside a reception: the cohort was identified in one IR_BEN_R, the delivery accepted
    meanwhile replaced it, and the IR_BEN_R extract, read from the new state, held none of the cohort's persons
    (0 rows, report `complete`). The extract now fails, saying why, and writes nothing."""
    from snds_assets.provision.run import StateChanged

    settings = Settings.from_env(env={}, home=str(tmp_path))
    write_request(Path(settings.projects), "moving", tables=("IR_BEN_R", "ER_PRS_F"))
    request = load_request(settings, catalog, "moving")
    run_cohort(spark, settings, catalog, request, source)

    class Accepted(FrameSource):  # a later delivery accepted since the cohort: a full IR_BEN_R, ER_PRS_F added
        def deliveries(self, family):
            return {"IR_BEN_R": ["2024-04-01"], "ER_PRS_F": ["2024-03-01", "2024-04-01"]}.get(
                family, source.deliveries(family))

    moved = Accepted(dict(source.frames))
    with pytest.raises(StateChanged, match=r"current state of IR_BEN_R changed since the cohort.*extract the project "
                                           r"again, cohort included; IR_BEN_R: 2024-04-01 joined, 2024-03-01 left$"):
        run_extract(spark, settings, catalog, request, "IR_BEN_R", moved)
    assert not Path(Lake(settings.lake).project("moving", "IR_BEN_R")).exists()
    with pytest.raises(StateChanged, match="state of ER_PRS_F changed"):
        run_extract(spark, settings, catalog, request, "ER_PRS_F", moved)
    assert run_extract(spark, settings, catalog, request, "IR_BEN_R", source)["rows"] > 0  # the cohort's state


def test_an_extract_refuses_a_delivery_received_again_since_its_cohort(spark, catalog, source, tmp_path):
    """A corrected delivery received again under its own id, and accepted again, leaves the state's delivery ids
    as they were: the extract compared those only, and made the IR_BEN_R extract of a cohort identified in the
    earlier content from the new one (none of its persons, report `complete`). Reception marks are compared too."""
    from snds_assets.provision.run import StateChanged

    settings = Settings.from_env(env={}, home=str(tmp_path))
    write_request(Path(settings.projects), "corrected", tables=("IR_BEN_R", "ER_PRS_F"))
    request = load_request(settings, catalog, "corrected")
    marks = {d: "first reception" for f in ("IR_BEN_R", "ER_PRS_F") for d in source.deliveries(f)}

    class Received(FrameSource):
        def receptions(self):
            return dict(marks)

    received = Received(dict(source.frames))
    run_cohort(spark, settings, catalog, request, received)
    assert run_extract(spark, settings, catalog, request, "ER_PRS_F", received)["rows"] > 0
    marks[source.deliveries("IR_BEN_R")[0]] = "received again"
    with pytest.raises(StateChanged, match=r"state of IR_BEN_R changed since the cohort.*cohort included; IR_BEN_R: "
                                           r"2024-03-01 received again$"):
        run_extract(spark, settings, catalog, request, "IR_BEN_R", received)
    assert not Path(Lake(settings.lake).project("corrected", "IR_BEN_R")).exists()


class _Withdrawn(FrameSource):
    """A reception starting alongside: its delivery's report is withdrawn once IR_BEN_R was read and its
    deliveries listed, so every later read finds no accepted delivery."""

    def __init__(self, frames, delivery_id):
        super().__init__(frames, delivery_id=delivery_id)
        self.gone = self.identities_read = False

    def read(self, family):
        self.identities_read |= family == "IR_BEN_R"
        return None if self.gone else super().read(family)

    def deliveries(self, family):
        if self.gone:
            return []
        self.gone = family == "IR_BEN_R" and self.identities_read
        return super().deliveries(family)


def test_a_cohort_read_on_both_sides_of_a_reception_starting_is_refused(spark, catalog, source, tmp_path):
    """`snds extract` and a delivery received again, started together: the cohort read IR_BEN_R before the
    reception withdrew the delivery's report, the criteria's tables after it, and was the identified persons alone
    (the criteria finding no table), reported complete. It now fails, saying why, before it replaces anything of
    the earlier cohort."""
    from snds_assets.provision.run import StateChanged

    settings = Settings.from_env(env={}, home=str(tmp_path))
    write_request(Path(settings.projects), "racing", tables=("IR_BEN_R", "ER_PRS_F"))
    request = load_request(settings, catalog, "racing")
    lake = Lake(settings.lake)
    assert run_cohort(spark, settings, catalog, request, source)["targeted"] > 0
    kept = {p: Path(p).read_bytes() for p in (lake.restricted("racing", "info", "cohort.json"),
                                              lake.project_report("racing"))}
    with pytest.raises(StateChanged, match=r"state of IR_BEN_R changed while the cohort was identified \(a reception "
                                           r"running alongside\).*IR_BEN_R: 2024-03-01 left$"):
        run_cohort(spark, settings, catalog, request, _Withdrawn(dict(source.frames), "2024-03-01"))
    assert {p: Path(p).read_bytes() for p in kept} == kept


@pytest.mark.parametrize("seen", [2, 3], ids=["before-the-writes", "during-the-writes"])
def test_a_cohort_read_while_a_reception_ended_is_refused(spark, catalog, source, tmp_path, seen):
    """A reception of a delivery the state holds, ending while the cohort was read (its reception mark moved
    between the cohort's first read and the look before its writes), or while the cohort was written (whose writes
    read the state again where it was not cached): then no cohort is left to extract from."""
    from snds_assets.provision.run import StateChanged

    settings = Settings.from_env(env={}, home=str(tmp_path))
    write_request(Path(settings.projects), "ended", tables=("IR_BEN_R", "ER_PRS_F"))
    request = load_request(settings, catalog, "ended")
    lake = Lake(settings.lake)
    run_cohort(spark, settings, catalog, request, source)
    told = []

    class Ending(FrameSource):
        def receptions(self):
            told.append(1)
            return {"2024-03-01": "first reception" if len(told) < seen else "received again"}

    with pytest.raises(StateChanged, match=r"state of IR_BEN_R changed while.*IR_BEN_R: 2024-03-01 received again$"):
        run_cohort(spark, settings, catalog, request, Ending(dict(source.frames), delivery_id="2024-03-01"))
    assert Path(lake.restricted("ended", "info", "cohort.json")).exists() == (seen == 2)
    assert Path(lake.project_report("ended")).exists() == (seen == 2)
    if seen == 3:
        with pytest.raises(Exception, match="no cohort yet"):  # an extract materialised alone has nothing to read
            run_extract(spark, settings, catalog, request, "IR_BEN_R", source)
    marks = {"2024-03-01": "first reception"}

    class Still(FrameSource):
        def receptions(self):
            return dict(marks)

    assert run_cohort(spark, settings, catalog, request, Still(dict(source.frames), delivery_id="2024-03-01"))[
        "persons"] > 0


def test_an_extract_whose_delivery_was_withdrawn_since_its_cohort_is_refused_not_told_undelivered(
        spark, catalog, source, tmp_path):
    """A reception starting after the cohort withdraws the delivery's report: the extracts found their family in no
    accepted delivery and were written `not delivered`, in a report called complete."""
    from snds_assets.provision.run import StateChanged

    settings = Settings.from_env(env={}, home=str(tmp_path))
    write_request(Path(settings.projects), "withdrawn", tables=("IR_BEN_R", "ER_PRS_F", "KI_CCI_R"))
    request = load_request(settings, catalog, "withdrawn")
    lake = Lake(settings.lake)
    run_cohort(spark, settings, catalog, request, source)
    assert run_extract(spark, settings, catalog, request, "ER_PRS_F", source)["rows"] > 0
    extracted = {p: p.read_bytes() for p in Path(lake.project("withdrawn", "ER_PRS_F")).rglob("*.parquet")}
    withdrawn = _Withdrawn(dict(source.frames), "2024-03-01")
    withdrawn.gone = True
    with pytest.raises(StateChanged, match=r"state of ER_PRS_F changed since the cohort.*: 2024-03-01 left$"):
        run_extract(spark, settings, catalog, request, "ER_PRS_F", withdrawn)  # rejected, or replaced by a full one
    # Withdrawn by its reception, still running (its manifest archived, no report yet): the refusal says so.
    Path(lake.raw("2024-03-01", "manifest.json")).parent.mkdir(parents=True)
    Path(lake.raw("2024-03-01", "manifest.json")).write_text("{}")
    for family in ("ER_PRS_F", "IR_BEN_R", "KI_CCI_R"):  # KI_CCI_R: neither read by the cohort nor on a path
        with pytest.raises(StateChanged, match=rf"state of {family} changed since the cohort.*: 2024-03-01 left "
                                               r"\(its reception has not finished\)$"):
            run_extract(spark, settings, catalog, request, family, withdrawn)
    assert not Path(lake.restricted("withdrawn", "info", "IR_BEN_R.json")).exists()
    assert storage.read_json(lake.restricted("withdrawn", "info", "ER_PRS_F.json"))["status"] == "extracted"
    # the extract made before stays, whole, beside its record
    assert {p: p.read_bytes() for p in Path(lake.project("withdrawn", "ER_PRS_F")).rglob("*.parquet")} == extracted


def test_a_change_of_state_is_told_by_the_deliveries_that_changed_not_the_whole_lists():
    """Three years of monthly deliveries would fill the one-line message before the one that joined."""
    from snds_assets.provision.report import state_change

    months = [f"{y}-{m:02d}-01" for y in (2022, 2023, 2024) for m in range(1, 13)]
    assert state_change(months[:-1], months, []) == "2024-12-01 joined"
    assert state_change(months, months[1:], []) == "2022-01-01 left"
    assert state_change(["2024-01-15"], ["2024-02-15"], []) == "2024-02-15 joined, 2024-01-15 left"
    # left as its reception withdrew it, which has not finished
    assert state_change(months, months[1:], [], ["2022-01-01"]) == "2022-01-01 left (its reception has not finished)"
    assert state_change(months, months[2:], [], ["2022-02-01", "2024-05-01"]) == (
        "2022-01-01, 2022-02-01 left (2022-02-01: reception not finished)")
    assert state_change(months, months[2:], [], months[:2]) == (
        "2022-01-01, 2022-02-01 left (their receptions have not finished)")
    assert state_change(months, months, ["2023-05-01"]) == "2023-05-01 received again"
    # Received again (its mark read for another family) and new to this one: "joined" says it, not both.
    assert state_change(months[:-1], months, ["2024-12-01"]) == "2024-12-01 joined"


def test_a_project_report_tells_how_the_state_moved_since_its_extraction(spark, catalog, source, tmp_path):
    """A project report read after a later delivery said COMPLETE as it was written: the report now holds the
    state each extract read (KI_CCI_R, which no criterion reads, and the IR_BEN_R its DCIR extract is linked
    through), so `snds report` can tell a delivery accepted or received again since."""
    from snds_assets.provision.report import changes_since, state_read

    settings = Settings.from_env(env={}, home=str(tmp_path))
    write_request(Path(settings.projects), "moved", tables=("IR_BEN_R", "KI_CCI_R", "ER_PRS_F"))
    request = load_request(settings, catalog, "moved")
    marks = {d: "first reception" for f in source.frames for d in source.deliveries(f)}
    later: dict[str, list[str]] = {}

    class Moving(FrameSource):
        def receptions(self):
            return dict(marks)

        def deliveries(self, family):
            return later.get(family, super().deliveries(family))

    state = Moving({f: df for f, df in source.frames.items() if f != "T_MCOaaD"})  # a criterion's table
    report = run_project(spark, settings, catalog, request, state)
    assert report["status"] == "complete"
    assert report["tables"]["KI_CCI_R"]["deliveries_read"] == {"KI_CCI_R": ["2024-03-01"]}
    assert report["tables"]["ER_PRS_F"]["receptions"] == {"2024-03-01": "first reception"}
    assert changes_since(state_read(report), state) == []
    later["KI_CCI_R"] = ["2024-03-01", "2024-04-01"]
    assert changes_since(state_read(report), state) == ["KI_CCI_R: 2024-04-01 joined"]
    later["KI_CCI_R"] = []  # its delivery withdrawn by a reception that has not finished (its manifest archived)
    Path(Lake(settings.lake).raw("2024-03-01", "manifest.json")).parent.mkdir(parents=True)
    Path(Lake(settings.lake).raw("2024-03-01", "manifest.json")).write_text("{}")
    assert changes_since(state_read(report), state) == ["KI_CCI_R: 2024-03-01 left"]
    assert changes_since(state_read(report), state, settings) == [
        "KI_CCI_R: 2024-03-01 left (its reception has not finished)"]
    Path(Lake(settings.lake).raw("2024-03-01", "manifest.json")).unlink()
    assert changes_since(state_read(report), state, settings) == ["KI_CCI_R: 2024-03-01 left"]
    del later["KI_CCI_R"]
    # the identities' archive and a criterion's table, neither delivered when the cohort was identified
    assert report["cohort"]["deliveries"]["IR_BEN_R_ARC"] == report["cohort"]["deliveries"]["T_MCOaaD"] == []
    later.update({"IR_BEN_R_ARC": ["2024-04-01"], "T_MCOaaD": ["2024-04-01"]})
    assert changes_since(state_read(report), state) == ["IR_BEN_R_ARC: 2024-04-01 joined",
                                                        "T_MCOaaD: 2024-04-01 joined"]
    later.clear()
    marks["2024-03-01"] = "received again"
    assert all(c.endswith(": 2024-03-01 received again") for c in changes_since(state_read(report), state))
    assert {c.split(":")[0] for c in changes_since(state_read(report), state)} >= {"IR_BEN_R", "KI_CCI_R", "ER_PRS_F"}


def test_the_reception_marks_of_the_current_state_change_when_a_delivery_is_received_again(catalog, tmp_path):
    """The mark of an accepted delivery is its report's version, which every reception rewrites; a rejected
    delivery is no part of the state and has none."""
    from snds_assets.curation.state import CurrentState

    settings = Settings.from_env(env={}, home=str(tmp_path))
    lake = Lake(settings.lake)
    Path(lake.delivery_report("2024-01-05")).parent.mkdir(parents=True)
    for delivery_id, status in (("2024-01-05", "accepted"), ("2024-02-05", "rejected")):
        Path(lake.delivery_report(delivery_id)).write_text(json.dumps(
            {"delivery_id": delivery_id, "status": status, "tables": {}}))
    state = CurrentState(None, settings, catalog)
    first = state.receptions()
    assert list(first) == ["2024-01-05"]
    Path(lake.delivery_report("2024-01-05")).write_text(json.dumps(
        {"delivery_id": "2024-01-05", "status": "accepted", "tables": {"ER_PRS_F": {"status": "accepted"}}}))
    assert state.receptions()["2024-01-05"] != first["2024-01-05"]


def test_an_extracts_report_names_the_linked_deliveries_it_read(spark, catalog, source, tmp_path, monkeypatch):
    """The deliveries of the tables an extract is linked through (ER_PHA_F through ER_PRS_F) were asked for once
    the extract was written: a delivery accepted meanwhile was named though the extract never read it."""
    from snds_assets.provision import run as run_module

    settings = Settings.from_env(env={}, home=str(tmp_path))
    write_request(Path(settings.projects), "linked", tables=("IR_BEN_R", "ER_PRS_F", "ER_PHA_F"))
    request = load_request(settings, catalog, "linked")
    run_cohort(spark, settings, catalog, request, source)
    accepted = []

    class Later(FrameSource):
        def deliveries(self, family):
            return source.deliveries(family) + accepted

    write = run_module.write_parquet

    def write_while_a_delivery_is_accepted(df, target, files=None):
        write(df, target, files)
        accepted.append("2024-04-01")

    monkeypatch.setattr(run_module, "write_parquet", write_while_a_delivery_is_accepted)
    info = run_extract(spark, settings, catalog, request, "ER_PHA_F", Later(dict(source.frames)))
    assert info["deliveries_linked"] == {"ER_PRS_F": ["2024-03-01"]}

# --- Requests ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("old, new, message", [
    ("tables: [IR_BEN_R, ER_PRS_F]", "tables: [IR_BEN_R, ER_XYZ_F]", "unknown table 'ER_XYZ_F'"),
    ("tables: [IR_BEN_R, ER_PRS_F]", "tables: [T_MCO23B]", "one year of family T_MCOaaB"),
    ("tables: [IR_BEN_R, ER_PRS_F]", "tables: [IR_BEN_R, DA_PRA_R]", "DA_PRA_R has no path to a patient"),
    ("[EXE_SOI_DTD, PRS_NAT_REF]", "[EXE_SOI_DTD, NOPE]", "unknown column 'NOPE' in table ER_PRS_F"),
    ("  ER_PRS_F: [EXE", "  ER_PHA_F: [EXE", "columns given for ER_PHA_F, which is not in tables"),
    ("start: 2022-01-01, end: 2023-12-31", "start: 2024-01-01, end: 2023-12-31", "start 2024-01-01 is after end"),
    ("start: 2022-01-01", "start: 2022-13-01", "bad period start"),
    ("start: 2022-01-01", "start: 20220101", "bad period start 20220101: use YYYY-MM-DD"),
    ("start: 2022-01-01", "start: 2022-01-01 10:00:00", "bad period start"),
    ("end: 2023-12-31", "end: '2023-12-31T00:00'", "bad period end '2023-12-31T00:00'"),
    ("- drug:", "- drugs:", "unknown criterion 'drugs'"),
    ("    age:", "    ages:", "unknown criterion 'ages'"),
    ("icd10: [E10, E11]", "cip13: [E10]", "ald takes {icd10: [codes]}"),
    ("min: 18, max: 120", "min: 80, max: 20", "age min 80 is above age max 20"),
    ("min: 18, max: 120", "min: 18, max: 99999999999999999999", "age max must be a whole number of years from 0 to 150"),
    ("min: 18, max: 120", "min: -1, max: 120", "age min must be a whole number of years from 0 to 150, not -1"),
    ("sex: [1, 2]", "sex: [3]", "sex must list codes"),
    ("icd10: [U071, U072]", "icd10: [U07*]", "diagnosis codes are already prefixes: write E11 for E11*"),
    ("ccam: [DEQP003]", "ccam: [DEQP*]", "act codes are whole codes, without wildcard"),
    ("identifiers: bad-ids.csv", "identifiers: nowhere.csv", "missing identifiers file nowhere.csv"),
    ("identifiers: bad-ids.csv", "identifiers: ../other/bad-ids.csv", "must be a file name beside the request"),
    ("identifiers: bad-ids.csv", "identifiers: /tmp/bad-ids.csv", "must be a file name beside the request"),
    # A NUL byte or an over-long name was told in Python's words, without the project or its other problems.
    ("identifiers: bad-ids.csv", 'identifiers: "ids\\0.csv"', "cohort identifiers 'ids\\x00.csv' cannot name a file "
     "here (embedded null byte)"),
    ("identifiers: bad-ids.csv", f"identifiers: {'a' * 300}.csv", f"cohort identifiers {'a' * 60!r} cannot name a file "
     "here (File name too long)"),
    ("tables: [IR_BEN_R, ER_PRS_F]", "tables: [ir_ben_r]", "write its family name as the catalog does, IR_BEN_R"),
    ("id: bad", "id: Bad Id", "bad id 'Bad Id'"),
    ("id: bad", "id: other", "differs from the file name"),
    ("title: Test project", "title: [unclosed", "YAML syntax error at line 3"),
    # silent misreadings refused: a code "." was the empty prefix (every stay), an empty item the code NONE, a bare
    # 0101 the octal 65, a repeated key the last of its values, an id of digits a number
    ("icd10: [U071, U072]", "icd10: [U071, '.']", "bad icd10 code '.'"),
    ("icd10: [U071, U072]", "icd10: [U071, null]", "an empty item among the icd10 codes"),
    ("ccam: [DEQP003]", "ccam: [0101]", "ccam code 65 is read as a number: write it as text, quoted"),
    ('cip13: ["3400930000001"]', "cip13: [3400930]", "cip13 code 3400930 is read as a number"),
    ('cip13: ["3400930000001"]', 'cip13: ["3400930"]', "bad cip13 code '3400930': a CIP13 is 13 digits"),
    ("    age:", "    any_of: [{ald: {icd10: [E10]}}]\n    age:", "YAML syntax error at line 15, column 5: duplicate key 'any_of'"),
    ("title: Test project", "title: Test project\nid: bad", "duplicate key 'id'"),
    ("id: bad", "id: 0123", "id 83 is read as a number: write it as text, as the file is named: id: 'bad'"),
    ("title: Test project", "title: Test project\n? [a, b]\n: 1", "YAML syntax error at line 3"),
    # Aliases of aliases expand without bound (a request of 546 bytes took 6 GB), nesting hit Python's recursion limit.
    ("icd10: [U071, U072]", "icd10: [U071, &a0 [x,x,x,x,x,x,x,x,x,x]" + "".join(
        f", &a{i} [{','.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)) + "]",
     "the request holds more than 100,000 values once its aliases (*name) are expanded"),
    ("title: Test project", "title: " + "[" * 5000 + "]" * 5000, "YAML nested too deeply"),
])
def test_request_errors(tmp_path, catalog, old, new, message):
    settings = Settings.from_env(env={}, home=str(tmp_path))
    text = REQUEST.format(id="bad", tables="IR_BEN_R, ER_PRS_F", drug=DRUG)
    assert old in text
    write_request(Path(settings.projects), "bad", text=text.replace(old, new, 1))
    with pytest.raises(RequestError) as err:
        load_request(settings, catalog, "bad")
    assert message in str(err.value) and str(err.value).startswith("project bad: ")
    assert "\n" not in str(err.value)


def test_a_merge_may_be_overridden_and_a_request_with_a_bad_key_is_listed(tmp_path, catalog):
    """A key a YAML merge brings (``<<:``) may be overridden, which is no repeated key; a list as a key is a request
    error of its own, and the sensors still list the other requests (it raised TypeError out of list_requests)."""
    settings = Settings.from_env(env={}, home=str(tmp_path))
    text = REQUEST.format(id="merged", tables="IR_BEN_R, ER_PRS_F", drug=DRUG)
    old = "period: {start: 2022-01-01, end: 2023-12-31}"
    assert old in text
    write_request(Path(settings.projects), "merged",
                  text=text.replace(old, "period: {<<: {start: 2021-01-01, end: 2023-12-31}, start: 2022-01-01}"))
    assert load_request(settings, catalog, "merged").period_start == date(2022, 1, 1)
    write_request(Path(settings.projects), "keyed", text=REQUEST.format(id="keyed", tables="IR_BEN_R", drug=DRUG)
                  + "? [a, b]\n: 1\n")
    assert [pid for pid, _ in list_requests(settings)] == ["keyed", "merged"]


def test_a_request_with_several_problems_tells_them_all_in_one_line(tmp_path, catalog):
    """Every part of a request is checked before anything runs, and all its problems are told at once: one edit
    mends them, where telling the first made the researcher run the command again per mistake."""
    settings = Settings.from_env(env={}, home=str(tmp_path))
    text = REQUEST.format(id="bad", tables="IR_BEN_R, ER_PRS_F, ER_XYZ_F, T_MCO23B", drug=DRUG)
    for old, new in [("start: 2022-01-01", "start: 2024-01-01"), ("identifiers: bad-ids.csv", "identifiers: nowhere.csv"),
                     ("- drug: {cip13:", "- drug: {cip:"), ("min: 18, max: 120", "min: 80, max: 20")]:
        assert old in text
        text = text.replace(old, new, 1)
    write_request(Path(settings.projects), "bad", text=text)
    with pytest.raises(RequestError) as err:
        load_request(settings, catalog, "bad")
    message = str(err.value)
    assert message.startswith("project bad: ") and "\n" not in message
    told = ["start 2024-01-01 is after end 2023-12-31", "unknown table 'ER_XYZ_F'", "one year of family T_MCOaaB",
            "missing identifiers file nowhere.csv", "any_of[1]: drug takes {cip13: [codes]}",
            "age min 80 is above age max 20"]
    assert [m for m in told if m not in message] == []
    assert message.count("; ") == len(told) - 1  # each told once

    text = REQUEST.format(id="cols", tables="IR_BEN_R, ER_PRS_F", drug=DRUG)
    text = text.replace("[EXE_SOI_DTD, PRS_NAT_REF]", "[EXE_SOI_DTD, NOPE, PRS_NAT_REF, NADA]\n  IR_IMB_R: [MED_MTF_COD]")
    write_request(Path(settings.projects), "cols", text=text)
    with pytest.raises(RequestError) as err:
        load_request(settings, catalog, "cols")
    assert str(err.value) == ("project cols: unknown column 'NOPE' in table ER_PRS_F; unknown column 'NADA' in table "
                              "ER_PRS_F; columns given for IR_IMB_R, which is not in tables")

    rows = "".join(f"psa-{i};rank{i}\n" for i in range(11)) + "psa-x;1;extra\n"
    write_request(Path(settings.projects), "ids", identifiers="BEN_NIR_PSA;BEN_RNG_GEM\n" + rows)
    with pytest.raises(RequestError) as err:
        load_request(settings, catalog, "ids")
    message = str(err.value)
    assert message.count("is not a rank") == 10 and "line 2: BEN_RNG_GEM 'rank0'" in message
    assert message.endswith("; and 2 more problem(s)") and "\n" not in message


def test_identifier_file_errors_and_fingerprints(tmp_path, catalog):
    settings = Settings.from_env(env={}, home=str(tmp_path))
    projects = Path(settings.projects)
    write_request(projects, "p1", identifiers="BEN_IDT_ANO,NIR\nX,Y\n")
    with pytest.raises(RequestError, match="unknown column 'NIR'"):
        load_request(settings, catalog, "p1")
    write_request(projects, "p1", identifiers="BEN_NIR_PSA,BEN_RNG_GEM\npsa-a,one\n")
    with pytest.raises(RequestError, match="line 2: BEN_RNG_GEM 'one' is not a rank"):
        load_request(settings, catalog, "p1")
    # What Python's int() takes but a rank is not, and a rank past the 32-bit integer it is matched as (which
    # failed in Spark, naming no line): each refused before anything runs.
    bad = ["1_0", "+1", "-1", "\u0661", "2147483648", "99999999999", "9" * 5000]  # int() refuses 5000 digits
    write_request(projects, "p1", identifiers="BEN_NIR_PSA,BEN_RNG_GEM\npsa-a,2147483647\n"
                  + "".join(f"psa-a,{rank}\n" for rank in bad))
    with pytest.raises(RequestError) as err:
        load_request(settings, catalog, "p1")
    assert [f"line {i + 3}: BEN_RNG_GEM {rank!r} is not a rank" in str(err.value) for i, rank in enumerate(bad[:-1])] \
        == [True] * 6
    assert f"line 9: BEN_RNG_GEM '{'9' * 200}" in str(err.value)  # each problem told in 300 characters at most
    assert len(str(err.value)) < 2000
    assert "line 2:" not in str(err.value)
    with pytest.raises(RequestError, match="bad project id"):
        load_request(settings, catalog, "../p1")
    write_request(projects, "p1", identifiers="BEN_NIR_PSA,BEN_RNG_GEM\npsa-a,1\n")
    request = load_request(settings, catalog, "p1")
    assert [(i.line, i.method) for i in request.identifiers] == [(2, "BEN_NIR_PSA+BEN_RNG_GEM")]
    first = dict(list_requests(settings))["p1"]
    (projects / "p1-ids.csv").write_text("BEN_NIR_PSA,BEN_RNG_GEM\npsa-a,2\n")
    assert dict(list_requests(settings))["p1"] != first


def test_an_identifiers_file_is_read_whatever_its_line_ends_and_an_open_quote_is_told(tmp_path, catalog):
    """Lines ended by CR alone (a classic Mac OS export) are lines: the csv module raised on them, out of every
    sensor tick and as Python's own words from ``snds extract``. A quote left open no longer swallows the lines
    after it into one identifier (two persons' lines were lost from the report's count)."""
    settings = Settings.from_env(env={}, home=str(tmp_path))
    projects = Path(settings.projects)
    for ends in ("\r", "\r\n", "\n"):
        write_request(projects, "p1", identifiers=ends.join(["BEN_NIR_PSA;BEN_RNG_GEM", "psa-a;1", "", "psa-b;2", ""]))
        request = load_request(settings, catalog, "p1")
        assert [(i.line, i.ben_nir_psa, i.ben_rng_gem) for i in request.identifiers] == [(2, "psa-a", 1), (4, "psa-b", 2)]
    write_request(projects, "p1", identifiers='BEN_IDT_ANO\nidt-a\n"idt-b\nidt-c\nidt-d\n')
    with pytest.raises(RequestError, match=r"lines 3-5: one row over 3 lines \(a quote left open\?\)"):
        load_request(settings, catalog, "p1")
    write_request(projects, "p1", identifiers='BEN_IDT_ANO\n"' + "x" * 200_000 + "\n")
    with pytest.raises(RequestError, match="line 2: not readable as CSV .*field limit.*: is a quote left open, or a "
                                           "value far too long"):
        load_request(settings, catalog, "p1")
    # A spreadsheet's export keeps its blank columns: two of them were "a column named twice".
    write_request(projects, "p1", identifiers="BEN_IDT_ANO,,\nidt-a,,\n")
    assert [i.ben_idt_ano for i in load_request(settings, catalog, "p1").identifiers] == ["idt-a"]
    write_request(projects, "p1", identifiers="BEN_IDT_ANO,ben_idt_ano\nidt-a,idt-a\n")
    with pytest.raises(RequestError, match="column BEN_IDT_ANO is named twice in the header"):
        load_request(settings, catalog, "p1")


def test_cohort_materialisation_carries_the_dagster_row_count(tmp_path, monkeypatch):
    """README: materialisations carry ``dagster/row_count``; the cohort's is its persons. A check not evaluated
    (identifiers of a project that brought none) gives no result, so Dagster shows it Skipped, not passed; the
    materialisation says why."""
    from snds_assets.checks import CheckOutcome
    from snds_assets.provision.assets import COHORT_KEY

    from .provision_support import materialize_cohort_without_spark

    checks = [CheckOutcome("unresolved_identifiers", "unresolved_identifiers", "WARN", True, evaluated=False,
                           details="the project brought no identifiers"),
              CheckOutcome("no_snds_pseudonym", "no_snds_pseudonym", "ERROR", False, failures=2)]
    _, result = materialize_cohort_without_spark(monkeypatch, tmp_path, persons=7, checks=checks)
    metadata = result.asset_materializations_for_node("projects__cohort")[0].metadata
    assert metadata["dagster/row_count"].value == 7
    assert metadata["checks not evaluated"].value == "- **unresolved_identifiers**: the project brought no identifiers"
    [evaluation] = result.get_asset_check_evaluations()
    assert (evaluation.asset_check_key.asset_key, evaluation.check_name) == (COHORT_KEY, "no_snds_pseudonym")
    assert (evaluation.passed, evaluation.metadata["failures"].value) == (False, 2)


def test_a_failed_extract_write_leaves_no_staging_folder(tmp_path):
    """An extraction whose Parquet write failed (a full disk) left its hidden ``.<name>.staging-…`` folder, with
    the part written, beside the extracts: README says a run that fails cleans up after itself (only a killed
    run's scratch waits for the next run). The published folder is untouched."""
    import errno

    from snds_assets.provision.run import write_parquet

    target = tmp_path / "projects" / "p" / "ER_PRS_F"
    target.mkdir(parents=True)
    (target / "part-0.parquet").write_bytes(b"published")

    class Writer:
        def mode(self, _):
            return self

        def parquet(self, path):
            Path(path).mkdir(parents=True)
            (Path(path) / "part-1.parquet").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")

    class Frame:
        write = Writer()

    with pytest.raises(OSError, match="No space left"):
        write_parquet(Frame(), str(target))
    assert sorted(p.name for p in target.parent.iterdir()) == ["ER_PRS_F"]
    assert [p.name for p in target.iterdir()] == ["part-0.parquet"]


# --- Edges of identification that a plausible slip would move (mutation audit) ------------------------------------
PERIOD_TEXT = ("2022-01-01", "2023-12-31")


def _targeted(spark, catalog, source, tmp_path, criteria: str, period=PERIOD_TEXT) -> set[str]:
    """The persons a criteria-only request finds in ``source`` (``criteria``: the YAML flow mapping)."""
    from snds_assets.provision.request import parse_request

    text = (f"id: edge\nperiod: {{start: {period[0]}, end: {period[1]}}}\ntables: [IR_BEN_R]\n"
            f"cohort: {{criteria: {criteria}}}\n")
    result = build_cohort(spark, catalog, parse_request(text, catalog, tmp_path / "edge.yaml"), source)
    return {r["BEN_IDT_ANO"] for r in result.cohort.collect()}


def _extended(spark, catalog, source, extra: dict[str, list[dict]]) -> FrameSource:
    """The small base plus ``extra`` rows per family (typed as curated)."""
    frames = {family: df.drop("DELIVERY_ID") for family, df in source.frames.items()}
    for family, rows in extra.items():
        added = frame(spark, catalog, family, rows)
        frames[family] = frames[family].unionByName(added, allowMissingColumns=True) if family in frames else added
    return FrameSource(frames, delivery_id="2024-03-01")


def load_request_text(catalog, folder: Path, text: str, identifiers: str):
    """A request parsed from ``text`` (its first line ``id: <id>``), its identifiers CSV written beside it."""
    from snds_assets.provision.request import parse_request

    pid = text.split("\n", 1)[0].removeprefix("id: ").strip()
    (folder / f"{pid}-ids.csv").write_text(identifiers)
    return parse_request(text, catalog, folder / f"{pid}.yaml")


DRUG_ONLY = f'{{any_of: [{{drug: {{cip13: ["{DRUG}"]}}}}]'


@pytest.mark.parametrize("criteria, period, expected", [
    # Age is the year of the period START minus the birth year: P18 (2004) is 18 then, 19 at the period's end.
    (DRUG_ONLY + ", age: {min: 19}}", None, {"idt-p10", "idt-p17"}),
    # An unknown birth year (1600) fails an age filter even without a maximum that its 422 years would break.
    (DRUG_ONLY + ", age: {min: 0}}", None, {"idt-p10", "idt-p17", "idt-p18"}),
    # The maximum is inclusive: P17 (1970) is 52 at the period start.
    (DRUG_ONLY + ", age: {max: 52}}", None, {"idt-p10", "idt-p17", "idt-p18"}),
    # DCIR events count by the care date of their ER_PRS_F line: P10's drug lines are dated 2021-12-31 and
    # 2023-12-31, both outside this period.
    (DRUG_ONLY + "}", ("2022-01-01", "2023-12-30"), {"idt-p4", "idt-p17", "idt-p18"}),
    # A one-day period is a period (both edges inclusive): P10's drug line of 2023-12-31.
    (DRUG_ONLY + "}", ("2023-12-31", "2023-12-31"), {"idt-p10"}),
    # IR_SEX_V has two unknown codes: 9 (P17) and 0, which a request may name too.
    (DRUG_ONLY + ", sex: [0]}", None, set()),
    (DRUG_ONLY + ", sex: [0, 9]}", None, {"idt-p17"}),
    # An ALD that ends on the period's first day overlaps it (P7: E10 until 2021-12-31); P6 ongoing, P8 from the
    # last day.
    ("{any_of: [{ald: {icd10: [E10, E11]}}]}", ("2021-12-31", "2023-12-31"), {"idt-p6", "idt-p7", "idt-p8"}),
], ids=["age-at-period-start", "unknown-birth-year-without-max", "age-max-inclusive", "dcir-care-date-in-period",
        "one-day-period", "sex-0", "sex-0-or-9", "ald-ending-on-period-start"])
def test_ciblage_edges(spark, catalog, source, tmp_path, criteria, period, expected):
    assert _targeted(spark, catalog, source, tmp_path, criteria, period or PERIOD_TEXT) == expected


def test_pmsi_link_quality_decides_who_a_stay_belongs_to(spark, catalog, source, tmp_path):
    """SPEC §3: a stay counts (ciblage) and is extracted only through a T_MCOaaC row whose NIR_ANO_17 is not a
    placeholder and whose every return code is '0' (an empty COH_SEX_RET of 2022 too). One person per
    case, each with a U071 stay in the period; the placeholders are given to persons of IR_BEN_R so that only the
    placeholder rule keeps their stays from them."""
    cases = {f"{code}=1": {code: "1"} for code in domain.PMSI_RETURN_CODES}
    cases.update({"NAI_RET=9": {"NAI_RET": "9"}, "NIR_RET empty": {"NIR_RET": None},
                  "SEX_RET empty": {"SEX_RET": None}, "good": {}, "COH_SEX_RET empty": {"COH_SEX_RET": None}})
    nirs = {name: f"rc-{i:02d}" for i, name in enumerate(cases)}
    nirs.update({"placeholder": "xxxxxxxxxxxxxxxxx", "placeholder S": "XXXXXXXXXXXXXXXXS"})
    cases.update({"placeholder": {}, "placeholder S": {}})
    ben, c_rows, b_rows = [], [], []
    for i, (name, overrides) in enumerate(cases.items()):
        ben.append({"BEN_NIR_PSA": nirs[name], "BEN_RNG_GEM": 1, "BEN_IDT_ANO": f"idt-{name}", "BEN_NAI_ANN": 1970,
                    "BEN_SEX_COD": 1})
        key = {"ETA_NUM": "E7", "RSA_NUM": str(i), domain.YEAR_COLUMN: 2022}
        c_rows.append({**key, "NIR_ANO_17": nirs[name], "EXE_SOI_DTD": datetime(2022, 9, 1), **return_codes(overrides)})
        b_rows.append({**key, "DGN_PAL": "U071"})
    base = _extended(spark, catalog, source, {"IR_BEN_R": ben, "T_MCOaaC": c_rows, "T_MCOaaB": b_rows})
    good = {"idt-good"}
    got = _targeted(spark, catalog, base, tmp_path, "{any_of: [{diagnosis: {icd10: [U071]}}]}")
    assert got == good | {"idt-p5"}  # P5: its good U071 stay of the small base
    # Extraction follows the same links: each case's person in the cohort, only the good links' stays extracted.
    request = load_request_text(catalog, tmp_path, "id: links\nperiod: {start: 2022-01-01, end: 2023-12-31}\n"
                                "tables: [T_MCOaaC, T_MCOaaB]\ncohort: {identifiers: links-ids.csv}\n",
                                "BEN_IDT_ANO\nidt-p1\n")
    cohort = spark.createDataFrame([(f"idt-{name}",) for name in cases], "BEN_IDT_ANO string")
    selector = Selector(catalog, request, base, cohort)
    for family in ("T_MCOaaC", "T_MCOaaB"):
        rows = extract_family(spark, catalog, request, family, cohort, base, selector=selector).collect()
        assert sorted(r["RSA_NUM"] for r in rows if r["ETA_NUM"] == "E7") == sorted(
            str(i) for i, name in enumerate(cases) if f"idt-{name}" in good), family


def test_a_return_code_is_required_from_the_year_its_files_carry_it(spark, catalog):
    """SNDS.md: COH_NAI_RET and COH_SEX_RET exist from 2013. Their emptiness in a stay of 2012 (the schema's history:
    not in files of 2012) is no bad link; in a stay of 2013 or later it is, as for every other code (an empty
    COH_NAI_RET counted as good in any year)."""
    rows = [(year, field, code, value) for year in (2012, 2013) for field, code in (("MCO", "COH_NAI_RET"),
            ("SSR", "COH_SEX_RET"), ("SSR", "SEJ_RET")) for value in (None, "0", "1")]
    kept: set[int] = set()
    for field in ("MCO", "SSR"):
        table = catalog[f"T_{field}aaC"]
        df = spark.createDataFrame([{"ROW": i, domain.YEAR_COLUMN: year, "NIR_ANO_17": f"psa-{i}",
                                     "EXE_SOI_DTD": datetime(year, 6, 1), **return_codes({code: value})}
                                    for i, (year, f, code, value) in enumerate(rows) if f == field])
        kept |= {r["ROW"] for r in valid_pmsi_links(table, df, date(2012, 1, 1), date(2013, 12, 31)).collect()}
    got = {rows[i] for i in kept}
    assert got == {(2012, "MCO", "COH_NAI_RET", None), (2012, "MCO", "COH_NAI_RET", "0"),
                   (2013, "MCO", "COH_NAI_RET", "0"), (2012, "SSR", "COH_SEX_RET", None),
                   (2012, "SSR", "COH_SEX_RET", "0"), (2013, "SSR", "COH_SEX_RET", "0"),
                   (2012, "SSR", "SEJ_RET", "0"), (2013, "SSR", "SEJ_RET", "0")}


def test_a_coh_return_code_a_delivered_file_did_not_bring_is_no_bad_link(spark, catalog, tmp_path):
    """SPEC §3: COH_NAI_RET and COH_SEX_RET count "where present". A T_MCO23C delivered without COH_SEX_RET (a
    `columns` WARN, accepted) had every stay of 2023 excluded from every cohort and PMSI extract, unsaid: its
    empty COH_SEX_RET is no bad link now. An empty one in a file that brought it still is, and so is any other code
    missing (SEJ_RET) or empty; a column only duplicated, or unknown to the catalog, is not absent."""
    from snds_assets.curation.state import CurrentState

    from snds_assets.reception.report import save_fragment

    settings = Settings.from_env(env={}, home=str(tmp_path))
    year = list(catalog["T_MCOaaC"].columns_in(2023))
    without = [c for c in year if c not in ("COH_SEX_RET", "SEJ_RET")]
    # a.csv lacks two codes and brings an unknown column; b.csv (all columns) repeats SEJ_RET and NIR_RET: the
    # check's sample and columns would mix them, the headers do not
    headers = [[c.lower() for c in without] + ["EXTRA"], year + ["SEJ_RET", "NIR_RET"]]
    columns = {"name": "columns", "rule": "columns", "severity": "WARN", "passed": False, "failures": 2}
    for delivery_id, passed in (("2024-03-01", False), ("2024-04-01", True)):
        path = Path(Lake(settings.lake).delivery_report(delivery_id))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"delivery_id": delivery_id, "status": "accepted", "tables": {
            "T_MCO23C": {"family": "T_MCOaaC", "status": "accepted", "mode": "incremental",
                         "checks": [{**columns, "passed": passed}]}}}))
        save_fragment(settings, delivery_id, "T_MCO23C", "raw", {"files": [{"path": f"{n}.csv", "header": h}
                                                                          for n, h in zip("ab", headers)]})
    absent = CurrentState(spark, settings, catalog).absent("T_MCOaaC")
    assert absent == {("2024-03-01", 2023): frozenset({"COH_SEX_RET", "SEJ_RET"})}

    rows = [(delivery_id, code, value) for delivery_id in ("2024-03-01", "2024-04-01")
            for code in ("COH_SEX_RET", "SEJ_RET") for value in (None, "0", "1")]
    df = spark.createDataFrame([{"ROW": i, "DELIVERY_ID": d, domain.YEAR_COLUMN: 2023, "NIR_ANO_17": f"psa-{i}",
                                 "EXE_SOI_DTD": datetime(2023, 6, 1), **return_codes({code: value})}
                                for i, (d, code, value) in enumerate(rows)])
    kept = {rows[r["ROW"]] for r in valid_pmsi_links(catalog["T_MCOaaC"], df, date(2023, 1, 1), date(2023, 12, 31),
                                                      absent).collect()}
    assert kept == {("2024-03-01", "COH_SEX_RET", None), ("2024-03-01", "COH_SEX_RET", "0"),
                    ("2024-04-01", "COH_SEX_RET", "0"), ("2024-03-01", "SEJ_RET", "0"), ("2024-04-01", "SEJ_RET", "0")}


def test_dcir_events_and_extracts_follow_the_rank_and_all_nine_keys(spark, catalog, source, tmp_path):
    """SNDS.md: twins share a pseudo-NIR, BEN_RNG_GEM tells them apart; an affiliated line belongs to the ER_PRS_F
    line equal on the nine DCIR keys. A drug on P2's line (psa-t, rank 1) targets P2, not the twin P3; ER_PHA_F
    lines that differ from P3's line (psa-t, rank 2) on a single key are neither P3's events nor in P3's extract."""
    keys_p3 = dcir_keys(11)
    other = {"DCT_ORD_NUM": 2, "FLX_DIS_DTD": date(2024, 3, 1), "FLX_EMT_NUM": 2, "FLX_EMT_ORD": 1, "FLX_EMT_TYP": 2,
             "FLX_TRT_DTD": date(2024, 1, 21), "ORG_CLE_NUM": "02C", "PRS_ORD_NUM": 999, "REM_TYP_AFF": 2}
    assert set(other) == set(domain.DCIR_KEYS) and all(other[k] != keys_p3[k] for k in other)
    pha = [{**dcir_keys(10), "PHA_ORD_NUM": 601, "PHA_PRS_C13": DRUG},  # P2's line
           {**keys_p3, "PHA_ORD_NUM": 602, "PHA_PRS_C13": OTHER_DRUG}]  # P3's line, all nine keys
    pha += [{**keys_p3, key: other[key], "PHA_ORD_NUM": 610 + i, "PHA_PRS_C13": DRUG}
            for i, key in enumerate(domain.DCIR_KEYS)]  # P3's line but for one key
    base = _extended(spark, catalog, source, {"ER_PHA_F": pha})
    assert _targeted(spark, catalog, base, tmp_path, DRUG_ONLY + "}") == {
        "idt-p2", "idt-p4", "idt-p10", "idt-p17", "idt-p18"}
    request = load_request_text(catalog, tmp_path, "id: twins\nperiod: {start: 2022-01-01, end: 2023-12-31}\n"
                                "tables: [ER_PRS_F, ER_PHA_F]\ncohort: {identifiers: twins-ids.csv}\n",
                                "BEN_IDT_ANO\nidt-p3\n")
    cohort = spark.createDataFrame([("idt-p3",)], "BEN_IDT_ANO string")
    selector = Selector(catalog, request, base, cohort)
    prs = extract_family(spark, catalog, request, "ER_PRS_F", cohort, base, selector=selector)
    assert [r["PRS_NAT_REF"] for r in prs.collect()] == [11]
    pha_rows = extract_family(spark, catalog, request, "ER_PHA_F", cohort, base, selector=selector)
    assert [r["PHA_ORD_NUM"] for r in pha_rows.collect()] == [602]


def test_a_care_line_key_delivered_again_for_another_person_names_no_one(spark, catalog, source, tmp_path):
    """A care line's nine keys delivered again for another person (P11, a later delivery: reception's
    primary_key_state warns) made P17's drug line (PHA 105) P11's as well: an event of P11's, and a row of any
    extract of P11's. Such a line now names no one: it targets neither and is in neither's extract, while each
    keeps its own care line. A source whose keys are not repeated is not asked (P17 and P11 targeted, as before).
    Persons are counted, not identities: P1's line 1 delivered again under P1's other identity keeps its act."""
    base = _extended(spark, catalog, source, {"ER_PRS_F": [
        {**dcir_keys(12), "BEN_NIR_PSA": "psa-k", "BEN_RNG_GEM": 1, "EXE_SOI_DTD": date(2022, 5, 5), "DPN_QLF": 0,
         "PRS_NAT_REF": 14, "PRS_ACT_QTE": 1.0},
        {**dcir_keys(1), "BEN_NIR_PSA": "psa-a2", "BEN_RNG_GEM": 1, "EXE_SOI_DTD": date(2022, 3, 1), "DPN_QLF": 0,
         "PRS_NAT_REF": 15, "PRS_ACT_QTE": 1.0}]})

    class Unique(FrameSource):
        def repeats_keys(self, family):
            return False

    assert _targeted(spark, catalog, Unique(dict(base.frames)), tmp_path, DRUG_ONLY + "}") == {
        "idt-p4", "idt-p10", "idt-p11", "idt-p17", "idt-p18"}
    assert _targeted(spark, catalog, base, tmp_path, DRUG_ONLY + "}") == {"idt-p4", "idt-p10", "idt-p18"}
    for person, line in (("idt-p17", 12), ("idt-p11", 14)):
        request = load_request_text(catalog, tmp_path, "id: again\nperiod: {start: 2022-01-01, end: 2023-12-31}\n"
                                    "tables: [ER_PRS_F, ER_PHA_F]\ncohort: {identifiers: again-ids.csv}\n",
                                    f"BEN_IDT_ANO\n{person}\n")
        cohort = spark.createDataFrame([(person,)], "BEN_IDT_ANO string")
        selector = Selector(catalog, request, base, cohort)
        prs = extract_family(spark, catalog, request, "ER_PRS_F", cohort, base, selector=selector)
        assert [r["PRS_NAT_REF"] for r in prs.collect()] == [line]
        assert extract_family(spark, catalog, request, "ER_PHA_F", cohort, base, selector=selector).count() == 0
    request = load_request_text(catalog, tmp_path, "id: again\nperiod: {start: 2022-01-01, end: 2023-12-31}\n"
                                "tables: [ER_PRS_F, ER_CAM_F]\ncohort: {identifiers: again-ids.csv}\n",
                                "BEN_IDT_ANO\nidt-p1\n")
    cohort = spark.createDataFrame([("idt-p1",)], "BEN_IDT_ANO string")
    cam = extract_family(spark, catalog, request, "ER_CAM_F", cohort, base, selector=Selector(catalog, request, base,
                                                                                               cohort))
    assert [r["CAM_ORD_NUM"] for r in cam.collect()] == [202]


def test_a_link_on_less_than_the_parents_key_is_never_ambiguous(spark, catalog, source):
    """ER_DCT_F joins ER_PRS_F on seven of its nine keys: one statement's lines may be several persons', so a statement
    row matching two persons' lines is no sign of a key delivered again (it stays, as for any source). On the nine keys
    it is, and the parent's keys naming two persons are found once for all its children."""
    from snds_assets.provision.links import unambiguous

    link = domain.parent_link(catalog["ER_DCT_F"])
    assert set(link.parent_columns) < set(catalog["ER_PRS_F"].primary_key)
    statement = frame(spark, catalog, "ER_DCT_F", [{k: dcir_keys(1)[k] for k in link.columns}])
    # every line of the base has these seven keys
    assert unambiguous(statement, link, catalog["ER_PRS_F"], source, {}).count() == 1
    pha = domain.parent_link(catalog["ER_PHA_F"])
    twice = _extended(spark, catalog, source, {"ER_PRS_F": [
        {**dcir_keys(1), "BEN_NIR_PSA": "psa-k", "BEN_RNG_GEM": 1, "PRS_NAT_REF": 16}]})
    lines = frame(spark, catalog, "ER_PHA_F", [{**dcir_keys(1), "PHA_ORD_NUM": 1}, {**dcir_keys(2), "PHA_ORD_NUM": 2}])
    found: dict = {}
    assert [r["PHA_ORD_NUM"] for r in unambiguous(lines, pha, catalog["ER_PRS_F"], twice, found).collect()] == [2]
    acts = frame(spark, catalog, "ER_CAM_F", [{**dcir_keys(1), "CAM_ORD_NUM": 1}])
    assert unambiguous(acts, domain.parent_link(catalog["ER_CAM_F"]), catalog["ER_PRS_F"], twice, found).count() == 0
    assert list(found) == [("ER_PRS_F", tuple(pha.columns))]  # the parent's shared keys found once for its children


def test_the_values_naming_two_persons_are_found_without_broadcasting_the_beneficiaries_and_released(
        spark, catalog, source, tmp_path):
    """IR_BEN_R holds tens of millions of identities: the values naming two persons are found by identity first,
    and only their rows are matched to the beneficiaries, never broadcast whole (a driver could not hold them).
    What a run cached (extract or cohort) is unpersisted with it, since a Dagster or test session lives on."""
    from snds_assets.provision import links

    twice = _extended(spark, catalog, source, {"ER_PRS_F": [
        {**dcir_keys(1), "BEN_NIR_PSA": "psa-k", "BEN_RNG_GEM": 1, "PRS_NAT_REF": 16}]})
    pha = domain.parent_link(catalog["ER_PHA_F"])
    lines = frame(spark, catalog, "ER_PHA_F", [{**dcir_keys(1), "PHA_ORD_NUM": 1}, {**dcir_keys(2), "PHA_ORD_NUM": 2}])
    assert [r["PHA_ORD_NUM"] for r in links.unambiguous(lines, pha, catalog["ER_PRS_F"], twice, {}).collect()] == [2]
    plan = links._held_by_two_persons(twice.read("ER_PRS_F"), links.link_columns(pha), ("BEN_NIR_PSA", "BEN_RNG_GEM"),
                                      twice)._jdf.queryExecution().analyzed().toString()
    assert "strategy=broadcast" not in plan
    assert re.search(r"Join LeftSemi, \(_P#\d+ = _P#\d+\)", plan)  # the beneficiaries of the candidates only

    request = load_request_text(catalog, tmp_path, "id: kept\nperiod: {start: 2022-01-01, end: 2023-12-31}\n"
                                "tables: [ER_PRS_F, ER_PHA_F]\ncohort: {identifiers: kept-ids.csv}\n",
                                "BEN_IDT_ANO\nidt-p1\n")
    cohort = spark.createDataFrame([("idt-p1",)], "BEN_IDT_ANO string")
    selector = Selector(catalog, request, twice, cohort)
    assert extract_family(spark, catalog, request, "ER_PHA_F", cohort, twice, selector=selector).count() == 0
    (values,) = selector._ambiguous.values()
    assert values.storageLevel.useMemory
    selector.release()
    assert not values.storageLevel.useMemory and not selector._ambiguous

    from snds_assets.provision.request import parse_request
    text = ("id: edge\nperiod: {start: 2022-01-01, end: 2023-12-31}\ntables: [IR_BEN_R]\n"
            f"cohort: {{criteria: {DRUG_ONLY}}}}}\n")
    result = build_cohort(spark, catalog, parse_request(text, catalog, tmp_path / "edge.yaml"), twice)
    assert result.cohort.count() > 0
    held = [f for f in result.cached if f.storageLevel.useMemory]
    assert len(held) >= 2  # the persons matched, and the values naming two persons
    result.unpersist()
    assert not any(f.storageLevel.useMemory for f in held)


def test_the_state_repeats_keys_only_where_a_reception_found_keys_already_in_it(spark, catalog, tmp_path):
    """``CurrentState.repeats_keys``: a failed ``primary_key_state`` of a delivery in the state; one not evaluated
    (a first delivery), passed, or of a delivery a later full one replaced, is not."""
    from snds_assets.curation.state import CurrentState

    settings = Settings.from_env(env={}, home=str(tmp_path))

    def received(delivery_id: str, mode: str, passed: bool, evaluated: bool = True) -> None:
        check = {"name": "primary_key_state", "rule": "primary_key", "severity": "WARN", "passed": passed,
                 "evaluated": evaluated, "failures": 0 if passed else 1}
        path = Path(Lake(settings.lake).delivery_report(delivery_id))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"delivery_id": delivery_id, "status": "accepted", "tables": {
            "ER_PRS_F": {"family": "ER_PRS_F", "status": "accepted", "mode": mode, "checks": [check]}}}))

    state = CurrentState(spark, settings, catalog)
    received("2024-01-01", "full", True, evaluated=False)
    received("2024-02-01", "incremental", True)
    assert not state.repeats_keys("ER_PRS_F")
    received("2024-03-01", "incremental", False)
    assert state.repeats_keys("ER_PRS_F") and not state.repeats_keys("IR_BEN_R")
    received("2024-04-01", "full", True, evaluated=False)  # replaces the three before it
    assert not state.repeats_keys("ER_PRS_F")


def test_a_diagnosis_is_found_in_dgn_rel_too(spark, catalog, source, tmp_path):
    """SPEC §3: `diagnosis` looks at DGN_PAL or DGN_REL of T_MCOaaB. P15's 2023 stay (good link) has U071 as its
    related diagnosis only."""
    frames = dict(source.frames)
    frames["T_MCOaaB"] = frames["T_MCOaaB"].withColumn("DGN_REL", F.when(
        (F.col("ETA_NUM") == "E1") & (F.col("RSA_NUM") == "1") & (F.col(domain.YEAR_COLUMN) == 2023), F.lit("U071")))
    base = FrameSource(frames)
    assert _targeted(spark, catalog, base, tmp_path, "{any_of: [{diagnosis: {icd10: [U071]}}]}") == {
        "idt-p5", "idt-p15"}


def test_run_extract_refuses_a_family_outside_the_perimeter(spark, env, catalog, source):
    request = load_request(env, catalog, "study-a")
    with pytest.raises(ValueError, match="T_SSRaaC is not in the perimeter of project study-a"):
        run_extract(spark, env, catalog, request, "T_SSRaaC", source)
    assert not Path(Lake(env.lake).project("study-a", "T_SSRaaC")).exists()


def test_report_status_counts_and_failed_checks(tmp_path):
    """The report's verdict (SPEC §5): `failed` names every failed ERROR check of the cohort and of each extract
    (a failed WARN does not fail it); `complete` only once every table is extracted (or not delivered) for the
    current cohort; `rows_total` sums the extracts' rows."""
    from snds_assets.provision.report import build_report
    from snds_assets.provision.request import ProjectRequest

    path = tmp_path / "r.yaml"
    path.write_text("id: r\n")
    request = ProjectRequest("r", "R", date(2022, 1, 1), date(2023, 12, 31), ["IR_BEN_R", "ER_PRS_F", "T_SSRaaC"], {},
                             None, None, path)
    cohort = {"persons": 2, "identified": 2, "targeted": 0, "identities": 3, "cohort_run": "run-1",
              "checks": [{"name": "unresolved_identifiers", "severity": "WARN", "passed": False}]}

    def table(rows, status="extracted", run="run-1", failing=()):
        checks = [{"name": n, "severity": s, "passed": (n, s) not in failing}
                  for n, s in (("in_period", "ERROR"), ("belongs_to_cohort", "ERROR"), ("coverage", "WARN"))]
        return {"rows": rows, "status": status, "cohort_run": run, "checks": checks}

    extracts = {"IR_BEN_R": table(3), "ER_PRS_F": table(5, failing={("coverage", "WARN")}),
                "T_SSRaaC": table(0, status="not delivered")}
    report = build_report(request, cohort, extracts)
    assert (report["status"], report["failed_checks"], report["rows_total"]) == ("complete", [], 8)
    failing = {**extracts, "ER_PRS_F": table(5, failing={("in_period", "ERROR")})}
    report = build_report(request, cohort, failing)
    assert (report["status"], report["failed_checks"]) == ("failed", ["ER_PRS_F: in_period"])
    assert build_report(request, cohort, {k: v for k, v in extracts.items() if k != "T_SSRaaC"})["status"] == "incomplete"
    stale = {**extracts, "IR_BEN_R": table(3, run="run-0")}
    assert build_report(request, cohort, stale)["status"] == "incomplete"


def test_the_benchmarks_sources_answer_every_question_provision_asks():
    """``bench/extract_bench.py`` reads its base through its own source, which lacked ``absent`` once provision
    asked it: the benchmark failed on its first PMSI family."""
    import importlib.util

    from snds_assets.provision.source import TableSource

    path = Path(__file__).resolve().parent.parent / "bench" / "extract_bench.py"
    spec = importlib.util.spec_from_file_location("extract_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert isinstance(bench.ParquetSource(None, {}), TableSource)


def test_checks_executed_alone_give_their_recorded_verdict(tmp_path):
    """A cohort or extract check executed without its asset gives again the verdict its asset's last run recorded;
    a check with no verdict recorded gives no result (Skipped), the log saying to materialise the asset."""
    from dagster import AssetCheckKey

    from snds_assets.checks import CheckOutcome
    from snds_assets.provision import storage
    from snds_assets.provision.assets import COHORT_KEY, _restated_checks, extract_key
    from snds_assets.provision.run import COHORT, _info_path

    settings = Settings.from_env(env={}, home=str(tmp_path))
    lake = Lake(settings.lake)
    failed = CheckOutcome("no_snds_pseudonym", "no_snds_pseudonym", "ERROR", False, failures=3)
    storage.write_json(_info_path(lake, "p", COHORT), {"checks": [failed.to_report()]})
    told = []

    class Log:
        def info(self, message: str) -> None:
            told.append(message)

    keys = [AssetCheckKey(COHORT_KEY, "no_snds_pseudonym"), AssetCheckKey(extract_key("ER_PRS_F"), "row_count")]
    [result] = _restated_checks(settings, "p", keys, Log())
    assert (result.asset_key, result.check_name, result.passed) == (COHORT_KEY, "no_snds_pseudonym", False)
    assert result.metadata["failures"].value == 3
    assert "executed alone, the verdict of projects/cohort's last materialisation" in result.metadata[
        "explanation"].value
    assert told == ["projects/ER_PRS_F check row_count not evaluated: no verdict recorded for this partition: "
                    "materialise projects/ER_PRS_F to evaluate it"]


def test_project_checks_are_explained_by_their_own_rules():
    """An extract's row_count was explained by the raw file check's text ("Each file holds the number of data rows
    the manifest announces"), every other project check by nothing."""
    from snds_assets.checks import COHORT_CHECKS, EXTRACT_CHECKS, RULE_DESCRIPTIONS, CheckOutcome, asset_check_results
    from snds_assets.provision.assets import COHORT_KEY, extract_key
    from snds_assets.reception.assets import raw_key

    def explained(name, key):
        [result] = asset_check_results([CheckOutcome(name, name, "ERROR", False, failures=1)], key)
        return result.metadata["explanation"].value

    for name, description in EXTRACT_CHECKS.items():
        assert explained(name, extract_key("ER_PRS_F")).startswith(f"**{name}** — {description}\n")
    for name, description in COHORT_CHECKS.items():
        assert explained(name, COHORT_KEY).startswith(f"**{name}** — {description}\n")
    assert explained("row_count", raw_key("ER_PRS_F")).startswith(f"**row_count** — {RULE_DESCRIPTIONS['row_count']}")
