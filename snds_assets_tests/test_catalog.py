"""The catalog loader on the 188 reference schemas, and the packaged catalog's agreement with them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from snds_assets import domain
from snds_assets.catalog import (
    FIELD_TYPES, Catalog, CatalogError, is_yearly_family, locate_nomenclature, parse_table,
)
from snds_assets.config import PACKAGED_SCHEMAS

# The tables the product must know without any configuration (issue "Foundation").
REQUIRED_TABLES = (
    "IR_BEN_R", "IR_IBA_R", "IR_IMB_R", "ER_PRS_F", "ER_PHA_F", "ER_CAM_F", "ER_BIO_F", "ER_UCD_F", "ER_ETE_F",
    "T_MCOaaB", "T_MCOaaC", "T_MCOaaD", "T_MCOaaA", "T_MCOaaUM", "T_SSRaaB", "T_SSRaaC", "T_HADaaB", "T_HADaaC",
    "T_RIPaaC", "KI_CCI_R", "KI_ECD_R",
)

# Columns the product's features read (SPEC §3 cohort and extraction, SNDS.md rules), beyond keys and identifiers.
FEATURE_COLUMNS = {
    "IR_BEN_R": {"BEN_NIR_PSA", "BEN_RNG_GEM", "BEN_NIR_ANO", "BEN_IDT_ANO", "BEN_IDT_TOP", "BEN_CDI_NIR",
                 "BEN_NAI_ANN", "BEN_NAI_MOI", "BEN_SEX_COD", "BEN_DCD_DTE", "BEN_RES_DPT"},
    "IR_IBA_R": {"BEN_IDT_ANO", "BEN_NAI_ANN", "BEN_SEX_COD", "BEN_DCD_DTE"},
    "IR_IMB_R": {"BEN_NIR_PSA", "BEN_RNG_GEM", "MED_MTF_COD", "IMB_ALD_DTD", "IMB_ALD_DTF", "IMB_ALD_NUM",
                 "IMB_ETM_NAT"},
    "ER_PRS_F": set(domain.DCIR_KEYS) | {
        "BEN_NIR_PSA", "BEN_RNG_GEM", "EXE_SOI_DTD", "EXE_SOI_DTF", "DPN_QLF", "PRS_DPN_QLP", "PRS_NAT_REF",
        "PRS_ACT_QTE", "PRS_PAI_MNT", "BSE_REM_MNT", "CPL_MAJ_TOP", "PFS_EXE_NUM", "BEN_SEX_COD", "BEN_NAI_ANN",
        "BEN_CDI_NIR"},
    "ER_PHA_F": set(domain.DCIR_KEYS) | {"PHA_PRS_C13", "PHA_ACT_QSN"},
    "ER_CAM_F": set(domain.DCIR_KEYS) | {"CAM_PRS_IDE"},
    "ER_BIO_F": set(domain.DCIR_KEYS) | {"BIO_PRS_IDE"},
    "ER_UCD_F": set(domain.DCIR_KEYS) | {"UCD_UCD_COD"},
    "ER_ETE_F": set(domain.DCIR_KEYS) | {"ETB_EXE_FIN"},
    "T_MCOaaB": {"ETA_NUM", "RSA_NUM", "DGN_PAL", "DGN_REL", "GRG_GHM", "SEJ_TYP", "SEJ_NBJ", "SOR_MOI", "SOR_ANN",
                 "ENT_MOD", "SOR_MOD"},
    "T_MCOaaC": {"ETA_NUM", "RSA_NUM", "NIR_ANO_17", "EXE_SOI_DTD", "EXE_SOI_DTF", "NIR_ANO_MAM"}
                | set(domain.PMSI_RETURN_CODES),
    "T_MCOaaD": {"ETA_NUM", "RSA_NUM", "ASS_DGN"},
    "T_MCOaaA": {"ETA_NUM", "RSA_NUM", "CDC_ACT"},
    "T_MCOaaUM": {"ETA_NUM", "RSA_NUM"},
    "T_SSRaaB": {"ETA_NUM", "RHA_NUM"},
    "T_SSRaaC": {"ETA_NUM", "RHA_NUM", "NIR_ANO_17", "EXE_SOI_DTD", "EXE_SOI_DTF"} | set(domain.PMSI_RETURN_CODES),
    "T_HADaaB": {"ETA_NUM_EPMSI", "RHAD_NUM"},
    "T_HADaaC": {"ETA_NUM_EPMSI", "RHAD_NUM", "NIR_ANO_17", "EXE_SOI_DTD", "EXE_SOI_DTF"}
                | set(domain.PMSI_RETURN_CODES),
    "T_RIPaaC": {"ETA_NUM_EPMSI", "RIP_NUM", "NIR_ANO_17", "EXE_SOI_DTD", "EXE_SOI_DTF"}
                | set(domain.PMSI_RETURN_CODES),
    "KI_CCI_R": {"BEN_IDT_ANO", "BEN_DCD_DTE", "DCD_CIM_COD"},
    "KI_ECD_R": {"BEN_IDT_ANO", "BEN_DCD_DTE", "ECD_CIM_COD"},
}

# Reference-only documentation keys that a hand-written schema has no reason to carry.
REFERENCE_ONLY_KEYS = {"history", "observation", "champ", "regle_gestion", "type_oracle", "dateMissing"}


def _write(folder: Path, name: str, document) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    return path


def _schema(name="T_X", fields=None, **extra) -> dict:
    doc = {"name": name, "fields": fields or [{"name": "A", "type": "string"}, {"name": "B", "type": "integer"}]}
    doc.update(extra)
    return doc


# --- The loader on the reference schemas ------------------------------------------------------------------------
def test_reference_loads_all_188_tables(reference_catalog, reference_schemas):
    assert len(list(Path(reference_schemas).rglob("*.json"))) == 188
    assert set(reference_catalog.tables) - {"IR_BEN_R_ARC"} == {
        json.loads(p.read_text(encoding="utf-8"))["name"] for p in Path(reference_schemas).rglob("*.json")}
    assert len(reference_catalog) == 189  # and the archive of IR_BEN_R, which no schema describes
    for table in reference_catalog:
        assert table.fields, table.name
        assert {f.type for f in table.fields} <= set(FIELD_TYPES), table.name
        assert all(f.name == f.name.upper() for f in table.fields), table.name
        assert set(table.primary_key) <= set(table.columns), table.name
        for fk in table.foreign_keys:
            assert set(fk.fields) <= set(table.columns) and len(fk.fields) == len(fk.reference_fields)


def test_reference_spellings_are_normalised(reference_catalog):
    # T_HADaaC has lower-case columns "format" and "vid_hosp_for".
    assert {"FORMAT", "VID_HOSP_FOR"} <= set(reference_catalog["T_HADaaC"].columns)
    # T_HADaaLEG spells its foreign key column ETA_NUM_ePMSI.
    assert reference_catalog["T_HADaaLEG"].foreign_keys[0].fields == ("ETA_NUM_EPMSI", "RHAD_NUM")
    # ER_PRS_F gives some foreign keys as a plain string.
    fks = {(fk.fields, fk.resource, fk.reference_fields) for fk in reference_catalog["ER_PRS_F"].foreign_keys}
    assert (("PFS_EXE_NUM",), "DA_PRA_R", ("PFS_PFS_NUM",)) in fks
    assert reference_catalog["IR_BEN_R"].primary_key == ("BEN_NIR_PSA", "BEN_RNG_GEM")
    assert reference_catalog["ER_PRS_F"].primary_key == domain.DCIR_KEYS
    assert reference_catalog["T_MCOaaC"].field("nir_ano_17").type == "string"


def test_reference_nomenclature_references(reference_catalog):
    assert reference_catalog["IR_BEN_R"].field("BEN_CDI_NIR").nomenclature == ("IR_NIR_V", "BEN_NIR_COD")
    # Most schemas name the nomenclature alone: kept, with the code column left to the nomenclature's schema.
    assert reference_catalog["IR_IBA_R"].field("BEN_CDI_NIR").nomenclature == ("IR_NIR_V", "")
    assert reference_catalog["ER_PRS_F"].field("DPN_QLF").nomenclature == ("IR_DEP_V", "")
    assert reference_catalog["ER_PRS_F"].field("BEN_NIR_PSA").nomenclature is None  # "-"
    with_nomenclature = sum(1 for t in reference_catalog for f in t.fields if f.nomenclature)
    assert with_nomenclature > 900


def test_locate_nomenclature(reference_nomenclatures, tmp_path):
    sex = locate_nomenclature(reference_nomenclatures, ("IR_SEX_V", ""))
    assert sex is not None and sex.code_column == "SEX_COD" and sex.path.name == "IR_SEX_V.csv"
    assert sex.path.read_text(encoding="utf-8").splitlines()[0].split(";")[0] == "SEX_COD"
    # A reference naming its code column keeps it; a CSV absent (some copies lack a few large ones) gives None.
    (tmp_path / "ORAVAL").mkdir()
    (tmp_path / "ORAVAL" / "IR_PHA_R.csv").write_text("PHA_CIP_C13;PHA_PRS_IDE\n1;2\n", encoding="utf-8")
    explicit = locate_nomenclature(tmp_path, ("IR_PHA_R", "PHA_PRS_IDE"))
    assert explicit.code_column == "PHA_PRS_IDE" and explicit.path == tmp_path / "ORAVAL" / "IR_PHA_R.csv"
    assert locate_nomenclature(tmp_path, ("IR_SEX_V", "")) is None
    assert locate_nomenclature(reference_nomenclatures, ("IR_NIR_V", "BEN_NIR_COD")).code_column == "BEN_NIR_COD"
    assert locate_nomenclature(reference_nomenclatures, ("NO_SUCH_V", "")) is None


@pytest.mark.parametrize("delivered, family, year", [
    ("T_MCO23B", "T_MCOaaB", 2023),
    ("T_MCO09C", "T_MCOaaC", 2009),
    ("T_MCO23FASTC", "T_MCOaaFASTC", 2023),
    ("T_MCO23FA", "T_MCOaaFA", 2023),
    ("T_MCO23CSTC", "T_MCOaaCSTC", 2023),
    ("T_MCO23C", "T_MCOaaC", 2023),
    ("T_MCO21UM", "T_MCOaaUM", 2021),
    ("T_SSR19B", "T_SSRaaB", 2019),
    ("T_HAD20C", "T_HADaaC", 2020),
    ("T_RIP22C", "T_RIPaaC", 2022),
    ("T_MCO22GV01", "T_MCOaaGVxx", 2022),
    ("t_mco23b", "T_MCOaaB", 2023),
    ("CT_IDE_2021_GN", "CT_IDE_AAAA_GN", 2021),
    ("ER_PRS_F", "ER_PRS_F", None),
    ("er_prs_f", "ER_PRS_F", None),
    ("IR_BEN_R", "IR_BEN_R", None),
])
def test_resolve(reference_catalog, delivered, family, year):
    table, got_year = reference_catalog.resolve(delivered)
    assert (table.name, got_year) == (family, year)


@pytest.mark.parametrize("delivered", ["T_MCOaaB", "T_MCO2023B", "T_XYZ23B", "T_MCO23", "ER_PRS", "T_MCO23BX"])
def test_resolve_unknown(reference_catalog, delivered):
    with pytest.raises(KeyError):
        reference_catalog.resolve(delivered)


def test_delivered_name_round_trip(reference_catalog):
    yearly = {t.name for t in reference_catalog if t.is_yearly}
    assert yearly == {t.name for t in reference_catalog if t.name.startswith("T_") or "_AAAA_" in t.name}
    for table in reference_catalog:
        for year in (2009, 2023):
            name = reference_catalog.delivered_name(table.name, year if table.is_yearly else None)
            assert reference_catalog.resolve(name) == (table, year if table.is_yearly else None), name
    assert reference_catalog.delivered_name("T_MCOaaB", 2023) == "T_MCO23B"
    assert reference_catalog.delivered_name("CT_IND_AAAA_GN", 2021) == "CT_IND_2021_GN"
    with pytest.raises(ValueError, match="year"):
        reference_catalog.delivered_name("T_MCOaaB", None)


def test_is_yearly_family_works_on_names_alone(reference_catalog):
    assert all(is_yearly_family(t.name) == t.is_yearly for t in reference_catalog)
    assert is_yearly_family("T_RIPaaFB") and not is_yearly_family("DA_PRA_R")


# --- Malformed schema files ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("document, message", [
    ("{not json", "unreadable schema"),
    (_schema(fields=[{"name": "A", "type": "text"}]), "unknown type 'text'"),
    ({"fields": [{"name": "A"}]}, "not a Table Schema document"),
    (_schema(fields=[{"type": "string"}]), "not a Table Schema document"),
    (_schema(fields="A,B"), "not a Table Schema document"),
    (_schema(primaryKey=["A", "C"]), "primaryKey of T_X names unknown columns \\['C'\\]"),
    (_schema(foreignKeys=[{"fields": ["C"], "reference": {"resource": "T_Y", "fields": ["C"]}}]), "foreign key"),
    (_schema(foreignKeys=[{"fields": ["A", "B"], "reference": {"resource": "T_Y", "fields": ["A"]}}]), "field counts"),
    (_schema(foreignKeys=[{"fields": ["A"]}]), "not a Table Schema document"),
    (_schema(fields=[{"name": "A", "type": "string"}, {"name": "a", "type": "string"}]), "declared twice"),
    (_schema(name=""), "non-empty string"),
])
def test_malformed_schema_names_the_file(tmp_path, document, message):
    path = _write(tmp_path / "schemas", "PRODUCT/BROKEN_TABLE.json", document)
    _write(tmp_path / "schemas", "PRODUCT/GOOD.json", _schema(name="GOOD"))
    with pytest.raises(CatalogError, match=message) as error:
        Catalog.load(tmp_path / "schemas")
    assert str(path) in str(error.value)


def test_catalog_folder_errors(tmp_path):
    with pytest.raises(CatalogError, match="schema folder not found"):
        Catalog.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatalogError, match="no Table Schema file"):
        Catalog.load(tmp_path / "empty")
    first = _write(tmp_path / "twice", "A/T.json", _schema(name="T"))
    second = _write(tmp_path / "twice", "B/T.json", _schema(name="T"))
    with pytest.raises(CatalogError, match="defined twice") as error:
        Catalog.load(tmp_path / "twice")
    assert str(second) in str(error.value) or str(first) in str(error.value)


def test_non_table_json_is_ignored(tmp_path):
    _write(tmp_path, "datapackage.json", {"name": "snds", "resources": []})
    _write(tmp_path, "P/T.json", _schema(name="T", primaryKey="A"))
    catalog = Catalog.load(tmp_path)
    assert list(catalog.tables) == ["T"] and catalog["T"].primary_key == ("A",)


def test_a_schema_snds_checkout_reads_its_table_schemas_not_its_nomenclatures(reference_schemas, reference_catalog,
                                                                            reference_nomenclatures):
    """Pointed at the checkout's top, the loader took its ~500 nomenclature schemas for delivered tables."""
    checkout = Catalog.load(reference_schemas.parent)
    assert set(checkout.tables) == set(reference_catalog.tables)
    located = locate_nomenclature(reference_schemas.parent, ("EXC_FIN_MTF", ""))
    assert located == locate_nomenclature(reference_nomenclatures, ("EXC_FIN_MTF", "")) and located is not None


def test_a_table_schema_with_its_data_beside_it_is_a_nomenclature(tmp_path):
    _write(tmp_path, "P/T.json", _schema(name="T"))
    _write(tmp_path, "codes/IR_X_V.json", _schema(name="IR_X_V"))
    _write(tmp_path, "codes/IR_X_V.csv", "A;B\n1;2\n")
    assert list(Catalog.load(tmp_path).tables) == ["T"]


def test_parse_table_defaults():
    table = parse_table({"name": "T", "fields": [{"name": "a"}, {"name": "b", "type": "date", "format": "%d%m%Y",
                                                                  "nomenclature": "IR_DTE_V"}]})
    assert table.columns == ("A", "B")
    assert table.field("a").type == "string" and table.field("a").format == "default"
    assert table.field("B").nomenclature == ("IR_DTE_V", "") and table.field("B").format == "%d%m%Y"
    assert table.missing_values == ("",) and table.title == "T" and not table.is_yearly


# --- The packaged catalog -----------------------------------------------------------------------------------------
def test_packaged_catalog_covers_the_required_tables(packaged_catalog):
    assert set(REQUIRED_TABLES) <= set(packaged_catalog.tables)
    for name in REQUIRED_TABLES:
        table = packaged_catalog[name]
        assert 5 <= len(table.columns) <= 30, (name, len(table.columns))
        assert table.title and table.product
        assert all(f.description for f in table.fields), name
    assert packaged_catalog.resolve("T_MCO23B") == (packaged_catalog["T_MCOaaB"], 2023)


@pytest.mark.parametrize("family", sorted(FEATURE_COLUMNS))
def test_packaged_catalog_has_the_columns_the_features_read(packaged_catalog, family):
    table = packaged_catalog[family]
    missing = FEATURE_COLUMNS[family] - set(table.columns)
    assert not missing, f"{family} lacks {sorted(missing)}"
    assert set(domain.required_columns(table)) <= set(table.columns)
    assert domain.identifier_columns(table) or domain.patient_path(packaged_catalog, family)


def test_packaged_tables_and_columns_agree_with_the_reference(packaged_catalog, reference_catalog):
    for table in packaged_catalog:
        assert table.name in reference_catalog, table.name
        ref = reference_catalog[table.name]
        assert table.product == ref.product, table.name
        for f in table.fields:
            assert f.name in ref.by_name, f"{table.name}.{f.name} is not in the reference"
            expected = ref.by_name[f.name]
            assert (f.type, f.format, f.length) == (expected.type, expected.format, expected.length), \
                f"{table.name}.{f.name}: {f.type}/{f.format}/{f.length} vs {expected.type}/{expected.format}/{expected.length}"
            # Read by year, so carried by the tables delivered by year: the columns a year's files have, an empty
            # return code's meaning (COH_NAI_RET from 2013), the stays that can be dated (EXE_SOI_DTD from 2009).
            history = expected.history if table.is_yearly else (None, None)
            assert f.history == history, f"{table.name}.{f.name}: {f.history} vs {history}"


def test_packaged_nomenclatures_agree_with_the_reference(packaged_catalog, reference_catalog, reference_nomenclatures):
    checked = 0
    for table in packaged_catalog:
        for f in table.fields:
            expected = reference_catalog[table.name].by_name[f.name].nomenclature
            if expected is None:
                assert f.nomenclature is None, f"{table.name}.{f.name}"
                continue
            assert f.nomenclature is not None and f.nomenclature[0] == expected[0], f"{table.name}.{f.name}"
            if expected[1]:
                assert f.nomenclature[1] == expected[1], f"{table.name}.{f.name}"
            # We always name the code column; it must be a column of that nomenclature.
            assert f.nomenclature[1], f"{table.name}.{f.name} should name its nomenclature's code column"
            schema = next(Path(reference_nomenclatures).rglob(f"{f.nomenclature[0]}.json"), None)
            assert schema is not None, f.nomenclature
            columns = {c["name"].upper() for c in json.loads(schema.read_text(encoding="utf-8"))["fields"]}
            assert f.nomenclature[1] in columns, f"{table.name}.{f.name}: {f.nomenclature}"
            checked += 1
    assert checked > 60


def test_packaged_keys_agree_with_the_reference(packaged_catalog, reference_catalog):
    for table in packaged_catalog:
        ref = reference_catalog[table.name]
        assert table.primary_key == ref.primary_key, table.name
        ours = {(fk.fields, fk.resource, fk.reference_fields) for fk in table.foreign_keys}
        theirs = {(fk.fields, fk.resource, fk.reference_fields) for fk in ref.foreign_keys}
        assert ours <= theirs, f"{table.name} declares foreign keys the reference lacks: {ours - theirs}"
        applicable = {fk for fk in theirs if set(fk[0]) <= set(table.columns)}
        assert applicable <= ours, f"{table.name} misses foreign keys: {applicable - ours}"
        for fields, resource, reference_fields in ours:
            if resource in packaged_catalog:
                assert set(reference_fields) <= set(packaged_catalog[resource].columns), (table.name, resource)


def test_packaged_schemas_are_our_own_writing(packaged_catalog, reference_catalog):
    for table in packaged_catalog:
        ref = reference_catalog[table.name]
        assert table.title != ref.title, table.name
        same = [f.name for f in table.fields if f.description == ref.by_name[f.name].description]
        assert not same, f"{table.name}: descriptions copied from the reference: {same}"
        assert len(table.columns) < len(ref.columns) or len(ref.columns) <= 12, table.name
    for path in Path(PACKAGED_SCHEMAS).rglob("*.json"):
        document = json.loads(path.read_text(encoding="utf-8"))
        assert not REFERENCE_ONLY_KEYS & set(document), path
        for f in document["fields"]:
            assert set(f) <= {"name", "description", "type", "format", "length", "nomenclature", "constraints",
                              "dateCreated", "dateDeleted"}, path
        assert path.stem == document["name"], path


def test_packaged_constraints_hold_for_snds_conventions(packaged_catalog):
    """Our constraints must not reject valid SNDS values: placeholders, regularisations, unknown dates."""
    for table in packaged_catalog:
        for f in table.fields:
            if f.name in domain.PSEUDO_NIR_COLUMNS:
                assert all(f.constraints.get(k, 17) == 17 for k in ("minLength", "maxLength")), f.name
                assert all(len(p) == 17 for p in domain.PLACEHOLDER_NIRS)
            if f.type in ("number", "integer") and any(part in f.name for part in ("QSN", "QTE", "MNT", "NBR")):
                assert "minimum" not in f.constraints, f"{table.name}.{f.name}: regularisations are negative"
            assert "unique" not in f.constraints, f"{table.name}.{f.name}: uniqueness belongs to primaryKey"


# --- Schema history and bare nomenclature references (mutation audit) ------------------------------------------
def test_field_history_bounds_are_created_inclusive_deleted_exclusive(reference_catalog):
    """A field created in C is in files of C; one deleted in D is not expected in files of D (dates or years)."""
    from snds_assets.catalog import Field

    field_ = Field("X", "string", date_created="2013", date_deleted="2017-03-01")
    assert [y for y in range(2010, 2020) if field_.in_use(y)] == [2013, 2014, 2015, 2016]
    assert Field("X", "string").in_use(1990) and Field("X", "string", date_created="2013-01-01").in_use(2013)
    assert not Field("X", "string", date_deleted="2013").in_use(2013)
    rpss = reference_catalog["T_HADaaB"].field("RPSS_VER")  # dateCreated 2005, dateDeleted 2010
    assert (rpss.in_use(2004), rpss.in_use(2005), rpss.in_use(2009), rpss.in_use(2010)) == (False, True, True, False)


def test_bare_nomenclature_reference_takes_the_role_code_else_the_last_key_column(tmp_path):
    """A nomenclature keyed on (group, code) is looked up on its code: the last primaryKey column."""
    for name, schema in {
        "N_LAST_V": {"name": "N_LAST_V", "fields": [{"name": "grp"}, {"name": "cod"}], "primaryKey": ["grp", "cod"]},
        "N_ROLE_V": {"name": "N_ROLE_V", "fields": [{"name": "lib"}, {"name": "cod", "role": "code"}],
                     "primaryKey": ["lib"]},
    }.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(schema), encoding="utf-8")
        (tmp_path / f"{name}.csv").write_text("A;B\n1;2\n", encoding="utf-8")
    (tmp_path / "N_CSV_V.csv").write_text("\ufeffcode_x;lib\n1;a\n", encoding="utf-8")
    assert locate_nomenclature(tmp_path, ("N_LAST_V", "")).code_column == "COD"
    assert locate_nomenclature(tmp_path, ("N_ROLE_V", "")).code_column == "COD"
    assert locate_nomenclature(tmp_path, ("N_CSV_V", "")).code_column == "CODE_X"
    assert locate_nomenclature(tmp_path, ("N_ROLE_V", ""), "b").code_column == "B"  # a column named like the field
    assert locate_nomenclature(tmp_path, ("N_ROLE_V", ""), "other").code_column == "COD"
    assert locate_nomenclature(tmp_path, ("N_ROLE_V", "A"), "b").code_column == "A"  # an explicit column stands
