"""SNDS knowledge, declared once: identifiers, keys, join graph, load modes, business rules, schema defects.

Everything else (curation, checks, generator, extraction) reads this module instead of naming SNDS columns
itself. Sources: ../shared/SNDS.md and schema-snds/SOURCE.md.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date

from .catalog import Catalog, Field, Table, is_yearly_family

# --- Keys -----------------------------------------------------------------------------------------------
DCIR_KEYS: tuple[str, ...] = (
    "DCT_ORD_NUM", "FLX_DIS_DTD", "FLX_EMT_NUM", "FLX_EMT_ORD", "FLX_EMT_TYP",
    "FLX_TRT_DTD", "ORG_CLE_NUM", "PRS_ORD_NUM", "REM_TYP_AFF",
)
# The documentation joins ER_DCT_F on seven of the nine keys.
DCIR_KEYS_OVERRIDE: dict[str, tuple[str, ...]] = {
    "ER_DCT_F": tuple(k for k in DCIR_KEYS if k not in ("PRS_ORD_NUM", "REM_TYP_AFF")),
}
DCIR_CENTRAL = "ER_PRS_F"
BENEFICIARY_TABLE = "IR_BEN_R"  # the referential of identities: where identifiers are resolved
YEAR_COLUMN = "PMSI_YEAR"  # the year of a yearly table, kept in the curated data
# Archives that CNAM delivers as tables of their own, with the layout of a current table, and that are read
# together with it (SNDS.md). No reference schema describes them: the catalog derives theirs.
ARCHIVES: dict[str, str] = {"IR_BEN_R_ARC": BENEFICIARY_TABLE}


@dataclass(frozen=True)
class PmsiField:
    """One PMSI field (MCO, SSR, ...) and how its tables reach the patient link table (``C``)."""

    name: str
    prefix: str  # family prefix, e.g. "T_MCOaa"
    link_table: str  # the table carrying NIR_ANO_17
    stay_key: tuple[str, ...]
    week_key: tuple[str, ...] = ()  # what tells a stay's weekly rows apart (SSR: RHS_NUM)


PMSI_FIELDS: tuple[PmsiField, ...] = (
    PmsiField("MCO", "T_MCOaa", "T_MCOaaC", ("ETA_NUM", "RSA_NUM")),
    PmsiField("MCO outpatient", "T_MCOaa", "T_MCOaaCSTC", ("ETA_NUM", "SEQ_NUM")),
    PmsiField("SSR", "T_SSRaa", "T_SSRaaC", ("ETA_NUM", "RHA_NUM"), week_key=("RHS_NUM",)),
    PmsiField("SSR outpatient", "T_SSRaa", "T_SSRaaCSTC", ("ETA_NUM", "SEQ_NUM")),
    PmsiField("HAD", "T_HADaa", "T_HADaaC", ("ETA_NUM_EPMSI", "RHAD_NUM")),
    PmsiField("RIM-P", "T_RIPaa", "T_RIPaaC", ("ETA_NUM_EPMSI", "RIP_NUM")),
)

# --- Patient identifiers -------------------------------------------------------------------------------
PSEUDO_NIR_COLUMNS = ("BEN_NIR_PSA", "NIR_ANO_17")  # the same 17-character pseudo-NIR
RANK_COLUMN = "BEN_RNG_GEM"
PERSON_COLUMN = "BEN_IDT_ANO"
DEATH_MATCHED = "DCD_IDT_TOP"  # CépiDc: 1 when the death record was matched to a beneficiary (IR_BEN_R)
NIR_ANO_COLUMN = "BEN_NIR_ANO"
# Project pseudonym that replaces each SNDS pseudonym in extracts (SPEC §3).
PROJECT_PSEUDONYMS: dict[str, str] = {
    "BEN_NIR_PSA": "NUM_ENQ",
    "NIR_ANO_17": "NUM_ENQ",
    "BEN_IDT_ANO": "NUM_ENQ_IDT",
    "BEN_NIR_ANO": "NUM_ENQ_ANO",
}
# Other columns that hold a patient pseudonym: keyed-hashed in place in extracts. DCD_IDT_ENC (one per death),
# ID_CARTO (cartography's beneficiary id), IPP_IRR_CRY (RIM-P: the hospital's permanent patient id, irreversibly
# encrypted) and ID_MAM_ENF (MCO: the mother-child chaining number) would otherwise let two projects link their
# patients.
OTHER_PATIENT_PSEUDONYMS: frozenset[str] = frozenset({
    "ASS_NIR_ANO", "NIR_ANO_MAM", "BEN_NIR_IDT", "BEN_RAT_ANO", "DCD_IDT_ENC", "ID_CARTO", "IPP_IRR_CRY",
    "ID_MAM_ENF",
})
PATIENT_PSEUDONYMS: frozenset[str] = frozenset(PROJECT_PSEUDONYMS) | OTHER_PATIENT_PSEUDONYMS
# An other pseudonym drawn from the same space as a project pseudonym's column, hashed with that column's key so
# that equal values stay equal: ASS_NIR_ANO (the insured's pseudonymised NIR, 17 characters) is the BEN_NIR_ANO
# of the beneficiary who opens the rights. NIR_ANO_MAM (32 characters, a mother-child number) is not a pseudo-NIR.
SAME_SPACE_AS: dict[str, str] = {"ASS_NIR_ANO": NIR_ANO_COLUMN}
PLACEHOLDER_NIRS: frozenset[str] = frozenset({"xxxxxxxxxxxxxxxxx", "XXXXXXXXXXXXXXXXS"})
PMSI_RETURN_CODES: tuple[str, ...] = (
    "NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET", "DAT_RET", "COH_NAI_RET", "COH_SEX_RET",
)
# SPEC §3: "COH_NAI_RET, COH_SEX_RET where present": a file that does not bring them holds no bad link by them.
RETURN_CODES_WHERE_PRESENT: frozenset[str] = frozenset({"COH_NAI_RET", "COH_SEX_RET"})
BIRTH_YEAR_COLUMN = "BEN_NAI_ANN"
SEX_COLUMN = "BEN_SEX_COD"
# BEN_CDI_NIR codes of a fictitious NIR (IR_NIR_V's TOP_NIR_SNI = 1: IVG, IST, minors' contraception...).
FICTITIOUS_NIR_CODES = frozenset({"01", "05", "06", "08", "09", "11", "12", "13", "14", "15"})

# --- Dates ------------------------------------------------------------------------------------------------
UNKNOWN_DATE = date(1600, 1, 1)  # the SNDS convention for a missing date, not an error
UNKNOWN_YEAR = 1600
PLAUSIBLE_FIRST_DATE = date(1900, 1, 1)
# The base keeps 19 years plus the current one (SNDS.md): a DCIR flow released before them is no line it holds.
RETAINED_YEARS = 19
RETAINED_DATES: frozenset[str] = frozenset({"FLX_DIS_DTD"})


def first_retained_day(delivery: date) -> date:
    """The first day of the base's retention at ``delivery``: 1 January nineteen years before its year."""
    return date(delivery.year - RETAINED_YEARS, 1, 1)


# Ends of a right, an exemption, a contract or a rental: routinely after the delivery (an ALD granted until
# 2031), so the range check bounds them from below only. Ends of care and of stays are in the past.
OPEN_END_DATES: frozenset[str] = frozenset({
    "IMB_ALD_DTF", "BEN_EXO_DTF", "FAM_DRT_DSF", "MTT_FIN_DTE", "MLL_CTA_DSF", "TIP_ACL_DTF", "DAT_FIN_CON",
    "IDE_IDE_FAM", "IDE_IDE_FAS", "IDE_IDE_FON", "IDE_IDE_FTR", "IDE_CBU_DTF",
})
INFORMATION_ONLY_DPN_QLF = 71
# Quantities and counts of DCIR lines: a regularisation repeats a line with a negative quantity (SNDS.md).
SIGNED_QUANTITY_PARTS = ("_QTE", "_QSN", "_NBR", "_MNT")

def archives_of(family: str) -> tuple[str, ...]:
    """The archives read together with ``family`` (IR_BEN_R: IR_BEN_R_ARC)."""
    return tuple(archive for archive, current in ARCHIVES.items() if current == family)


def with_archives(tables: dict[str, Table]) -> dict[str, Table]:
    """``tables`` plus each archive whose current table is there and that has no schema of its own."""
    out = dict(tables)
    for archive, current in ARCHIVES.items():
        if current in out and archive not in out:
            table = out[current]
            out[archive] = replace(table, name=archive, title=f"{table.title} (archive)",
                                   foreign_keys=tuple(fk for fk in table.foreign_keys if fk.resource != current))
    return out


# --- Load modes -------------------------------------------------------------------------------------------
FULL, INCREMENTAL = "full", "incremental"


def default_mode(table: Table) -> str:
    """SPEC §2: referentials and PMSI year tables are full, the rest incremental (the yearly cartography
    tables ``CT_*_AAAA_GN`` too: they are not PMSI)."""
    if table.name.startswith(("IR_", "KI_")) or (table.is_yearly and is_pmsi(table)):
        return FULL
    return INCREMENTAL


def is_pmsi(table: Table) -> bool:
    """A table of the PMSI (its schema's product is ``PMSI MCO``, ``PMSI SSR``, ...)."""
    return table.product.split(" ")[0] == "PMSI"


# --- Known schema defects (schema-snds/SOURCE.md) and typing decisions ---------------------------------
def is_return_code(column: str) -> bool:
    """The PMSI link-quality return codes (all must be '0' for a usable patient link)."""
    return column in PMSI_RETURN_CODES


# Columns that SNDS.md says became alphanumeric, which schema-snds still types as numbers: typed as numbers,
# every value of a later year would be rejected.
TEXT_SINCE_DRIFT: dict[str, date] = {"IJR_EMP_NUM": date(2017, 11, 1)}  # an employer number: digits before then


def effective_type(table: Table, field: Field) -> str:
    """The type we curate a field to, correcting the schema's known defects.

    - PMSI return codes (every ``*_RET`` of a PMSI table) are typed boolean but hold '0' / '1' / '9': strings.
    - FINESS numbers (ETA_NUM*) are typed integer but Corsican ones hold letters (2A, 2B): strings.
    - PMSI stay keys are integer in some tables of a field and string in others (RSA_NUM: integer in
      T_MCOaaB/C, string in T_MCOaaA/D/UM): strings everywhere, so that joins compare like with like.
    - A ``date`` whose format is a lone month (``%m``) holds a month number: integer.
    - A column that became alphanumeric while the schema kept it a number (``TEXT_SINCE_DRIFT``): string.
    """
    if field.type == "boolean" and (is_return_code(field.name) or (table.is_yearly and field.name.endswith("_RET"))):
        return "string"
    if field.name.startswith("ETA_NUM") and field.type in ("integer", "number"):
        return "string"
    if field.type in ("integer", "number") and field.name in stay_key(table):
        return "string"
    if is_month(field):
        return "integer"
    if field.name in TEXT_SINCE_DRIFT and field.type in ("integer", "number"):
        return "string"
    return field.type


def numeric_bounds(table: Table, field: Field) -> tuple[float | None, float | None]:
    """The schema's ``minimum`` / ``maximum`` of a numeric field, as the range check applies them.

    A DCIR quantity is negative on a regularisation line, so schema-snds' floor of 0 (PRS_ACT_QTE, PRS_ACT_NBR)
    would flag every regularisation: its floor is the mirror of its maximum instead (none without a maximum).
    """
    def number(value: object) -> float | None:
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    lo, hi = number(field.constraints.get("minimum")), number(field.constraints.get("maximum"))
    if is_signed_quantity(table, field.name):
        lo = None if hi is None else -hi if lo is None else min(lo, -hi)
    return lo, hi


def is_signed_quantity(table: Table, column: str) -> bool:
    """A DCIR quantity, count or amount, which a regularisation line gives negative."""
    return table.name.startswith("ER_") and any(part in column for part in SIGNED_QUANTITY_PARTS)


def is_month(field: Field) -> bool:
    """A ``date`` whose format is a lone month (``%m``): a month number, 1 to 12."""
    return field.type == "date" and field.format == "%m"


def ignores_unique(table: Table, field: Field) -> bool:
    """IR_BEN_R declares BEN_NIR_PSA and BEN_IDT_ANO unique, knowingly false (twins, several identities)."""
    return field.name in (PSEUDO_NIR_COLUMNS + (PERSON_COLUMN,))


# The class words of an amount (MNT), a price (PRU), a quantity (QTE, QSN, QSU, QSC) or a count (NBR): a measure,
# never a code, whatever nomenclature its schema names (ER_CAM_F's CAM_RED_MNT names IR_FOR_V's codes 0-9).
MEASURE_PARTS: frozenset[str] = frozenset({"MNT", "PRU", "QTE", "QSN", "QSU", "QSC", "NBR"})


def is_measure(field: Field) -> bool:
    return not MEASURE_PARTS.isdisjoint(field.name.upper().split("_"))


def nomenclature_checked(field: Field) -> bool:
    """IR_DTE_V is a calendar, not a code list: dates are checked by range rules instead; a measure is no code
    (``MEASURE_PARTS``): every real amount or quantity would fail its schema's nomenclature."""
    return (field.nomenclature is not None and field.nomenclature[0] != "IR_DTE_V" and field.type != "date"
            and not is_measure(field))


# Version and format numbers whose schema enum lists the values of the years the schema was written from (T_MCOaaB
# GRG_VER ['11'], RSS_NUM ['224']; T_MCOaaC FOR_NUM; TAR_SEQ_NUM): every year brings a new one, which is no error.
VERSION_COLUMNS: frozenset[str] = frozenset({"GRG_VER", "RSS_NUM", "FOR_NUM", "TAR_SEQ_NUM"})


def enum_checked(field: Field) -> bool:
    """DAT_RET declares an enum of '0' only, although any return code is '1' on a bad link; a version number's enum
    is a snapshot (``VERSION_COLUMNS``)."""
    return (bool(field.constraints.get("enum")) and not is_return_code(field.name)
            and field.name not in VERSION_COLUMNS)


# --- Identifier and key columns of a table ----------------------------------------------------------------
def identifier_columns(table: Table) -> tuple[str, ...]:
    """Columns that identify the patient in this table (a row without them cannot be linked)."""
    cols = set(table.columns)
    if {"BEN_NIR_PSA", RANK_COLUMN} <= cols:
        return ("BEN_NIR_PSA", RANK_COLUMN)
    for column in ("NIR_ANO_17", PERSON_COLUMN, "BEN_NIR_PSA"):
        if column in cols:
            return (column,)
    return ()


def key_columns(table: Table) -> tuple[str, ...]:
    """Primary key of the table, or the join key it hangs by when it has none."""
    if table.primary_key:
        return table.primary_key
    link = parent_link(table)
    return link.columns if link else ()


def required_columns(table: Table, year: int | None = None) -> tuple[str, ...]:
    """Key and identifier columns: missing from a file is an ERROR; empty in a row sends it to rejects.

    A death record (KI_*) that CépiDc could not match to a beneficiary (``DEATH_MATCHED`` not 1) has no
    BEN_IDT_ANO: it is a record all the same, so the person is not required there (the ``matched_death`` rule
    checks that a matched record names its person). For files of a PMSI ``year``, a column the schema's history
    says they do not carry yet, or no longer (``Field.in_use``), is not required of them: T_RIP10R3AD has no
    SEJ_IDT (2011), T_MCO20FASTC no NIR_ANO_17 (dropped in 2008), T_HAD05B no ETA_NUM_EPMSI (2007)."""
    optional = {PERSON_COLUMN} if DEATH_MATCHED in table.by_name else set()
    out: list[str] = []
    for column in key_columns(table) + identifier_columns(table):
        if column in table.by_name and column not in out and column not in optional:
            if year is None or table.by_name[column].in_use(year):
                out.append(column)
    return tuple(out)


def header_required_columns(table: Table, year: int | None = None) -> tuple[str, ...]:
    """Columns a delivered file must carry (SPEC §2: a missing key or identifier column is fatal).

    ``required_columns``, and the identifiers a row may leave empty but a file may not lack: the person of a death
    record (an unmatched one has none, a file without the column has none at all), and the person of the
    referential where identifiers are resolved (SPEC §3: a person is one BEN_IDT_ANO of IR_BEN_R)."""
    out = list(required_columns(table, year))
    wanted = list(identifier_columns(table))
    if BENEFICIARY_TABLE in (table.name, ARCHIVES.get(table.name)):
        wanted.append(PERSON_COLUMN)
    for column in wanted:
        if column in table.by_name and column not in out and (year is None or table.by_name[column].in_use(year)):
            out.append(column)
    return tuple(out)


# --- Join graph ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Link:
    """``child`` rows belong to ``parent`` rows whose ``parent_columns`` equal the child's ``columns``
    (and the same PMSI year when ``same_year``). ``parent_columns`` defaults to ``columns``; it differs for
    e.g. T_MCOaaC.NIR_ANO_17 -> IR_BEN_R.BEN_NIR_PSA or T_HADaaB.ETA_NUM_EPMSI -> T_HADaaE.ETA_NUM.
    """

    child: str
    parent: str
    columns: tuple[str, ...]
    same_year: bool = False
    parent_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.parent_columns:
            object.__setattr__(self, "parent_columns", self.columns)
        if len(self.parent_columns) != len(self.columns):
            raise ValueError(f"link {self.child} -> {self.parent}: {self.columns} vs {self.parent_columns}")

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """(child column, parent column) pairs, for building join conditions."""
        return tuple(zip(self.columns, self.parent_columns))


def pmsi_field(table: Table) -> PmsiField | None:
    """The PMSI field a table belongs to, picked by the stay key its columns carry."""
    candidates = [f for f in PMSI_FIELDS if table.name.startswith(f.prefix)]
    cols = set(table.columns)
    # A table with the outpatient key and without the stay number of the main field is outpatient.
    for candidate in sorted(candidates, key=lambda f: "outpatient" not in f.name):
        if set(candidate.stay_key) <= cols:
            main_keys = [f for f in candidates if "outpatient" not in f.name]
            if "outpatient" in candidate.name and any(set(m.stay_key) <= cols for m in main_keys):
                continue
            return candidate
    return None


def parent_link(table: Table) -> Link | None:
    """How a table without its own patient identifier reaches the patient-bearing table."""
    name = table.name
    if name.startswith("ER_") and name != DCIR_CENTRAL and set(dcir_keys(name)) <= set(table.columns):
        return Link(name, DCIR_CENTRAL, dcir_keys(name))
    field_ = pmsi_field(table) if table.is_yearly else None
    if field_ and name != field_.link_table:
        return Link(name, field_.link_table, field_.stay_key, same_year=True)
    return None


def dcir_keys(family: str) -> tuple[str, ...]:
    return DCIR_KEYS_OVERRIDE.get(family, DCIR_KEYS)


def stay_key(table: Table) -> tuple[str, ...]:
    """The PMSI stay key of a yearly PMSI table (() for any other table)."""
    field_ = pmsi_field(table) if table.is_yearly else None
    return field_.stay_key if field_ else ()


def week_key(table: Table) -> tuple[str, ...]:
    """The week number of a weekly PMSI table (T_SSRaaB: RHS_NUM), () for any other table."""
    field_ = pmsi_field(table) if table.is_yearly else None
    return tuple(c for c in field_.week_key if c in table.by_name) if field_ else ()


def patient_path(catalog: Catalog, family: str) -> list[Link]:
    """The chain of links from a family to a table carrying patient identifiers ([] if it carries them)."""
    path: list[Link] = []
    table = catalog[family]
    seen = {family}
    while True:
        link = parent_link(table)
        # PMSI tables reach the patient through their field's link table, even when they carry a NIR.
        if identifier_columns(table) and not (table.is_yearly and link):
            break
        if link is None or link.parent not in catalog or link.parent in seen:
            raise LookupError(f"{family} has no path to a patient identifier")
        path.append(link)
        seen.add(link.parent)
        table = catalog[link.parent]
    return path


def check_links(catalog: Catalog, table: Table) -> list[Link]:
    """Foreign keys checked on a curated table: the schema's, plus the domain's links.

    Identity links to IR_BEN_R are checked on (BEN_NIR_PSA, BEN_RNG_GEM), or on the pseudo-NIR alone for
    PMSI (no rank there), never on BEN_NIR_PSA alone as the schema's false uniqueness would suggest.
    The domain's link to a parent replaces the schema's foreign key to that parent (ER_DCT_F joins ER_PRS_F
    on seven keys although its schema declares nine). A parent absent from ``catalog`` is still listed: the
    check reports it as not evaluated.
    """
    links: dict[tuple, Link] = {}
    for fk in table.foreign_keys:
        if fk.resource == table.name or not fk.fields:
            continue
        cols, ref = fk.fields, fk.reference_fields
        if any(c not in table.by_name for c in cols):
            continue
        if fk.resource == "IR_BEN_R" and cols == ("BEN_NIR_PSA",) and RANK_COLUMN in table.by_name:
            cols, ref = ("BEN_NIR_PSA", RANK_COLUMN), ("BEN_NIR_PSA", RANK_COLUMN)
        same_year = table.is_yearly and is_yearly_family(fk.resource)
        links[(fk.resource, cols)] = Link(table.name, fk.resource, cols, same_year=same_year, parent_columns=ref)
    parent = parent_link(table)
    if parent:
        links = {k: l for k, l in links.items() if l.parent != parent.parent}
        links[(parent.parent, parent.columns)] = parent
    return list(links.values())


def fk_parents(catalog: Catalog, table: Table) -> list[str]:
    """Families whose same-delivery partition must be curated first (foreign-key checks read it)."""
    parents: list[str] = []
    for link in check_links(catalog, table):
        for parent in (link.parent, *archives_of(link.parent)):
            if parent in catalog and parent != table.name and parent not in parents:
                parents.append(parent)
    return parents


def child_links(catalog: Catalog, family: str) -> list[Link]:
    """The links of the catalog's other families to ``family``'s rows (to IR_BEN_R's for its archive), by child
    name: the rows a full delivery of ``family`` can leave without their parent."""
    parent = ARCHIVES.get(family, family)
    members = {parent, *archives_of(parent)}
    return [link for table in sorted(catalog, key=lambda t: t.name) if table.name not in members
            for link in check_links(catalog, table) if link.parent == parent]


def acyclic_parents(catalog: Catalog) -> dict[str, list[str]]:
    """The FK graph as curation order; an edge that would close a cycle is dropped (see ``cyclic_parents``)."""
    graph: dict[str, list[str]] = {}
    for table in catalog:
        graph[table.name] = [p for p in fk_parents(catalog, table) if not _reaches(graph, p, table.name)]
    return graph


def cyclic_parents(catalog: Catalog) -> dict[str, list[str]]:
    """The edges ``acyclic_parents`` dropped, child -> parents (T_MCOaaC -> T_MCOaaB: B hangs from C by the
    stay key while C's schema points to B). The child is curated before such a parent, so its links to it are
    checked once both are curated (``curation.curate.check_deferred_links``)."""
    kept = acyclic_parents(catalog)
    dropped = {}
    for table in catalog:
        parents = [p for p in fk_parents(catalog, table) if p not in kept[table.name]]
        if parents:
            dropped[table.name] = parents
    return dropped


def _reaches(graph: dict[str, list[str]], start: str, target: str) -> bool:
    stack, seen = [start], set()
    while stack:
        node = stack.pop()
        if node == target:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, []))
    return False


# --- Business rules (the `domain` check) -----------------------------------------------------------------
@dataclass(frozen=True)
class DomainRule:
    """A documented SNDS rule evaluated row by row: ``values`` allowed, or ``expr`` a Spark SQL condition."""

    name: str
    column: str
    description: str
    values: tuple[str, ...] = ()
    expr: str = ""
    tables: str = ".*"  # regex over family names

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the rule reads: its own, then those its expression names."""
        named = (c for c in re.findall(r"\b[A-Z][A-Z0-9_]{3,}\b", self.expr) if c not in _SQL_WORDS)
        return tuple(dict.fromkeys([self.column, *named]))


DOMAIN_RULES: tuple[DomainRule, ...] = (
    DomainRule("return_code", "*_RET", "PMSI return codes are '0' (good link) or '1' (bad)",
               values=("0", "1"), tables=r"T_(MCO|SSR|HAD|RIP)aa.*"),
    DomainRule("return_code", "NAI_RET", "PMSI return codes are '0' (good link) or '1' (bad); NAI_RET may be '9'",
               values=("0", "1", "9"), tables=r"T_(MCO|SSR|HAD|RIP)aa.*"),
    DomainRule("sex_code", "BEN_SEX_COD", "beneficiary sex (IR_SEX_V): 1 male, 2 female, 0 or 9 unknown",
               values=("0", "1", "2", "9")),
    DomainRule("nir_code", "BEN_CDI_NIR", "NIR identification code (IR_NIR_V): two digits (00 normal, 03/04 "
               "provisional, most others fictitious) or NN (not applicable)",
               expr="cast(BEN_CDI_NIR AS STRING) RLIKE '^([0-9]{2}|NN)$'"),
    DomainRule("care_before_flow", "EXE_SOI_DTD", "care starts on or before the release of its DCIR flow",
               expr="EXE_SOI_DTD <= FLX_DIS_DTD OR EXE_SOI_DTD = DATE'1600-01-01'", tables=r"ER_PRS_F"),
    DomainRule("monthly_flow", "FLX_DIS_DTD", "a DCIR flow is released monthly: FLX_DIS_DTD is the first of a month",
               expr="dayofmonth(FLX_DIS_DTD) = 1", tables=r"ER_.*_F"),
    DomainRule("care_period", "EXE_SOI_DTF", "care ends on or after it starts",
               expr="EXE_SOI_DTF >= EXE_SOI_DTD OR EXE_SOI_DTF = DATE'1600-01-01'", tables=r"ER_PRS_F"),
    DomainRule("dpn_qlf", "DPN_QLF", "DPN_QLF is a two-digit qualifier code (71: information only)",
               expr="try_cast(DPN_QLF AS INT) BETWEEN 0 AND 99", tables=r"ER_PRS_F"),
    *(DomainRule("pseudo_nir_length", c, "a pseudo-NIR has 17 characters", expr=f"length({c}) = 17")
      for c in PSEUDO_NIR_COLUMNS),
    DomainRule("lifelong_identity", "BEN_IDT_ANO", "a person with a lifelong NIR (BEN_IDT_TOP = 1) is named by it: "
               "BEN_IDT_ANO equals BEN_NIR_ANO", expr="NOT (try_cast(BEN_IDT_TOP AS INT) = 1 AND BEN_IDT_ANO <> BEN_NIR_ANO)"),
    DomainRule("own_identity", "BEN_IDT_ANO", "an identity without a lifelong NIR (BEN_IDT_TOP = 0) is its own person: "
               "BEN_IDT_ANO equals BEN_NIR_PSA || BEN_RNG_GEM",
               expr="NOT (try_cast(BEN_IDT_TOP AS INT) = 0 "
                    "AND BEN_IDT_ANO <> concat(BEN_NIR_PSA, CAST(BEN_RNG_GEM AS STRING)))"),
    DomainRule("matched_death", "BEN_IDT_ANO", "a death record matched to a beneficiary (DCD_IDT_TOP = 1) names "
               "them in BEN_IDT_ANO", expr="NOT (try_cast(DCD_IDT_TOP AS INT) = 1 AND BEN_IDT_ANO IS NULL)"),
)


# Upper-case SQL words of rule expressions, not to be mistaken for column names.
_SQL_WORDS = frozenset({"DATE", "RLIKE", "BETWEEN", "CAST", "STRING", "TIMESTAMP", "NULL", "TRUE", "FALSE", "LIKE"})


def domain_rules(table: Table) -> list[DomainRule]:
    """The rules that apply to a table, with ``*_RET`` expanded to its return-code columns."""
    out: list[DomainRule] = []
    for rule in DOMAIN_RULES:
        if not re.fullmatch(rule.tables, table.name):
            continue
        if rule.column == "*_RET":  # every return code without a rule of its own (NAI_RET)
            own = {r.column for r in DOMAIN_RULES if r.name == rule.name}
            out.extend(
                DomainRule(rule.name, c, rule.description, rule.values, rule.expr, rule.tables)
                for c in table.columns if is_return_code(c) and c not in own
            )
        elif all(c in table.by_name for c in rule.columns):
            out.append(rule)
    return out


# --- Delivery rhythm (freshness) -----------------------------------------------------------------------------
# Days between two expected deliveries, by product (first word of the schema's product): the DCIR's and the DCIRS's
# flows monthly, the rest yearly (issue: "monthly for DCIR, yearly for PMSI and referentials"), DCIR_DCIRS too, whose
# tables are the referentials the two share (IR_IMB_R, DA_PRA_R...).
DELIVERY_PERIOD_DAYS: dict[str, int] = {"DCIR": 31, "DCIRS": 31, "OTHER": 366}


# --- Provision to projects (SPEC §3): where criteria are looked for, which rows are dated ----------------
CARE_START = "EXE_SOI_DTD"  # start of care: a DCIR line, a PMSI stay (C table)
DPN_QLF_COLUMN = "DPN_QLF"
ALD_START, ALD_END = "IMB_ALD_DTD", "IMB_ALD_DTF"


@dataclass(frozen=True)
class CriterionSource:
    """One place a ciblage criterion is looked for: codes matched on ``columns`` of ``family``."""

    family: str
    columns: tuple[str, ...]
    match: str  # "prefix" (ICD-10 code prefixes) or "equal" (CCAM, CIP13 codes)


# Request criterion -> (the key of its code list in the YAML, where it is looked for).
CRITERIA: dict[str, tuple[str, tuple[CriterionSource, ...]]] = {
    "diagnosis": ("icd10", (CriterionSource("T_MCOaaB", ("DGN_PAL", "DGN_REL"), "prefix"),
                            CriterionSource("T_MCOaaD", ("ASS_DGN",), "prefix"))),
    "act": ("ccam", (CriterionSource("ER_CAM_F", ("CAM_PRS_IDE",), "equal"),
                     CriterionSource("T_MCOaaA", ("CDC_ACT",), "equal"))),
    "drug": ("cip13", (CriterionSource("ER_PHA_F", ("PHA_PRS_C13",), "equal"),)),
    "ald": ("icd10", (CriterionSource("IR_IMB_R", ("MED_MTF_COD",), "prefix"),)),
}


def is_link_table(table: Table) -> bool:
    """The PMSI table of a field that carries the patient link (NIR_ANO_17 and the return codes)."""
    field_ = pmsi_field(table) if table.is_yearly else None
    return bool(field_) and field_.link_table == table.name


def care_date_column(table: Table) -> str | None:
    """The date that puts a patient-bearing row in or out of a project's period (None: not dated).

    DCIR-like care lines (``*_F`` tables carrying the patient) and the PMSI link tables are dated by the start
    of care; referentials (IR_*, KI_*) are not.
    """
    if CARE_START not in table.by_name:
        return None
    if is_link_table(table):
        return CARE_START
    if table.name.endswith("_F") and identifier_columns(table) and not table.is_yearly:
        return CARE_START
    return None
