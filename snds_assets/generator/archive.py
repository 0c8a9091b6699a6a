"""IR_BEN_R_ARC, the archive of IR_BEN_R: identities CNAM moved out of it, generated when ``--tables`` names it."""
from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from .model import Block
from .people import keyed
from .plan import ARCHIVED, TablePlan
from .registry import special

if TYPE_CHECKING:  # the engine imports this module to register it
    from .engine import Engine

DCIR_START = date(2006, 1, 1).toordinal()  # the first care the base holds: an archived identity's is not older
HORIZON = date(2030, 1, 1).toordinal()  # an archived identity's last care is drawn up to then, or to the death
ARCHIVED_STREAMS = ("has", "seen", "inserted", "updated")


@special(ARCHIVED)
def archived_identities(eng: Engine, tp: TablePlan, persons: Block, rng: np.random.Generator,
                        year: int | None) -> Block:
    """IR_BEN_R_ARC: identities CNAM moved out of IR_BEN_R, with no care for years: a former pseudo-NIR (a card
    given up, a dependant become insured) of a person whose lifelong NIR names it, so that it joins no care row.
    Drawn by the person's number: a delivery lists those whose last care was two years before its period, and the
    next lists them again with the same dates."""
    number = np.asarray(persons.cols["_G"], dtype=np.int64)
    u = {name: keyed(eng.seed, stream, number) for stream, name in enumerate(ARCHIVED_STREAMS, start=70)}
    birth = np.asarray(persons.cols["_BIRTH"], dtype=np.int64)
    first = np.maximum(birth + 365, DCIR_START)
    last = np.minimum(np.asarray(persons.cols["_DEATH"], dtype=np.int64), HORIZON)
    seen = first + (u["seen"] * np.maximum(last - first, 0)).astype(np.int64)  # its last care
    lifelong = np.array([t == "1" for t in persons.cols["BEN_IDT_TOP"]], dtype=bool)
    eligible = lifelong & (first < last) & (first <= eng.start - 2 * 365)
    has = eligible & (u["has"] < 0.1) & (seen <= eng.start - 2 * 365)
    if eng.first_chunk and not has.any() and eligible.any():  # a tiny delivery still has one
        j = int(np.argmax(eligible))
        has[j], seen[j] = True, first[j]
    block = eng.children(tp, persons, has.astype(np.int64))
    m, idx = block.n, block.parent
    born, seen = birth[idx], seen[idx]
    registered = np.maximum(born, seen - 20 * 365)
    inserted = registered + (u["inserted"][idx] * (seen - registered + 1)).astype(np.int64)
    updated = seen + 1 + (u["updated"][idx] * 364).astype(np.int64)
    block.set("BEN_NIR_PSA", [eng.people.archived_psa(int(g)) for g in number[idx].tolist()])
    block.set("BEN_RNG_GEM", [1] * m)
    block.set("BEN_CDI_NIR", ["00"] * m)
    block.set("BEN_TOP_CNS", ["0"] * m)
    for column, days in (("MAX_TRT_DTD", seen), ("BEN_DTE_INS", inserted), ("BEN_DTE_MAJ", updated),
                         ("BEN_IDT_MAJ", updated)):
        block.set(column, days.tolist(), True)
    for column in list(block.cols):
        if column not in tp.table.by_name:
            del block.cols[column]
    return block
