"""PMSI: hospital stays per field and year, and what the MCO tables say about them.

A few percent of the persons alive in a year are hospitalised (more with age); each stay has a stay key
(establishment + stay number, per ``domain.PMSI_FIELDS``), dates within the year of discharge, the patient's
pseudo-NIR in ``NIR_ANO_17`` (the PMSI has no rank: twins are ambiguous there) with mostly good return codes,
some bad ones ('1') and some placeholder NIRs. The stay block carries the MCO names of its attributes; every
table of the field copies the ones it has, so B, C, UM... agree on dates, sex, age and diagnoses. Each birth in the
care period is an MCO stay of the child and, when a woman of its chunk can be its mother, her delivery stay the same
day in the same establishment, the two sharing a mother-child number (NIR_ANO_MAM). A stay's GHM follows its main
diagnosis (CMD) and its length (severity), its GHS the GHM.
"""
from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from .. import domain
from . import codes as C
from .model import Block, take
from .people import People
from .plan import TablePlan
from .registry import enricher

if TYPE_CHECKING:  # the engine imports this module to register it
    from .engine import Engine

RATES = {"MCO": 0.045, "MCO outpatient": 0.06, "SSR": 0.006, "SSR outpatient": 0.004, "HAD": 0.002, "RIM-P": 0.005}
REPEATS = {"MCO": 0.35, "MCO outpatient": 1.0, "SSR": 0.1, "SSR outpatient": 1.0, "HAD": 0.1, "RIM-P": 0.3}
STAY_ATTRS: tuple[str, ...] = (
    "NIR_ANO_17", "NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET", "DAT_RET", "COH_NAI_RET",
    "COH_SEX_RET", "EXE_SOI_DTD", "EXE_SOI_DTF", "ENT_DAT", "SOR_DAT", "ENT_ANN", "ENT_MOI", "SOR_ANN", "SOR_MOI",
    "ENT_AM", "SOR_AM", "MOI_ANN_SOR_SEJ",
    "EXE_SOI_AMD", "EXE_SOI_AMF", "SEJ_NBJ", "AGE_ANN", "AGE_JOU", "COD_SEX", "DGN_PAL", "DGN_REL", "GRG_GHM",
    "GRC_GHM", "GHS_NUM", "SEJ_TYP", "ENT_MOD", "ENT_PRV", "SOR_MOD", "SOR_DES", "BDI_DEP", "NBR_DGN", "NBR_ACT",
    "NBR_RUM", "AGE_GES", "POI_NAI", "NIR_ANO_MAM",
)
ORDINARY, CHILD, MOTHER = 0, 1, 2  # a stay's kind: drawn among a person's, a birth's child's, or its mother's
STAY_DATES = frozenset({"EXE_SOI_DTD", "EXE_SOI_DTF", "ENT_DAT", "SOR_DAT"})
BAD_CODES = ("NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET")
PLACEHOLDERS = tuple(sorted(domain.PLACEHOLDER_NIRS))


def stay_columns(field_: domain.PmsiField) -> tuple[str, ...]:
    return tuple(field_.stay_key) + STAY_ATTRS


def _number_format(eng, field_: domain.PmsiField, column: str):
    """Stay numbers valid in every table of the field that carries the column (types and lengths differ)."""
    specs = [eng.specs[f][column] for f, tp in eng.plan.tables.items()
             if column in eng.specs[f] and tp.table.is_yearly and domain.pmsi_field(tp.table) == field_]
    base = max([int(s.lo) for s in specs if s.lo] or [0])  # some tables bound the number (RSA_NUM >= 1e9)
    lengths = [s.max_len for s in specs if s.kind == "string" and s.max_len < 20]
    width = min(lengths) if lengths else 8
    width = max(width, len(str(base)) if base else 0)

    def texts(numbers: list[int]) -> list[str]:
        out = [str(base + k) if base else str(k).zfill(width) for k in numbers]
        if out and max(len(t) for t in out) > width:
            raise ValueError(f"{field_.name} {column}: too many stays for {width} digits")
        return out

    return texts


def stays(eng: Engine, field_: domain.PmsiField, year: int, people: People, rng: np.random.Generator) -> Block:
    persons = people.persons
    lo = np.asarray(persons.cols["_LO"], dtype=np.int64)
    hi = np.asarray(persons.cols["_HI"], dtype=np.int64)
    age = np.asarray(persons.cols["_AGE"], dtype=float)
    first_day, last_day = date(year, 1, 1).toordinal(), date(year, 12, 31).toordinal()
    ylo = np.maximum(lo, max(first_day, eng.start))
    yhi = np.minimum(hi, min(last_day, eng.end))
    alive = ylo <= yhi
    # the rates are per year: a care period covering a month of the year has a twelfth of its stays
    covered = (min(last_day, eng.end) - max(first_day, eng.start) + 1) / (last_day - first_day + 1)
    hospitalised = alive & (rng.random(persons.n) < RATES[field_.name] * (0.4 + age / 50) * covered)
    if eng.first_chunk:  # every field-year has a few stays, even in a tiny delivery
        hospitalised[np.flatnonzero(alive)[:3]] = True
    per = np.where(hospitalised, 1 + np.minimum(rng.poisson(REPEATS[field_.name], persons.n), 4), 0)
    p = np.repeat(np.arange(persons.n), per)
    admission = ylo[p] + (rng.random(len(p)) * (yhi[p] - ylo[p] + 1)).astype(np.int64)
    births = _births(field_, persons, first_day, last_day, eng)
    p = np.concatenate([p, births[:, 0]])
    admission = np.concatenate([admission, births[:, 1]])
    kind = np.concatenate([np.zeros(len(p) - len(births), dtype=np.int64), births[:, 2]])
    birth_key = np.concatenate([np.full(len(p) - len(births), -1, dtype=np.int64), births[:, 3]])
    m = len(p)
    if field_.name == "MCO":
        los = np.where(rng.random(m) < 0.45, 0, np.minimum(rng.geometric(0.2, m), 45))
    elif "outpatient" in field_.name:
        los = np.zeros(m, dtype=np.int64)
    elif field_.name == "SSR":
        los = rng.integers(5, 60, m)
    elif field_.name == "HAD":
        los = rng.integers(3, 90, m)
    else:
        los = rng.integers(1, 40, m)
    # A birth keeps mother and child 2 to 5 nights; a caesarean (a fifth of deliveries) or a newborn's perinatal
    # condition (one in twelve) longer.
    kept = rng.integers(2, 6, m)
    longer = np.where(kind == MOTHER, rng.random(m) < 0.2, rng.random(m) < 1 / 12) & (kind != ORDINARY)
    los = np.where(kind == CHILD, np.where(longer, kept + rng.integers(4, 15, m), kept), los)
    los = np.where(kind == MOTHER, np.where(longer, kept + 2, kept), los)
    discharge = np.minimum(admission + los, yhi[p])
    los = discharge - admission
    order = np.lexsort((kind, admission, p))
    p, admission, discharge, los = p[order], admission[order], discharge[order], los[order]
    kind, longer, birth_key = kind[order], longer[order], birth_key[order]

    eta_col, num_col = field_.stay_key
    etas = [eng.establishments[i] for i in rng.integers(0, len(eng.establishments), m).tolist()]
    maternity: dict[int, str] = {}  # a birth's establishment: its first child's, its mother's too
    for k in np.flatnonzero(kind == CHILD).tolist():
        etas[k] = maternity.setdefault(int(birth_key[k]), etas[k])
    for k in np.flatnonzero(kind == MOTHER).tolist():
        etas[k] = maternity[int(birth_key[k])]
    numbers = []
    for eta in etas:
        key = ("stay", field_.name, year, eta)
        eng.counters[key] = eng.counters.get(key, 0) + 1
        numbers.append(eng.counters[key])
    block = Block(m, parent=p)
    block.set(eta_col, etas)
    block.set(num_col, _number_format(eng, field_, num_col)(numbers))

    identities = people.identities
    main = rng.random(m) < 0.85
    chosen = []
    for k, person in enumerate(p.tolist()):
        rows = people.identities_of[person]
        chosen.append(rows[0] if main[k] or len(rows) == 1 else rows[1 + int(rng.integers(0, len(rows) - 1))])
    psa = [identities.cols["BEN_NIR_PSA"][i] for i in chosen]
    placeholder = rng.random(m) < 0.015
    bad = (rng.random(m) < 0.03) & ~placeholder
    if eng.first_chunk and m >= 3:  # every field-year shows a placeholder NIR and a bad return code
        placeholder[1], bad[1], bad[2], placeholder[2] = True, False, True, False
    which_bad = rng.integers(0, len(BAD_CODES), m)
    block.set("NIR_ANO_17", [PLACEHOLDERS[k % 2] if ph else v for k, (v, ph) in
                             enumerate(zip(psa, placeholder.tolist()))])
    for j, code in enumerate(domain.PMSI_RETURN_CODES):
        values = np.full(m, "0", dtype=object)
        if code == "NIR_RET":
            values[placeholder] = "1"
        if code in BAD_CODES:
            values[bad & (which_bad == BAD_CODES.index(code))] = "1"
        block.set(code, values.tolist())
    block.set("_IDENTITY", chosen)
    block.set("_PERSON", p.tolist())
    block.set("_G", take(persons.cols["_G"], p))  # the person's number, for the pseudonyms of the field's tables

    for column in ("EXE_SOI_DTD", "ENT_DAT"):
        block.set(column, admission.tolist(), True)
    for column in ("EXE_SOI_DTF", "SOR_DAT"):
        block.set(column, discharge.tolist(), True)
    adm_d = [date.fromordinal(o) for o in admission.tolist()]
    dis_d = [date.fromordinal(o) for o in discharge.tolist()]
    block.set("SOR_ANN", [str(d.year) for d in dis_d])
    block.set("SOR_MOI", [d.month for d in dis_d])
    block.set("ENT_ANN", [str(d.year) for d in adm_d])  # HAD and RIM-P C tables: entry year and month
    block.set("ENT_MOI", [d.month for d in adm_d])
    for column, days in (("ENT_AM", adm_d), ("EXE_SOI_AMD", adm_d), ("SOR_AM", dis_d), ("EXE_SOI_AMF", dis_d),
                         ("MOI_ANN_SOR_SEJ", dis_d)):  # SSR: the month of discharge
        block.set(column, [f"{d.year:04d}{d.month:02d}" for d in days])
    block.set("SEJ_NBJ", los.tolist())
    birth = np.asarray(persons.cols["_BIRTH"], dtype=np.int64)[p]
    age_days = np.maximum(admission - birth, 0)
    block.set("AGE_ANN", ["" if a < 365 else min(a // 365, 120) for a in age_days.tolist()])
    block.set("AGE_JOU", [a if a < 365 else "" for a in age_days.tolist()])
    newborn = (age_days < 28).tolist()
    sex = persons.cols["BEN_SEX_COD"]
    block.set("COD_SEX", [str(sex[i]) for i in p.tolist()])
    dpt = persons.cols["BEN_RES_DPT"]
    block.set("BDI_DEP", [str(dpt[i])[-2:] for i in p.tolist()])

    main_codes, main_p = eng.weighted_codes("DGN_PAL", C.STAY_DIAGNOSES, "T_MCOaaB")
    block.set("DGN_PAL", [main_codes[i] for i in rng.choice(len(main_codes), m, p=main_p).tolist()])
    related = [c for c in eng.codes_for("DGN_REL", ["E119", "I10", "E1190", "N183"], "T_MCOaaB")] or [""]
    rel = rng.integers(0, len(related), m)
    block.set("DGN_REL", [related[r] if x < 0.3 else "" for r, x in zip(rel.tolist(), rng.random(m).tolist())])
    kind_draw, level_draw = rng.random(m).tolist(), rng.random(m).tolist()
    errors = rng.random(m) < 0.01
    block.set("SEJ_TYP", rng.choice(["A", "B"], m, p=[0.97, 0.03]).tolist())
    entry = np.where(kind == ORDINARY, rng.choice(["8", "8", "8", "7", "6"], m), "8")  # a birth comes from home
    block.set("ENT_MOD", entry.tolist())
    block.set("ENT_PRV", ["5" if e == "8" and x < 0.3 and k != CHILD else ("" if e == "8" else "1")
                          for e, x, k in zip(entry.tolist(), rng.random(m).tolist(), kind.tolist())])
    died = np.asarray([persons.cols["BEN_DCD_DTE"][i] for i in p.tolist()], dtype=np.int64) == discharge
    exit_mode = np.where(died, "9", rng.choice(["8", "8", "8", "8", "7"], m))
    block.set("SOR_MOD", exit_mode.tolist())
    block.set("SOR_DES", ["1" if e == "7" else "" for e in exit_mode.tolist()])
    block.set("NBR_DGN", np.minimum(rng.poisson(1.2, m), 4).tolist())
    block.set("NBR_ACT", np.minimum(rng.poisson(0.9, m), 3).tolist())
    block.set("NBR_RUM", rng.choice([1, 2], m, p=[0.85, 0.15]).tolist())
    years = (age_days // 365).tolist()
    sexes = [sex[i] for i in p.tolist()]
    block.set("DGN_PAL", C.fit_to_patients(block.cols["DGN_PAL"], sexes, years, main_codes, main_p, rng))
    block.set("DGN_REL", C.fit_to_patients(block.cols["DGN_REL"], sexes, years, related + [""], None, rng))
    _birth_diagnoses(eng, block, kind, longer, rng)
    errors = errors & (kind == ORDINARY)
    block.set("GRG_GHM", ["90Z00Z" if e else C.ghm(d, n, a, b) for d, n, a, b, e in zip(
        block.cols["DGN_PAL"], los.tolist(), kind_draw, level_draw, errors.tolist())])
    block.set("GRC_GHM", list(block.cols["GRG_GHM"]))  # the GHM as corrected after the checks: none here
    block.set("GHS_NUM", [C.ghs(g) for g in block.cols["GRG_GHM"]])
    # The mother-child number links a birth's stay to its mother's delivery stay, keyed by the birth's first child;
    # a newborn's other stays carry it too. A delivery whose child is not among the persons is keyed by its stay.
    birth_of = np.asarray(take(persons.cols["_BIRTH_OF"], p), dtype=np.int64)
    delivering = [d.startswith("O8") and sex[i] == 2 for d, i in zip(block.cols["DGN_PAL"], p.tolist())]
    stay_numbers = eng.next_numbers(("mother-child", field_.name), m) + (1 << 40)
    block.set("NIR_ANO_MAM", [
        eng.people.mother_child.long(int(b)) if young else
        eng.people.mother_child.long(int(key)) if k == MOTHER else
        eng.people.mother_child.long(int(n)) if d and days >= 12 * 365 else ""
        for young, k, key, b, d, days, n in zip(newborn, kind.tolist(), birth_key.tolist(), birth_of.tolist(),
                                                delivering, age_days.tolist(), stay_numbers.tolist())])
    # Gestational age and birth weight describe births (a preterm child's are lower); a birth's gestational age,
    # its first stay's, is its twins' and its mother's delivery's.
    preterm = np.array([d.startswith("P07") for d in block.cols["DGN_PAL"]], dtype=bool)
    gestation = np.where(preterm, rng.integers(26, 37, m), rng.integers(37, 42, m)).tolist()
    weight = np.where(preterm, rng.integers(800, 2500, m), rng.integers(2500, 4200, m)).tolist()
    of_birth: dict[str, int] = {}
    for key, g, young in zip(block.cols["NIR_ANO_MAM"], gestation, newborn):
        if young:
            of_birth.setdefault(key, g)
    block.set("AGE_GES", [of_birth.get(key, g) if young or (k == MOTHER and key in of_birth) else ""
                          for key, g, young, k in zip(block.cols["NIR_ANO_MAM"], gestation, newborn, kind.tolist())])
    block.set("POI_NAI", [w if young else "" for w, young in zip(weight, newborn)])
    return block


def _births(field_: domain.PmsiField, persons: Block, first_day: int, last_day: int, eng: Engine) -> np.ndarray:
    """The MCO stays of the year's births in the care period: (person, admission, kind, key) rows, the child's
    birth stay and, where the child has a mother among the persons, her delivery stay (one for twins), keyed by
    the birth's first child."""
    if field_.name != "MCO":
        return np.zeros((0, 4), dtype=np.int64)
    birth = np.asarray(persons.cols["_BIRTH"], dtype=np.int64)
    born = np.flatnonzero((birth >= max(first_day, eng.start)) & (birth <= min(last_day, eng.end)))
    rows = []
    for j in born.tolist():
        key, mother = int(persons.cols["_BIRTH_OF"][j]), int(persons.cols["_MOTHER"][j])
        rows.append((j, int(birth[j]), CHILD, key))
        if mother >= 0 and key == int(persons.cols["_G"][j]):
            rows.append((mother, int(birth[j]), MOTHER, key))
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def _birth_diagnoses(eng: Engine, block: Block, kind: np.ndarray, longer: np.ndarray,
                     rng: np.random.Generator) -> None:
    """A birth stay's main diagnosis is the child's birth (a perinatal condition when it stays longer), the mother's
    her delivery (a caesarean when she stays longer); neither has a related diagnosis."""
    main, rel = list(block.cols["DGN_PAL"]), list(block.cols["DGN_REL"])
    for which, preferred in ((CHILD, C.BIRTH_DIAGNOSES), (MOTHER, C.DELIVERY_DIAGNOSES)):
        codes = list(eng.codes_for("DGN_PAL", list(preferred), "T_MCOaaB"))
        rows = np.flatnonzero(kind == which)
        if not codes or not len(rows):
            continue
        usual, other = codes[:1], codes[1:] or codes[:1]
        draws = rng.integers(0, len(other), len(rows)).tolist()
        for k, d in zip(rows.tolist(), draws):
            main[k] = other[d] if longer[k] else usual[0]
            rel[k] = ""
    block.set("DGN_PAL", main)
    block.set("DGN_REL", rel)


@enricher(r"T_MCOaaD")
def associated_diagnoses(eng: Engine, tp: TablePlan, block: Block, anchor: Block | None, rng: np.random.Generator,
                         year: int | None) -> None:
    codes, p = eng.weighted_codes("ASS_DGN", C.ASSOCIATED_DIAGNOSES, tp.family)
    chosen = [codes[i] for i in rng.choice(len(codes), block.n, p=p).tolist()]
    if anchor is not None and {"COD_SEX", "AGE_ANN"} <= set(anchor.cols) and block.n:
        sexes = [int(anchor.cols["COD_SEX"][i]) for i in block.parent.tolist()]
        ages = [int(a) if a != "" else 0 for a in take(anchor.cols["AGE_ANN"], block.parent)]
        chosen = C.fit_to_patients(chosen, sexes, ages, codes, p, rng)
    block.set("ASS_DGN", chosen)
    block.set("DGN_ASS_NUM", block.within().tolist())


@enricher(r"T_MCOaaA")
def stay_acts(eng: Engine, tp: TablePlan, block: Block, anchor: Block | None, rng: np.random.Generator,
              year: int | None) -> None:
    codes, p = eng.weighted_codes("CDC_ACT", C.CCAM_ACTS, tp.family)
    block.set("CDC_ACT", [codes[i] for i in rng.choice(len(codes), block.n, p=p).tolist()])
    block.set("NBR_EXE_ACT", [1] * block.n)
    if anchor is not None and "SEJ_NBJ" in anchor.cols and block.n:
        stay_days = np.asarray(anchor.cols["SEJ_NBJ"], dtype=np.int64)[block.parent]
        block.set("ENT_DAT_DEL", (rng.random(block.n) * (stay_days + 1)).astype(np.int64).tolist())


@enricher(r"T_MCOaaUM")
def medical_units(eng: Engine, tp: TablePlan, block: Block, anchor: Block | None, rng: np.random.Generator,
                  year: int | None) -> None:
    block.set("UM_ORD_NUM", block.within().tolist())
    if anchor is not None and "SEJ_NBJ" in anchor.cols and block.n:
        stay_days = np.asarray(anchor.cols["SEJ_NBJ"], dtype=np.int64)[block.parent]
        block.set("PAR_DUR_SEJ", stay_days.tolist())


@enricher(r"T_SSRaaB")
def weekly_summaries(eng: Engine, tp: TablePlan, block: Block, anchor: Block | None, rng: np.random.Generator,
                     year: int | None) -> None:
    """An SSR stay's RHS are its weeks: MOI_ANN is the month of the RHS's week (from entry, within the stay)."""
    if anchor is None or "ENT_DAT" not in anchor.cols or not block.n:
        return
    entry = np.asarray(anchor.cols["ENT_DAT"], dtype=np.int64)[block.parent]
    exit_ = np.asarray(anchor.cols["SOR_DAT"], dtype=np.int64)[block.parent]
    week = np.minimum(entry + 7 * (block.within() - 1), exit_)
    block.set("MOI_ANN", [f"{d.year:04d}{d.month:02d}" for d in map(date.fromordinal, week.tolist())])
