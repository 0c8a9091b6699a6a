"""Long-term illnesses (IR_IMB_R) and causes of death (KI_CCI_R, KI_ECD_R).

ALDs are more frequent with age; an ALD is ongoing (end ``1600-01-01`` or empty) or ended before the
delivery. Every dead person has one KI_CCI_R row whose death date is the one of IR_BEN_R, and one to three
KI_ECD_R causes.
"""
from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from . import codes as C
from .model import Block, take
from .plan import ALD, TablePlan
from .registry import enricher, special
from .values import UNKNOWN_ORD

if TYPE_CHECKING:  # the engine imports this module to register it
    from .engine import Engine


@special(ALD)
def long_term_illnesses(eng: Engine, tp: TablePlan, ident: Block, rng: np.random.Generator,
                        year: int | None) -> Block:
    age = np.asarray(ident.cols["_AGE"], dtype=float)
    weight = np.asarray(ident.cols["_W"], dtype=float)
    p = np.select([age < 40, age < 65], [0.04, 0.14], 0.32) * (weight >= 1)
    has = rng.random(ident.n) < p
    if eng.first_chunk and not has.any() and ident.n:
        has[0] = True
    counts = np.where(has, rng.choice([1, 2], ident.n, p=[0.8, 0.2]), 0)
    block = eng.children(tp, ident, counts)
    m = block.n
    idx = block.parent
    codes, probs = eng.weighted_codes("MED_MTF_COD", [(c, w) for c, w, _ in C.ALD_DISEASES], tp.family)
    chosen = rng.choice(len(codes), m, p=probs)
    numbers = {c: n for c, _, n in C.ALD_DISEASES}
    diseases = C.fit_to_patients([codes[i] for i in chosen.tolist()], take(ident.cols["BEN_SEX_COD"], idx),
                                 take(ident.cols["_AGE"], idx), codes, probs, rng)
    block.set("MED_MTF_COD", diseases)
    block.set("IMB_ALD_NUM", [numbers.get(c, 31) for c in diseases])
    birth = np.asarray(ident.cols["_BIRTH"], dtype=np.int64)[idx]
    first = np.maximum(birth, date(2000, 1, 1).toordinal())
    last = np.minimum(np.asarray(ident.cols["_HI"], dtype=np.int64)[idx], eng.end)  # not after the death
    first = np.minimum(first, last)
    begin = first + (rng.random(m) * (last - first + 1)).astype(np.int64)
    ended = rng.random(m) < 0.35
    stop = begin + rng.integers(180, 3650, m)
    ended &= stop <= eng.end
    ongoing_text = rng.random(m) < 0.5
    block.set("IMB_ALD_DTD", begin.tolist(), True)
    block.set("IMB_ALD_DTF", [int(s) if e else (UNKNOWN_ORD if o else "") for s, e, o in
                              zip(stop.tolist(), ended.tolist(), ongoing_text.tolist())], True)
    inserted = np.minimum(begin + rng.integers(0, 30, m), eng.end)
    block.set("INS_DTE", inserted.tolist(), True)
    block.set("UPD_DTE", (inserted + (rng.random(m) * (eng.end - inserted + 1)).astype(np.int64)).tolist(), True)
    block.set("IMB_ETM_NAT", [41] * m)
    for column in list(block.cols):
        if column not in tp.table.by_name:
            del block.cols[column]
    return block


def _death_year_and_cause(eng, tp, block: Block, anchor: Block, rng, cause_column: str) -> None:
    """The year of death, its identifier (DCD_IDT_ENC, one per death, the same on the certificate and its causes)
    and an ICD-10 cause."""
    deaths = [date.fromordinal(o) for o in block.cols["BEN_DCD_DTE"]]
    if "DCD_IDT_ENC" in tp.table.by_name:
        person = anchor.cols["_G"]
        block.set("DCD_IDT_ENC", [eng.people.death_ids(person[i]) for i in block.parent.tolist()])
    block.set("FLX_PER_ANN", [str(d.year) for d in deaths])
    causes = list(eng.codes_for(cause_column, list(C.DEATH_CAUSES), tp.family)) or list(C.DEATH_CAUSES)
    chosen = [causes[i] for i in rng.integers(0, len(causes), block.n).tolist()]
    if {"BEN_SEX_COD", "_BIRTH"} <= set(anchor.cols):  # the age at death, which may be years before the period
        births = take(anchor.cols["_BIRTH"], block.parent)
        ages = [(d - b) // 365 for d, b in zip(block.cols["BEN_DCD_DTE"], births)]
        chosen = C.fit_to_patients(chosen, take(anchor.cols["BEN_SEX_COD"], block.parent), ages, causes, None, rng)
    block.set(cause_column, chosen)


@enricher(r"KI_CCI_R")
def death_certificates(eng: Engine, tp: TablePlan, block: Block, anchor: Block | None, rng: np.random.Generator,
                       year: int | None) -> None:
    if not block.n:
        return
    _death_year_and_cause(eng, tp, block, anchor, rng, "DCD_CIM_COD")
    block.set("CER_VER_NUM", [1] * block.n)
    block.set("DCD_IDT_TOP", [1] * block.n)  # every generated death is matched: it names its person


@enricher(r"KI_ECD_R")
def death_causes(eng: Engine, tp: TablePlan, block: Block, anchor: Block | None, rng: np.random.Generator,
                 year: int | None) -> None:
    if not block.n:
        return
    _death_year_and_cause(eng, tp, block, anchor, rng, "ECD_CIM_COD")
    block.set("DCD_IDT_TOP", [1] * block.n)
    parent = block.parent
    within = (np.arange(block.n) - np.searchsorted(parent, parent) + 1).tolist()
    block.set("CER_LIG_NUM", within)
    block.set("ECD_CAU_RNG", within)
