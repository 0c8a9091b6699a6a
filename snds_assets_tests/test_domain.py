"""The domain model (keys, join graph, identifiers, load modes, schema defects, rules) on both catalogs."""
from __future__ import annotations

import re

import pytest

from snds_assets import domain
from snds_assets.catalog import Catalog, parse_table
from snds_assets.domain import Link

MCO_STAY = ("ETA_NUM", "RSA_NUM")
IDENTITY = ("BEN_NIR_PSA", "BEN_RNG_GEM")
SEVEN_KEYS = tuple(k for k in domain.DCIR_KEYS if k not in ("PRS_ORD_NUM", "REM_TYP_AFF"))


@pytest.fixture(params=["packaged_catalog", "reference_catalog"])
def catalog(request) -> Catalog:
    """Every test using this fixture runs on the packaged catalog and on the 188 reference schemas."""
    return request.getfixturevalue(request.param)


# --- Join graph -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["ER_PHA_F", "ER_CAM_F", "ER_BIO_F", "ER_UCD_F", "ER_ETE_F"])
def test_affiliated_dcir_tables_reach_the_patient_through_er_prs_f(catalog, family):
    assert domain.patient_path(catalog, family) == [Link(family, "ER_PRS_F", domain.DCIR_KEYS)]
    assert domain.identifier_columns(catalog[family]) == ()


def test_er_dct_f_joins_on_seven_keys(reference_catalog):
    table = reference_catalog["ER_DCT_F"]
    # The schema declares the nine keys; the documentation joins on seven, and the domain wins.
    assert reference_catalog["ER_DCT_F"].foreign_keys[0].fields == domain.DCIR_KEYS
    assert domain.dcir_keys("ER_DCT_F") == SEVEN_KEYS
    assert domain.patient_path(reference_catalog, "ER_DCT_F") == [Link("ER_DCT_F", "ER_PRS_F", SEVEN_KEYS)]
    to_prs = [link for link in domain.check_links(reference_catalog, table) if link.parent == "ER_PRS_F"]
    assert to_prs == [Link("ER_DCT_F", "ER_PRS_F", SEVEN_KEYS)]


@pytest.mark.parametrize("family", ["T_MCOaaD", "T_MCOaaA", "T_MCOaaB", "T_MCOaaUM"])
def test_mco_tables_reach_the_link_table_on_the_stay_key_same_year(catalog, family):
    assert domain.patient_path(catalog, family) == [Link(family, "T_MCOaaC", MCO_STAY, same_year=True)]
    assert domain.stay_key(catalog[family]) == MCO_STAY


@pytest.mark.parametrize("family, link_table, stay", [
    ("T_SSRaaB", "T_SSRaaC", ("ETA_NUM", "RHA_NUM")),
    ("T_HADaaB", "T_HADaaC", ("ETA_NUM_EPMSI", "RHAD_NUM")),
])
def test_ssr_and_had_stays(catalog, family, link_table, stay):
    assert domain.patient_path(catalog, family) == [Link(family, link_table, stay, same_year=True)]
    assert domain.patient_path(catalog, link_table) == []
    assert domain.identifier_columns(catalog[link_table]) == ("NIR_ANO_17",)


def test_reference_pmsi_fields(reference_catalog):
    assert domain.patient_path(reference_catalog, "T_RIPaaFA") == [
        Link("T_RIPaaFA", "T_RIPaaC", ("ETA_NUM_EPMSI", "RIP_NUM"), same_year=True)]
    assert domain.patient_path(reference_catalog, "T_SSRaaD") == [
        Link("T_SSRaaD", "T_SSRaaC", ("ETA_NUM", "RHA_NUM"), same_year=True)]
    # Outpatient tables hang by (ETA_NUM, SEQ_NUM) on the outpatient link table.
    assert domain.patient_path(reference_catalog, "T_MCOaaFBSTC") == [
        Link("T_MCOaaFBSTC", "T_MCOaaCSTC", ("ETA_NUM", "SEQ_NUM"), same_year=True)]
    # A yearly table carrying a NIR still reaches the patient through its field's link table.
    assert domain.patient_path(reference_catalog, "T_MCOaaFASTC")[0].parent == "T_MCOaaCSTC"
    with pytest.raises(LookupError, match="T_MCOaaE"):
        domain.patient_path(reference_catalog, "T_MCOaaE")


def test_every_reference_join_path_ends_at_a_patient_identifier(reference_catalog):
    reached = set()
    for table in reference_catalog:
        try:
            path = domain.patient_path(reference_catalog, table.name)
        except LookupError:
            continue
        end = reference_catalog[path[-1].parent] if path else table
        assert domain.identifier_columns(end), table.name
        for link in path:
            assert set(link.columns) <= set(reference_catalog[link.child].columns)
            assert set(link.parent_columns) <= set(reference_catalog[link.parent].columns)
        reached.add(table.name)
    # Every DCIR, PMSI stay, beneficiary and death table is reachable.
    must = {t.name for t in reference_catalog
            if t.name.startswith(("ER_", "IR_BEN", "IR_IMB", "KI_", "T_MCOaaC", "T_SSRaaB", "T_HADaaB"))}
    assert must and must <= reached, sorted(must - reached)
    assert len(reached) > 130


# --- Identifiers, keys, modes ---------------------------------------------------------------------------------------
def test_identifier_columns(catalog):
    assert domain.identifier_columns(catalog["IR_BEN_R"]) == IDENTITY
    assert domain.identifier_columns(catalog["ER_PRS_F"]) == IDENTITY
    assert domain.identifier_columns(catalog["IR_IMB_R"]) == IDENTITY
    assert domain.identifier_columns(catalog["IR_IBA_R"]) == ("BEN_IDT_ANO",)
    assert domain.identifier_columns(catalog["KI_CCI_R"]) == ("BEN_IDT_ANO",)
    assert domain.identifier_columns(catalog["KI_ECD_R"]) == ("BEN_IDT_ANO",)
    assert domain.identifier_columns(catalog["T_MCOaaC"]) == ("NIR_ANO_17",)
    assert domain.identifier_columns(catalog["T_RIPaaC"]) == ("NIR_ANO_17",)
    assert domain.identifier_columns(catalog["T_MCOaaB"]) == ()


def test_required_columns(catalog):
    assert domain.required_columns(catalog["ER_PRS_F"]) == domain.DCIR_KEYS + IDENTITY
    assert domain.required_columns(catalog["ER_PHA_F"]) == domain.DCIR_KEYS
    assert domain.required_columns(catalog["T_MCOaaD"]) == MCO_STAY
    assert domain.required_columns(catalog["T_MCOaaC"]) == MCO_STAY + ("NIR_ANO_17",)
    assert domain.required_columns(catalog["T_SSRaaB"]) == ("ETA_NUM", "RHA_NUM", "RHS_NUM")
    assert domain.required_columns(catalog["KI_CCI_R"]) == ()  # an unmatched death names no one (matched_death)
    assert domain.required_columns(catalog["IR_BEN_R"]) == IDENTITY


def test_a_file_must_carry_the_identifiers_its_rows_may_leave_empty(catalog, reference_catalog):
    """An unmatched death names no one, but a death file without BEN_IDT_ANO names no one at all; IR_BEN_R, where
    identifiers are resolved to persons, must carry the person."""
    assert domain.header_required_columns(catalog["KI_CCI_R"]) == ("BEN_IDT_ANO",)
    assert domain.header_required_columns(catalog["KI_ECD_R"]) == ("BEN_IDT_ANO",)
    assert domain.header_required_columns(catalog["IR_BEN_R"]) == IDENTITY + ("BEN_IDT_ANO",)
    assert domain.header_required_columns(catalog["IR_BEN_R_ARC"]) == IDENTITY + ("BEN_IDT_ANO",)
    for name in ("ER_PRS_F", "T_MCOaaC", "T_MCOaaD", "IR_IBA_R"):
        assert domain.header_required_columns(catalog[name]) == domain.required_columns(catalog[name]), name
    # A referential identified by the pseudo-NIR and rank carries BEN_IDT_ANO as one more attribute.
    assert domain.header_required_columns(reference_catalog["IR_ACS_R"]) == IDENTITY


def test_required_columns_of_a_year_follow_the_schema_history(reference_catalog):
    """A key or identifier column the schema dates is required of the files of the years that carry it only."""
    r3ad, fastc, had = (reference_catalog[n] for n in ("T_RIPaaR3AD", "T_MCOaaFASTC", "T_HADaaB"))
    assert domain.required_columns(r3ad) == ("ETA_NUM_EPMSI", "ORD_NUM", "SEJ_IDT")
    assert domain.required_columns(r3ad, 2010) == ("ETA_NUM_EPMSI", "ORD_NUM")
    assert domain.required_columns(r3ad, 2011) == domain.required_columns(r3ad)
    assert domain.required_columns(fastc, 2007) == ("ETA_NUM", "NIR_ANO_17")  # SEQ_NUM from 2008
    assert domain.required_columns(fastc, 2008) == ("ETA_NUM", "SEQ_NUM")  # NIR_ANO_17 dropped in 2008
    assert domain.required_columns(had, 2006) == ("RHAD_NUM",) and domain.required_columns(had, 2007) == (
        "ETA_NUM_EPMSI", "RHAD_NUM")


def test_patient_pseudonyms_cover_the_pseudonym_columns(catalog):
    pseudonyms = {c for t in catalog for c in t.columns if c in domain.PATIENT_PSEUDONYMS}
    assert {"BEN_NIR_PSA", "NIR_ANO_17", "BEN_IDT_ANO", "BEN_NIR_ANO", "ASS_NIR_ANO", "NIR_ANO_MAM"} <= pseudonyms
    assert domain.PROJECT_PSEUDONYMS["BEN_NIR_PSA"] == domain.PROJECT_PSEUDONYMS["NIR_ANO_17"] == "NUM_ENQ"


def test_default_mode(catalog):
    for table in catalog:
        pmsi_year = table.is_yearly and table.name.startswith(("T_MCO", "T_SSR", "T_HAD", "T_RIP", "T_SUP"))
        expected = domain.FULL if table.name.startswith(("IR_", "KI_")) or pmsi_year else domain.INCREMENTAL
        assert domain.default_mode(table) == expected, table.name
    assert domain.default_mode(catalog["IR_BEN_R"]) == "full"
    assert domain.default_mode(catalog["T_MCOaaB"]) == "full"
    assert domain.default_mode(catalog["ER_PRS_F"]) == "incremental"


def test_a_yearly_table_outside_the_pmsi_is_incremental_by_default(reference_catalog):
    """SPEC §2: full for referentials and PMSI year tables, incremental otherwise: the cartography of pathologies
    (CT_IDE_AAAA_GN) is delivered per year but is not PMSI."""
    for name in ("CT_IDE_AAAA_GN", "CT_DEP_AAAA_GN", "CT_IND_AAAA_GN"):
        table = reference_catalog[name]
        assert table.is_yearly and domain.default_mode(table) == domain.INCREMENTAL, name
    assert domain.default_mode(reference_catalog["T_SUPaaATU"]) == domain.FULL
    assert domain.default_mode(reference_catalog["T_RIPaaC"]) == domain.FULL


# --- Schema defects -----------------------------------------------------------------------------------------------
def test_effective_type_corrects_the_known_defects(catalog):
    mco_c, mco_b, ben = catalog["T_MCOaaC"], catalog["T_MCOaaB"], catalog["IR_BEN_R"]
    assert mco_c.field("NIR_RET").type == "boolean"
    for column in domain.PMSI_RETURN_CODES:
        assert domain.effective_type(mco_c, mco_c.field(column)) == "string", column
    assert mco_b.field("ETA_NUM").type == "integer"
    assert domain.effective_type(mco_b, mco_b.field("ETA_NUM")) == "string"
    assert ben.field("BEN_NAI_MOI").type == "date" and ben.field("BEN_NAI_MOI").format == "%m"
    assert domain.effective_type(ben, ben.field("BEN_NAI_MOI")) == "integer"
    assert domain.effective_type(mco_b, mco_b.field("SOR_MOI")) == "integer"
    # What is not a defect keeps its schema type.
    assert domain.effective_type(ben, ben.field("BEN_RNG_GEM")) == "integer"
    assert domain.effective_type(ben, ben.field("BEN_DCD_DTE")) == "date"
    assert domain.effective_type(mco_c, mco_c.field("EXE_SOI_DTD")) == "datetime"
    prs = catalog["ER_PRS_F"]
    assert domain.effective_type(prs, prs.field("PRS_PAI_MNT")) == "number"


def test_a_column_that_became_alphanumeric_is_curated_as_text(reference_catalog):
    """SNDS.md: IJR_EMP_NUM became alphanumeric in Nov. 2017; schema-snds still types it integer."""
    for name in ("ER_PRS_F", "EB_PRS_F"):
        table = reference_catalog[name]
        assert table.field("IJR_EMP_NUM").type == "integer"
        assert domain.effective_type(table, table.field("IJR_EMP_NUM")) == "string", name


def test_stay_keys_have_one_type_across_a_field(reference_catalog):
    # RSA_NUM is integer in T_MCOaaB/C and string in T_MCOaaA/D/UM: curated as a string everywhere.
    assert reference_catalog["T_MCOaaB"].field("RSA_NUM").type == "integer"
    assert reference_catalog["T_MCOaaD"].field("RSA_NUM").type == "string"
    for table in reference_catalog:
        for column in domain.stay_key(table):
            assert domain.effective_type(table, table.field(column)) == "string", (table.name, column)


def test_every_checked_link_compares_columns_of_one_type(catalog):
    compared = 0
    for table in catalog:
        for link in domain.check_links(catalog, table):
            if link.parent not in catalog:
                continue
            parent = catalog[link.parent]
            for child_column, parent_column in link.pairs:
                child_type = domain.effective_type(table, table.field(child_column))
                parent_type = domain.effective_type(parent, parent.field(parent_column))
                assert child_type == parent_type, (table.name, child_column, link.parent, parent_column)
                compared += 1
    assert compared > 50


def test_unique_constraints_known_false_are_ignored(reference_catalog, packaged_catalog):
    ben = reference_catalog["IR_BEN_R"]
    # The defect is in the reference...
    assert ben.field("BEN_NIR_PSA").constraints.get("unique") is True
    assert ben.field("BEN_IDT_ANO").constraints.get("unique") is True
    # ...and the domain knows to ignore it, in both catalogs.
    for catalog in (reference_catalog, packaged_catalog):
        table = catalog["IR_BEN_R"]
        assert domain.ignores_unique(table, table.field("BEN_NIR_PSA"))
        assert domain.ignores_unique(table, table.field("BEN_IDT_ANO"))
        assert not domain.ignores_unique(table, table.field("BEN_RNG_GEM"))


def test_nomenclature_checks(catalog):
    ben = catalog["IR_BEN_R"]
    assert ben.field("BEN_DCD_DTE").nomenclature[0] == "IR_DTE_V"
    assert not domain.nomenclature_checked(ben.field("BEN_DCD_DTE"))
    assert domain.nomenclature_checked(ben.field("BEN_SEX_COD"))
    assert domain.nomenclature_checked(catalog["IR_IBA_R"].field("BEN_SEX_COD"))  # bare "IR_SEX_V" in the reference
    assert domain.nomenclature_checked(catalog["ER_PRS_F"].field("DPN_QLF"))
    assert not domain.nomenclature_checked(ben.field("BEN_NIR_PSA"))
    for table in catalog:
        for f in table.fields:
            if f.nomenclature and f.nomenclature[0] == "IR_DTE_V":
                assert not domain.nomenclature_checked(f), (table.name, f.name)


def test_a_measure_is_checked_against_no_nomenclature(reference_catalog):
    """schema-snds ties six amounts, prices and quantities to code lists (ER_CAM_F's CAM_RED_MNT to IR_FOR_V, EB_PHA_F's
    PHA_ACT_QSN to IR_PHA_R's CIP codes): every real value failed. Codes named by the same words stay checked."""
    measures = {(t.name, f.name) for t in reference_catalog for f in t.fields
                if f.nomenclature and f.type != "date" and not domain.nomenclature_checked(f)
                and f.nomenclature[0] != "IR_DTE_V"}
    assert measures == {("ER_CAM_F", "CAM_RED_MNT"), ("EB_PHA_F", "PHA_ACT_QSN"), ("EB_PHA_F", "PHA_DEC_PRU"),
                        ("EB_PHA_F", "PHA_DEC_QSU"), ("NS_DTR_F", "TRS_ACT_QSN"), ("NS_PHA_F", "PHA_ACT_QSC")}
    assert domain.nomenclature_checked(reference_catalog["ER_ARO_F"].field("ARO_THE_TAU"))  # a rate is a code
    assert domain.nomenclature_checked(reference_catalog["NS_DTR_F"].field("TRS_TRS_MTF"))


def test_dat_ret_enum_is_not_checked(reference_catalog):
    dat_ret = reference_catalog["T_MCOaaC"].field("DAT_RET")
    assert dat_ret.constraints.get("enum") == ["0"]
    assert not domain.enum_checked(dat_ret)
    assert domain.enum_checked(reference_catalog["T_MCOaaB"].field("SEJ_TYP"))


# --- Checked links --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["IR_IMB_R", "ER_PRS_F"])
def test_identity_links_use_the_rank(catalog, family):
    links = [link for link in domain.check_links(catalog, catalog[family]) if link.parent == "IR_BEN_R"]
    assert links == [Link(family, "IR_BEN_R", IDENTITY)]
    assert links[0].parent_columns == IDENTITY


def test_pmsi_identity_link_is_on_the_pseudo_nir(catalog):
    links = {link.parent: link for link in domain.check_links(catalog, catalog["T_MCOaaC"])}
    assert links["IR_BEN_R"].columns == ("NIR_ANO_17",)
    assert links["IR_BEN_R"].parent_columns == ("BEN_NIR_PSA",)
    assert not links["IR_BEN_R"].same_year
    assert links["T_MCOaaB"] == Link("T_MCOaaC", "T_MCOaaB", MCO_STAY, same_year=True)


def test_links_to_differently_named_and_absent_parents(catalog):
    had = {link.parent: link for link in domain.check_links(catalog, catalog["T_HADaaB"])}
    # T_HADaaE is not in the packaged catalog: the link is kept (reported "not evaluated"), still same-year.
    assert had["T_HADaaE"].pairs == (("ETA_NUM_EPMSI", "ETA_NUM"),) and had["T_HADaaE"].same_year
    assert had["T_HADaaC"] == Link("T_HADaaB", "T_HADaaC", ("ETA_NUM_EPMSI", "RHAD_NUM"), same_year=True)
    deaths = {link.parent: link.columns for link in domain.check_links(catalog, catalog["KI_CCI_R"])}
    assert deaths == {"IR_BEN_R": ("BEN_IDT_ANO",), "IR_IBA_R": ("BEN_IDT_ANO",)}
    prs = [link for link in domain.check_links(catalog, catalog["ER_PRS_F"]) if link.parent == "DA_PRA_R"]
    assert ("PFS_EXE_NUM", "PFS_PFS_NUM") in [link.pairs[0] for link in prs]
    for link in domain.check_links(catalog, catalog["ER_PHA_F"]):
        assert link == Link("ER_PHA_F", "ER_PRS_F", domain.DCIR_KEYS)


def test_identity_link_on_the_pseudo_nir_alone_is_upgraded():
    table = parse_table({
        "name": "IR_XYZ_R",
        "fields": [{"name": "BEN_NIR_PSA", "type": "string"}, {"name": "BEN_RNG_GEM", "type": "integer"}],
        "foreignKeys": [{"fields": "BEN_NIR_PSA", "reference": {"resource": "IR_BEN_R", "fields": "BEN_NIR_PSA"}}],
    })
    assert domain.check_links(Catalog({table.name: table}), table) == [Link("IR_XYZ_R", "IR_BEN_R", IDENTITY)]


def test_link_parent_columns():
    assert Link("A", "B", ("X",)).parent_columns == ("X",)
    assert Link("A", "B", ("X", "Y"), parent_columns=("U", "V")).pairs == (("X", "U"), ("Y", "V"))
    with pytest.raises(ValueError, match=r"link A -> B: \('X', 'Y'\) vs \('U',\)"):
        Link("A", "B", ("X", "Y"), parent_columns=("U",))


# --- Business rules ----------------------------------------------------------------------------------------------
def test_domain_rules_of_the_pmsi_link_tables(catalog):
    for family in ("T_MCOaaC", "T_SSRaaC", "T_HADaaC", "T_RIPaaC"):
        rules = domain.domain_rules(catalog[family])
        return_codes = {r.column for r in rules if r.name == "return_code"}
        assert return_codes == set(domain.PMSI_RETURN_CODES), family
        assert all(set(r.values) == ({"0", "1", "9"} if r.column == "NAI_RET" else {"0", "1"})
                   for r in rules if r.name == "return_code")
        assert "pseudo_nir_length" in {r.name for r in rules}
    assert not [r for r in domain.domain_rules(catalog["T_MCOaaB"]) if r.name == "return_code"]


def test_domain_rules_of_dcir_and_referentials(catalog):
    prs = {r.name for r in domain.domain_rules(catalog["ER_PRS_F"])}
    assert {"sex_code", "nir_code", "care_before_flow", "care_period", "dpn_qlf", "monthly_flow"} <= prs
    assert {"sex_code", "nir_code"} <= {r.name for r in domain.domain_rules(catalog["IR_BEN_R"])}
    assert [r.name for r in domain.domain_rules(catalog["ER_PHA_F"])] == ["monthly_flow"]


def test_year_columns_are_bounded_by_range_only(catalog):
    """A birth year after the delivery, or before 1900 and not 1600, fails ``range`` once: a second, looser
    domain rule on the same column (1890 to today's year) counted it twice, by other bounds."""
    for table in catalog:
        years = {f.name for f in table.fields if domain.effective_type(table, f) == "year"}
        assert not [r for r in domain.domain_rules(table) if r.column in years], table.name


def test_domain_rules_only_name_columns_of_their_table(catalog):
    sql_words = {"DATE", "RLIKE", "BETWEEN", "CAST", "STRING", "TIMESTAMP", "NULL", "AND", "OR", "INT", "AS"}
    for table in catalog:
        for rule in domain.domain_rules(table):
            assert rule.column in table.by_name, (table.name, rule.name)
            named = set(re.findall(r"\b[A-Z][A-Z0-9_]{3,}\b", rule.expr)) - sql_words
            assert named <= set(table.columns), (table.name, rule.name, named - set(table.columns))


def test_sex_code_rule_accepts_every_code_of_its_nomenclature(catalog, reference_nomenclatures):
    """IR_SEX_V, the nomenclature of BEN_SEX_COD, lists 0 (unknown, or a legal person) beside 1, 2 and 9: the
    domain rule must not flag a code the reference itself gives."""
    with (reference_nomenclatures / "ORAVAL" / "IR_SEX_V.csv").open(encoding="utf-8") as handle:
        codes = {line.split(";", 1)[0] for line in handle.read().splitlines()[1:] if line}
    (rule,) = [r for r in domain.domain_rules(catalog["IR_BEN_R"]) if r.name == "sex_code"]
    assert codes == {"0", "1", "2", "9"} and set(rule.values) == codes


def test_nir_code_rule_accepts_every_code_of_its_nomenclature(spark, catalog, reference_nomenclatures):
    """IR_NIR_V lists NN ("sans objet") beside its two-digit codes: the rule flagged it. Its fictitious codes
    (TOP_NIR_SNI = 1) are the ones the domain model names: 02, 07 and 10 are not codes of it."""
    with (reference_nomenclatures / "ORAVAL" / "IR_NIR_V.csv").open(encoding="utf-8") as handle:
        rows = [line.split(";") for line in handle.read().splitlines()[1:] if line]
    (rule,) = [r for r in domain.domain_rules(catalog["IR_BEN_R"]) if r.name == "nir_code"]
    codes = spark.createDataFrame([(r[0],) for r in rows] + [("N1",), ("100",)], "BEN_CDI_NIR string")
    failing = {r["BEN_CDI_NIR"] for r in codes.where(f"NOT ({rule.expr})").collect()}
    assert "NN" in {r[0] for r in rows} and failing == {"N1", "100"}
    assert domain.FICTITIOUS_NIR_CODES == {r[0] for r in rows if r[2] == "1"}


@pytest.mark.parametrize("family, column", [("ER_PRS_F", "BEN_NIR_PSA"), ("IR_BEN_R", "BEN_NIR_PSA"),
                                            ("IR_IMB_R", "BEN_NIR_PSA"), ("T_MCOaaC", "NIR_ANO_17")])
def test_every_pseudo_nir_column_is_checked_to_have_17_characters(catalog, family, column):
    """SNDS.md: BEN_NIR_PSA and NIR_ANO_17 are the same 17-character pseudo-NIR (placeholders included)."""
    rules = [r for r in domain.domain_rules(catalog[family]) if r.name == "pseudo_nir_length"]
    assert [r.column for r in rules] == [column]
    assert rules[0].expr == f"length({column}) = 17"


def test_only_nai_ret_may_hold_9(catalog):
    """schema-snds/SOURCE.md: return codes hold '0' / '1', and '9' for NAI_RET only."""
    rules = {r.column: set(r.values) for r in domain.domain_rules(catalog["T_MCOaaC"]) if r.name == "return_code"}
    assert rules.pop("NAI_RET") == {"0", "1", "9"}
    assert rules and all(values == {"0", "1"} for values in rules.values())


def test_a_version_number_is_not_held_to_its_schema_snapshot(reference_catalog):
    """schema-snds lists the version and format numbers of the years it was written from (GRG_VER ['11'], RSS_NUM
    ['224']): a delivery of another year is no domain failure. Other enums stay checked."""
    b = reference_catalog["T_MCOaaB"]
    assert b.by_name["GRG_VER"].constraints["enum"] == ["11"]
    assert not domain.enum_checked(b.by_name["GRG_VER"]) and not domain.enum_checked(b.by_name["RSS_NUM"])
    assert not domain.enum_checked(reference_catalog["T_MCOaaC"].by_name["FOR_NUM"])
    assert domain.enum_checked(b.by_name["SEJ_TYP"]) and domain.enum_checked(b.by_name["COD_SEX"])


# --- Contract lists, curation order, numeric floors (mutation audit) ---------------------------------------------
SPEC_RETURN_CODES = {"NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET", "DAT_RET",
                     "COH_NAI_RET", "COH_SEX_RET"}  # SPEC §3, SNDS.md


def test_return_codes_and_placeholders_are_the_specs(catalog):
    """Identification filters on exactly these: a code or placeholder lost here lets a bad link through."""
    assert set(domain.PMSI_RETURN_CODES) == SPEC_RETURN_CODES
    assert domain.PLACEHOLDER_NIRS == {"xxxxxxxxxxxxxxxxx", "XXXXXXXXXXXXXXXXS"}
    mco_c = catalog["T_MCOaaC"]
    checked = {r.column for r in domain.domain_rules(mco_c) if r.name == "return_code"}
    assert checked == SPEC_RETURN_CODES & set(mco_c.columns) and "COH_SEX_RET" in checked


def test_curation_order_is_acyclic_and_defers_the_stay_key_cycle(catalog):
    import graphlib

    graph = domain.acyclic_parents(catalog)
    list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a cycle
    assert domain.cyclic_parents(catalog)["T_MCOaaC"] == ["T_MCOaaB"]
    assert "T_MCOaaC" in graph["T_MCOaaB"]


def test_signed_dcir_quantity_floor_mirrors_its_maximum():
    def bounds(table_name, **constraints):
        table = parse_table({"name": table_name, "fields": [{"name": "PRS_ACT_QTE", "type": "integer",
                                                            "constraints": constraints}]})
        return domain.numeric_bounds(table, table.field("PRS_ACT_QTE"))

    assert bounds("ER_PRS_F", minimum=0, maximum=999) == (-999, 999)
    assert bounds("ER_PRS_F", minimum=-5000, maximum=999) == (-5000, 999)
    assert bounds("ER_PRS_F", minimum=0) == (None, None)
    assert bounds("IR_XXX_R", minimum=0, maximum=999) == (0, 999)


def test_every_finess_column_of_integer_type_is_curated_as_string():
    table = parse_table({"name": "T_MCOaaB", "fields": [{"name": n, "type": "integer"}
                                                        for n in ("ETA_NUM", "RSA_NUM", "ETA_NUM_GEO", "AGE_ANN")]})
    types = {f.name: domain.effective_type(table, f) for f in table.fields}
    assert types == {"ETA_NUM": "string", "RSA_NUM": "string", "ETA_NUM_GEO": "string", "AGE_ANN": "integer"}


def test_an_archive_keeps_no_foreign_key_to_its_current_table():
    ben = parse_table({"name": "IR_BEN_R", "fields": [{"name": "BEN_NIR_PSA"}, {"name": "BEN_RNG_GEM"}],
                       "foreignKeys": [{"fields": "BEN_NIR_PSA", "reference": {"resource": "IR_BEN_R",
                                                                               "fields": "BEN_NIR_PSA"}},
                                       {"fields": "BEN_NIR_PSA", "reference": {"resource": "IR_NIR_V",
                                                                               "fields": "BEN_NIR_PSA"}}]})
    archive = domain.with_archives({"IR_BEN_R": ben})["IR_BEN_R_ARC"]
    assert [fk.resource for fk in archive.foreign_keys] == ["IR_NIR_V"]
    assert archive.columns == ben.columns
