"""IR_BEN_R_ARC, the archive of IR_BEN_R: identities CNAM moved out of it, generated when ``--tables`` names it."""
from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from .model import Block, take
from .plan import ARCHIVED, TablePlan
from .registry import special

if TYPE_CHECKING:  # the engine imports this module to register it
    from .engine import Engine

DCIR_START = date(2006, 1, 1).toordinal()  # the first care the base holds: an archived identity's is not older


@special(ARCHIVED)
def archived_identities(eng: Engine, tp: TablePlan, persons: Block, rng: np.random.Generator,
                        year: int | None) -> Block:
    """IR_BEN_R_ARC: identities CNAM moved out of IR_BEN_R, with no care for years: a former pseudo-NIR (a card
    given up, a dependant become insured) of a person whose lifelong NIR names it, so that it joins no care row."""
    birth = np.asarray(persons.cols["_BIRTH"], dtype=np.int64)
    eligible = np.array([t == "1" for t in persons.cols["BEN_IDT_TOP"]], dtype=bool) & (birth < eng.start - 3 * 365)
    has = eligible & (rng.random(persons.n) < 0.08)
    if eng.first_chunk and not has.any() and eligible.any():
        has[int(np.argmax(eligible))] = True
    block = eng.children(tp, persons, has.astype(np.int64))
    m, idx = block.n, block.parent
    born = birth[idx]
    last = np.minimum(eng.start - 2 * 365, np.asarray(persons.cols["_HI"], dtype=np.int64)[idx])  # not after a death
    first = np.maximum(born, DCIR_START)
    first = np.where(first < last, first, born)
    seen = first + (rng.random(m) * np.maximum(last - first, 0)).astype(np.int64)  # its last care, years ago
    registered = np.maximum(born, seen - 20 * 365)
    inserted = registered + (rng.random(m) * (seen - registered + 1)).astype(np.int64)
    updated = seen + rng.integers(1, 365, m)
    block.set("BEN_NIR_PSA", [eng.people.archived_psa(int(g)) for g in take(persons.cols["_G"], idx)])
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
