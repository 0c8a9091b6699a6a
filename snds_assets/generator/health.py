"""Long-term illnesses (IR_IMB_R) and causes of death (KI_CCI_R, KI_ECD_R).

ALDs are more frequent with age; an ALD is ongoing (end ``1600-01-01`` or empty) or ended before the
delivery. Every dead person has one KI_CCI_R row whose death date is the one of IR_BEN_R, and one to three
KI_ECD_R causes. Both are a person's, drawn by its number (``people.keyed``) rather than the chunk's stream, so
that successive deliveries of one seed agree on them.
"""
from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from . import codes as C
from .model import Block, take
from .people import keyed
from .plan import ALD, TablePlan
from .registry import enricher, special
from .values import UNKNOWN_ORD

if TYPE_CHECKING:  # the engine imports this module to register it
    from .engine import Engine


# Shares of persons whose first ALD begins before these ages (from the previous one), and of them with a second one.
ALD_ONSET = ((0, 40, 0.06), (40, 65, 0.10), (65, 85, 0.22))
SECOND_ALD = 0.2
ALD_FROM = date(1990, 1, 1).toordinal()  # earlier beginnings are spread over the next ten years
CAUSE_STREAMS = (46, 47)  # a death's causes and their fit to its age, by person and rank
ALD_STREAMS = ("has", "onset", "second", "gap", "ended", "length", "text", "inserted", "updated", "disease", "fit")


@special(ALD)
def long_term_illnesses(eng: Engine, tp: TablePlan, ident: Block, rng: np.random.Generator,
                        year: int | None) -> Block:
    """Each identity's ALDs are a lifelong history drawn by its number (``_I``), so that successive deliveries list
    the same ones: an ALD is listed once it was inserted by the period's end, and told ended once it has."""
    n = ident.n
    number = np.repeat(np.asarray(ident.cols["_I"], dtype=np.int64) * 2, 2) + np.tile([0, 1], n)  # two possible
    u = {name: keyed(eng.seed, stream, number) for stream, name in enumerate(ALD_STREAMS, start=50)}
    birth = np.repeat(np.asarray(ident.cols["_BIRTH"], dtype=np.int64), 2)
    last = np.repeat(np.asarray(ident.cols["_HI"], dtype=np.int64), 2)  # the death, or the period's end
    patient = np.repeat(np.asarray(ident.cols["_W"], dtype=float) >= 1, 2)
    first_u = u["has"][0::2].repeat(2)  # the first ALD's draw decides its age band, the second follows it
    bands = np.cumsum([share for _, _, share in ALD_ONSET])
    band = np.searchsorted(bands, first_u, side="right")
    has = patient & (band < len(ALD_ONSET)) & ((np.arange(2 * n) % 2 == 0) | (u["second"] < SECOND_ALD))
    band = np.minimum(band, len(ALD_ONSET) - 1)
    low = np.array([a for a, _, _ in ALD_ONSET])[band]
    high = np.array([b for _, b, _ in ALD_ONSET])[band]
    onset_u = u["onset"][0::2].repeat(2)
    onset = birth + ((low + onset_u * (high - low)) * 365.25).astype(np.int64)
    onset += np.where(np.arange(2 * n) % 2 == 1, 30 + (u["gap"] * 3620).astype(np.int64), 0)
    onset = np.where(onset < ALD_FROM, ALD_FROM + (onset - birth) % 3652, onset)
    inserted = onset + (u["inserted"] * 30).astype(np.int64)
    listed = has & (onset <= last) & (inserted <= eng.end)
    if eng.first_chunk and n and not listed.any():  # a tiny delivery still has an ALD
        onset[0] = inserted[0] = min(max(int(birth[0]), ALD_FROM), eng.end)
        listed[0] = True
    counts = listed.reshape(n, 2).sum(axis=1)
    block = eng.children(tp, ident, counts)
    m = block.n
    onset, inserted, birth = onset[listed], inserted[listed], birth[listed]
    drawn = {name: values[listed] for name, values in u.items()}
    codes, probs = eng.weighted_codes("MED_MTF_COD", [(c, w) for c, w, _ in C.ALD_DISEASES], tp.family)
    cumulative = np.cumsum(probs) / np.sum(probs)
    chosen = np.minimum(np.searchsorted(cumulative, drawn["disease"], side="right"), len(codes) - 1)
    ald_number = {c: k for c, _, k in C.ALD_DISEASES}
    diseases = C.fit_to_patients([codes[i] for i in chosen.tolist()], take(ident.cols["BEN_SEX_COD"], block.parent),
                                 ((onset - birth) // 365).tolist(), codes, probs, rng, draws=drawn["fit"])
    block.set("MED_MTF_COD", diseases)
    block.set("IMB_ALD_NUM", [ald_number.get(c, 31) for c in diseases])
    stop = onset + 180 + (drawn["length"] * 3470).astype(np.int64)
    ended = (drawn["ended"] < 0.35) & (stop <= eng.end)
    ongoing_text = drawn["text"] < 0.5
    block.set("IMB_ALD_DTD", onset.tolist(), True)
    block.set("IMB_ALD_DTF", [int(s) if e else (UNKNOWN_ORD if o else "") for s, e, o in
                              zip(stop.tolist(), ended.tolist(), ongoing_text.tolist())], True)
    block.set("INS_DTE", inserted.tolist(), True)
    block.set("UPD_DTE", (inserted + (drawn["updated"] * (eng.end - inserted + 1)).astype(np.int64)).tolist(), True)
    block.set("IMB_ETM_NAT", [41] * m)
    for column in list(block.cols):
        if column not in tp.table.by_name:
            del block.cols[column]
    return block


def _death_year_and_cause(eng, tp, block: Block, anchor: Block, rng, cause_column: str) -> None:
    """The year of death, its identifier (DCD_IDT_ENC, one per death, the same on the certificate and its causes)
    and ICD-10 causes, drawn by the person's number and the cause's rank: every delivery gives a death the same
    causes, and the certificate's (KI_CCI_R) is the first of its causes (KI_ECD_R)."""
    deaths = [date.fromordinal(o) for o in block.cols["BEN_DCD_DTE"]]
    person = np.asarray(anchor.cols["_G"], dtype=np.int64)[block.parent]
    if "DCD_IDT_ENC" in tp.table.by_name:
        block.set("DCD_IDT_ENC", [eng.people.death_ids(g) for g in person.tolist()])
    block.set("FLX_PER_ANN", [str(d.year) for d in deaths])
    rank = block.within() - 1
    cause_u, fit_u = (keyed(eng.seed, stream, person * 4 + rank) for stream in CAUSE_STREAMS)
    causes = list(eng.codes_for(cause_column, list(C.DEATH_CAUSES), tp.family)) or list(C.DEATH_CAUSES)
    chosen = [causes[i] for i in np.minimum((cause_u * len(causes)).astype(np.int64), len(causes) - 1).tolist()]
    if {"BEN_SEX_COD", "_BIRTH"} <= set(anchor.cols):  # the age at death, which may be years before the period
        births = take(anchor.cols["_BIRTH"], block.parent)
        ages = [(d - b) // 365 for d, b in zip(block.cols["BEN_DCD_DTE"], births)]
        chosen = C.fit_to_patients(chosen, take(anchor.cols["BEN_SEX_COD"], block.parent), ages, causes, None, rng,
                                   draws=fit_u)
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
    within = block.within().tolist()
    block.set("CER_LIG_NUM", within)
    block.set("ECD_CAU_RNG", within)
