"""Code lists the synthetic care is drawn from.

Real codes (ICD-10 as written in the PMSI, CCAM, NABM biology acts, CIP13 shapes, DCIR prestation natures)
so that project criteria such as ``diagnosis: U071`` or ``act: DEQP003`` select people. The weights are
invented: they make a plausible mix, not an epidemiology. When a nomenclature folder is given, each list is
intersected with the field's nomenclature before use.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

# ICD-10 main diagnoses of MCO stays, with relative weights.
STAY_DIAGNOSES: tuple[tuple[str, float], ...] = (
    ("U071", 6), ("E119", 4), ("E1190", 1), ("I10", 3), ("J189", 4), ("I500", 3), ("I214", 2), ("C509", 2),
    ("K358", 2), ("S7200", 2), ("O800", 3), ("N390", 2), ("Z511", 4), ("J441", 2), ("I639", 2), ("R074", 3),
    ("A419", 1), ("I480", 2), ("K800", 2), ("M170", 2), ("H251", 2), ("F329", 1), ("G309", 1), ("N183", 1),
)
# A birth's stay (the child's): born in hospital (Z38.0), or when it stays longer a perinatal condition (jaundice,
# prematurity, respiratory distress). The first code is the usual stay's, the others a longer one's.
BIRTH_DIAGNOSES: tuple[str, ...] = ("Z380", "P599", "P073", "P220", "P071")
# The mother's delivery stay: vaginal (O80), or caesarean (O82) when she stays longer.
DELIVERY_DIAGNOSES: tuple[str, ...] = ("O800", "O821")
ASSOCIATED_DIAGNOSES: tuple[tuple[str, float], ...] = (
    ("E119", 6), ("I10", 8), ("E1190", 2), ("N183", 2), ("J441", 2), ("F329", 2), ("Z515", 1), ("I480", 3),
    ("E10", 1), ("U071", 2), ("R074", 1), ("G309", 1), ("J9600", 1),
)
# Long-term illnesses (ALD): ICD-10 prefix as recorded in IR_IMB_R, weight, ALD number.
ALD_DISEASES: tuple[tuple[str, float, int], ...] = (
    ("E119", 20, 8), ("E109", 3, 8), ("I251", 8, 13), ("C509", 6, 30), ("C61", 4, 30), ("F200", 4, 23),
    ("G309", 4, 15), ("J449", 4, 14), ("N183", 3, 19), ("I500", 6, 5), ("F329", 4, 23), ("I10", 3, 12),
)
DEATH_CAUSES: tuple[str, ...] = ("C349", "I219", "I64", "J189", "U071", "G309", "C509", "E149", "I500", "R99")
# CCAM acts (DCIR ER_CAM_F and PMSI T_MCOaaA).
CCAM_ACTS: tuple[tuple[str, float], ...] = (
    ("DEQP003", 8), ("ZBQK002", 6), ("ACQK001", 3), ("DZQM006", 3), ("ZCQK002", 2), ("GLQP012", 2),
    ("HHQE005", 1), ("HHFA016", 1), ("JQGD010", 1), ("NEKA020", 1), ("YYYY010", 1), ("QZFA003", 1),
)
# NABM biology acts (ER_BIO_F.BIO_PRS_IDE): blood count, HbA1c, ionogram, TSH, troponin, albumin, TCA.
BIOLOGY_ACTS: tuple[int, ...] = (1104, 1577, 1610, 1208, 7335, 1806, 1127)
# Drugs: CIP13 codes of the 34009 range (the first one is the example of the product contract).
CIP13_CODES: tuple[str, ...] = ("3400930000001",) + tuple(f"34009{n:08d}" for n in (
    30000018, 30012345, 30023456, 30034567, 30045678, 30056789, 30067890, 30078901, 30089012, 30090123,
    33412345, 33423456, 35512345, 36112233, 36223344, 37712345, 38812345, 39912345, 27654321, 21122334))
UCD_CODES: tuple[str, ...] = tuple(f"340089{n:07d}" for n in (1234567, 2345678, 3456789, 4567890, 5678901))
# DCIR prestation natures (PRS_NAT_REF) per kind of line.
NATURES: dict[str, tuple[int, ...]] = {
    "consult": (1111, 1112, 1211),
    "pharmacy": (3311, 3313, 3341),
    "biology": (3211,),
    "act": (1321, 1331),
    "nursing": (3111, 3112),
}
LINE_KINDS: tuple[str, ...] = ("consult", "pharmacy", "biology", "act", "nursing")
LINE_KIND_WEIGHTS: tuple[float, ...] = (0.30, 0.36, 0.12, 0.10, 0.12)
# Who can hold each fictitious NIR, read from IR_NIR_V's labels: (sex, 1 man 2 woman 0 either, first and last age).
FICTITIOUS_NIR_HOLDERS: dict[str, tuple[int, int, int]] = {
    "01": (2, 15, 49),  # abortion (IVG)
    "05": (0, 15, 105),  # sexually transmitted infection (IST)
    "06": (2, 12, 17),  # abortion of a minor without parental consent
    "08": (0, 0, 105),  # other
    "09": (0, 0, 105),  # teletransmission aids
    "11": (2, 12, 17),  # contraception of a minor
    "12": (0, 0, 17),  # ALD of a minor
    "13": (2, 15, 49),  # maternity benefits (PS)
    "14": (1, 15, 69),  # paternity benefits (PS)
    "15": (0, 20, 60),  # adoption benefits (PS)
}


def fictitious_codes_for(codes: Sequence[str], sex: int, age: int) -> list[str]:
    """The fictitious NIR codes a person of this sex and age can hold (all of ``codes`` when none fits)."""
    fit = [c for c in codes if c in FICTITIOUS_NIR_HOLDERS and FICTITIOUS_NIR_HOLDERS[c][0] in (0, sex)
           and FICTITIOUS_NIR_HOLDERS[c][1] <= age <= FICTITIOUS_NIR_HOLDERS[c][2]]
    return fit or list(codes)


# Diagnoses only some patients can have, by ICD-10 prefix: (sex, 1 man 2 woman 0 either, first and last age). The
# ages are common sense (no myocardial infarction at 2), not an epidemiology.
DIAGNOSIS_HOLDERS: dict[str, tuple[int, int, int]] = {
    "O": (2, 12, 55),  # pregnancy and childbirth
    "C61": (1, 15, 120),  # prostate cancer
    "C50": (0, 15, 120),  # breast cancer
    "G30": (0, 40, 120),  # Alzheimer's disease
    "H25": (0, 40, 120),  # senile cataract
    "M17": (0, 30, 120),  # knee arthrosis
    "J44": (0, 30, 120),  # chronic obstructive pulmonary disease
    "I21": (0, 18, 120),  # myocardial infarction
    "I25": (0, 18, 120),  # chronic ischaemic heart disease
    "I48": (0, 18, 120),  # atrial fibrillation
    "I50": (0, 18, 120),  # heart failure
    "I63": (0, 15, 120),  # cerebral infarction
    "I10": (0, 15, 120),  # essential hypertension
    "E11": (0, 10, 120),  # type 2 diabetes
    "F32": (0, 10, 120),  # depressive episode
    "F20": (0, 12, 120),  # schizophrenia
    "P": (0, 0, 0),  # perinatal conditions
    "Z38": (0, 0, 0),  # liveborn infant
}


def diagnosis_fits(code: str, sex: int, age: int) -> bool:
    for prefix, (holder_sex, first, last) in DIAGNOSIS_HOLDERS.items():
        if code.startswith(prefix):
            return holder_sex in (0, sex) and first <= age <= last
    return True


def fit_to_patients(chosen: list[str], sexes: Sequence[int], ages: Sequence[int], codes: Sequence[str],
                    weights: Sequence[float] | None, rng: np.random.Generator,
                    draws: Sequence[float] | None = None) -> list[str]:
    """``chosen`` diagnoses, each one its patient cannot have (a childbirth for a man, Alzheimer's at 30) drawn again
    among the ``codes`` that fit, so that a criterion such as ``diagnosis: O80`` selects women of childbearing age.
    ``draws`` (one uniform per diagnosis) replace ``rng`` where a diagnosis is a person's whatever the delivery."""
    out = list(chosen)
    unfit = [k for k, (c, s, a) in enumerate(zip(chosen, sexes, ages)) if not diagnosis_fits(c, s, a)]
    if not unfit:
        return out
    w = np.ones(len(codes)) if weights is None else np.asarray(weights, dtype=float)
    cumulative: dict[tuple[int, int], np.ndarray | None] = {}
    uniforms = rng.random(len(unfit)).tolist() if draws is None else [float(draws[k]) for k in unfit]
    for k, u in zip(unfit, uniforms):
        patient = (int(sexes[k]), int(ages[k]))
        if patient not in cumulative:
            p = w * np.array([diagnosis_fits(c, *patient) for c in codes])
            cumulative[patient] = np.cumsum(p) / p.sum() if p.sum() > 0 else None
        cum = cumulative[patient]
        if cum is not None:
            out[k] = codes[min(int(np.searchsorted(cum, u, side="right")), len(codes) - 1)]
    return out


# The major diagnostic category (CMD, the GHM's first two characters) of a stay by its main diagnosis's ICD-10
# prefix, the longest one that matches, and the kinds of GHM it takes (C surgical, K a procedure outside the
# operating room, M medical, Z undifferentiated). Z51.1 (chemotherapy) without a night is a session (CMD 28).
GHM_CATEGORIES: dict[str, tuple[str, str]] = {
    "A": ("18", "M"), "B": ("18", "M"), "C": ("17", "M"), "C34": ("04", "M"), "C50": ("09", "CM"),
    "C61": ("12", "CM"), "D": ("16", "M"), "E": ("10", "M"), "F": ("19", "M"), "F1": ("20", "M"), "G": ("01", "M"),
    "H": ("02", "M"), "H25": ("02", "C"), "H6": ("03", "M"), "H7": ("03", "M"), "H8": ("03", "M"), "H9": ("03", "M"),
    "I": ("05", "M"), "I21": ("05", "KM"), "I6": ("01", "M"), "J": ("04", "M"), "K": ("06", "M"), "K35": ("06", "C"),
    "K7": ("07", "M"), "K8": ("07", "M"), "K80": ("07", "CM"), "L": ("09", "M"), "M": ("08", "M"), "M17": ("08", "C"),
    "N": ("11", "M"), "N4": ("12", "M"), "N7": ("13", "M"), "N8": ("13", "M"), "N9": ("13", "M"), "N39": ("11", "M"),
    "O": ("14", "Z"), "O82": ("14", "C"), "P": ("15", "M"), "R": ("23", "M"), "R07": ("05", "M"), "S": ("21", "M"),
    "S72": ("08", "C"), "T": ("21", "M"), "U07": ("04", "M"), "Z": ("23", "M"), "Z38": ("15", "M"),
    "Z51": ("17", "M"),
}


def ghm_category(diagnosis: str) -> tuple[str, str]:
    """(CMD, kinds) of a main diagnosis, by its longest listed prefix (CMD 23, medical, when none is listed)."""
    for length in range(len(diagnosis), 0, -1):
        if diagnosis[:length] in GHM_CATEGORIES:
            return GHM_CATEGORIES[diagnosis[:length]]
    return "23", "M"


def ghm(diagnosis: str, nights: int, kind_draw: float, level_draw: float) -> str:
    """A GHM fitting the stay: its CMD from the main diagnosis, a kind the diagnosis takes, a severity its length
    allows (level 2 from 3 nights, 3 from 4, 4 from 5; letters A-D in CMD 14 and 15; J for a stay with a procedure
    (C, K) and no night, T for a medical one of at most one). The root's two-digit number is invented, fixed per
    diagnosis and kind."""
    if diagnosis.startswith("Z511") and nights == 0:
        return "28Z07Z"
    cmd, kinds = ghm_category(diagnosis)
    kind = kinds[min(int(kind_draw * len(kinds)), len(kinds) - 1)]
    root = 1 + sum(ord(ch) * 31 ** i for i, ch in enumerate(diagnosis[:4] + kind)) % 59
    top = 1 if nights < 3 else min(nights - 1, 4)
    level = 1 + min(int(level_draw * top), top - 1)
    if cmd in ("14", "15"):
        severity = "ABCD"[level - 1]
    elif nights == 0 and kind in "CK":
        severity = "J"
    elif nights <= 1 and kind == "M" and level_draw < 0.5:
        severity = "T"
    else:
        severity = str(level)
    return f"{cmd}{kind}{root:02d}{severity}"


def ghs(ghm_code: str) -> int:
    """The GHS (tariff group) of a GHM: one per GHM, as the year's classification gives it (the number invented);
    an error GHM (CMD 90) is not valued, 9999."""
    if ghm_code.startswith("90"):
        return 9999
    return 1000 + sum(ord(ch) * 37 ** i for i, ch in enumerate(ghm_code)) % 8999  # four digits, as the schema


PLAUSIBLE_DEPARTMENTS: tuple[str, ...] = tuple(f"{d:03d}" for d in (1, 6, 13, 31, 33, 34, 35, 38, 44, 59, 62, 67, 69,
                                                                     75, 76, 77, 78, 91, 92, 93, 94, 95))

_ICD_NAMES = re.compile(r"(^|_)(DGN|CIM|DIAG)(_|$)|^(ASS_DGN|MED_MTF_COD|MOR_PRP|ETL_AFF|FP_PEC|DP_POS)$")
_CCAM_NAMES = re.compile(r"CCAM|^CDC_ACT$|^CAM_PRS_IDE$|^ACT_COD$")


def weighted(pairs: Sequence[tuple[str, float]]) -> tuple[list[str], list[float]]:
    codes = [p[0] for p in pairs]
    weights = [float(p[1]) for p in pairs]
    total = sum(weights)
    return codes, [w / total for w in weights]


def name_hint(column: str) -> list[str] | None:
    """Plausible codes for a column known only by its name (filler of tables the generator does not model)."""
    if _ICD_NAMES.search(column):
        return [c for c, _ in STAY_DIAGNOSES]
    if _CCAM_NAMES.search(column):
        return [c for c, _ in CCAM_ACTS]
    if column.endswith("_C13"):
        return list(CIP13_CODES)
    if column in ("BEN_SEX_COD", "COD_SEX", "SEX_COD"):
        return ["1", "2"]
    if column in ("BEN_CDI_NIR",):
        return ["00"]
    if column in ("DPN_QLF", "PRS_DPN_QLP"):
        return ["0", "0", "0", "71"]
    if column.endswith("_DPT") or column.endswith("DPT_COD"):
        return list(PLAUSIBLE_DEPARTMENTS) + [d[1:] for d in PLAUSIBLE_DEPARTMENTS]
    return None
