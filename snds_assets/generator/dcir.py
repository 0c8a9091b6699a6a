"""DCIR: ER_PRS_F care lines and their affiliated ER_*_F lines, joined on the nine DCIR keys.

Each identity gets tens of lines per year it is alive (more with age), grouped in décomptes (one
``DCT_ORD_NUM``, ``PRS_ORD_NUM`` 1..3), released in a monthly flow (``FLX_DIS_DTD``, the first day of a month
after the care, usually the next one, 99 % within 6 months, up to 27 as SNDS.md says), a few of them for information
only (``DPN_QLF = 71``; ``PRS_DPN_QLP = 71``, wider, on a few more), some of them supplements (``CPL_MAJ_TOP = 2``),
a few cancelled by a regularisation line in a later flow (the line again, its quantities and amounts negative).
The kind of a line (consultation, pharmacy, biology, technical act, nursing) decides its
prestation nature and which affiliated tables describe it: ER_PHA_F drugs (CIP13), ER_BIO_F biology acts,
ER_CAM_F CCAM acts; the other affiliated tables describe a small share of the lines.
"""
from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from .. import domain
from . import codes as C
from .model import Block, take
from .people import PERSON_ATTRS
from .plan import DCIR, DCIR_CHILD, TablePlan
from .registry import special
from .values import cents_text, month_starts_after

if TYPE_CHECKING:  # the engine imports this module to register it
    from .engine import Engine

DCT_LIMIT = 99_999_999  # DCT_ORD_NUM has 8 digits in some affiliated tables
KIND = {k: i for i, k in enumerate(C.LINE_KINDS)}
# Affiliated table -> (kind of the lines it describes or None for any, probability, rows per described line)
CHILD_RULES: dict[str, tuple[str | None, float, tuple[int, ...], tuple[float, ...]]] = {
    "ER_PHA_F": ("pharmacy", 1.0, (1, 2, 3), (0.6, 0.3, 0.1)),
    "ER_BIO_F": ("biology", 1.0, (1, 2, 3, 4), (0.4, 0.3, 0.2, 0.1)),
    "ER_CAM_F": ("act", 1.0, (1, 2), (0.85, 0.15)),
    "ER_UCD_F": ("pharmacy", 0.03, (1,), (1.0,)),
    "ER_ETE_F": (None, 0.05, (1,), (1.0,)),
}
DEFAULT_RULE = (None, 0.01, (1,), (1.0,))
RELEASE_LAGS = (1, 2, 3, 4, 6, 12, 27)  # months from the care's month to its flow's (SNDS.md: up to 27, 99 % within 6)
RELEASE_LAG_WEIGHTS = (0.78, 0.14, 0.04, 0.02, 0.015, 0.004, 0.001)
WIDER_INFORMATION_SHARE = 0.01  # lines with PRS_DPN_QLP = 71 but not DPN_QLF = 71
SUPPLEMENT_SHARE = 0.02
REGULARISATION_SHARE = 0.01  # lines cancelled by a later décompte


def _draw(choices: list[str], rng: np.random.Generator, n: int) -> np.ndarray:
    return np.asarray(choices, dtype=object)[rng.integers(0, len(choices), n)]


@special(DCIR)
def care_lines(eng: Engine, tp: TablePlan, ident: Block, rng: np.random.Generator, year: int | None) -> Block:
    w = np.asarray(ident.cols["_W"], dtype=float)
    lo = np.asarray(ident.cols["_LO"], dtype=np.int64)
    hi = np.asarray(ident.cols["_HI"], dtype=np.int64)
    age = np.asarray(ident.cols["_AGE"], dtype=float)
    per_year = (10 + 0.3 * age) * w / 1.25  # décomptes per person-year (1.25 lines each)
    owners, firsts, lasts = [], [], []
    for y in eng.years:
        ylo = np.maximum(lo, max(date(y, 1, 1).toordinal(), eng.start))
        yhi = np.minimum(hi, min(date(y, 12, 31).toordinal(), eng.end))
        days = np.clip(yhi - ylo + 1, 0, None)
        k = rng.poisson(per_year * days / 365.25)
        if eng.first_chunk and k.sum() == 0 and (days > 0).any():
            k[int(np.argmax(days > 0))] = 1
        owners.append(np.repeat(np.arange(ident.n), k))
        firsts.append(np.repeat(ylo, k))
        lasts.append(np.repeat(yhi, k))
    owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
    first = np.concatenate(firsts) if firsts else np.zeros(0, np.int64)
    last = np.concatenate(lasts) if lasts else np.zeros(0, np.int64)
    n_dct = len(owner)
    care = first + (rng.random(n_dct) * (last - first + 1)).astype(np.int64)
    order = np.lexsort((care, owner))
    owner, care = owner[order], care[order]

    numbers = eng.next_numbers(("ER_PRS_F", "DCT_ORD_NUM"), n_dct) - 1
    dct = numbers % DCT_LIMIT + 1
    emt_ord = rng.integers(0, 1000, n_dct) + 1000 * (numbers // DCT_LIMIT)  # thousands carry DCT_ORD_NUM
    lag = rng.choice(RELEASE_LAGS, n_dct, p=RELEASE_LAG_WEIGHTS)
    back = rng.integers(1, 20, n_dct)  # days between the processing of the flow and its release
    emt_typ = _draw(eng.shared_choices(["FLX_EMT_TYP"], ["1", "2", "3", "5"]), rng, n_dct)
    emt_num = _draw(eng.shared_choices(["FLX_EMT_NUM"], [str(i) for i in range(1, 100)]), rng, n_dct)
    rem_typ = _draw(eng.shared_choices(["REM_TYP_AFF"], ["1", "1", "1", "1", "1", "1", "1", "1", "2", "3"]), rng, n_dct)
    sizes = rng.choice([1, 2, 3], n_dct, p=[0.8, 0.15, 0.05])

    n = int(sizes.sum())
    line_dct = np.repeat(np.arange(n_dct), sizes)
    prs_ord = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes) + 1
    kind = rng.choice(len(C.LINE_KINDS), n, p=C.LINE_KIND_WEIGHTS)
    line_owner = owner[line_dct]
    start = care[line_dct]
    stop = np.where(kind == KIND["nursing"], start + rng.integers(0, 15, n), start)
    stop = np.minimum(stop, np.minimum(hi[line_owner], eng.end))  # no care after death
    # A décompte is released (and processed) once all its care is done: nursing series end days later.
    done = np.maximum.reduceat(stop, np.cumsum(sizes) - sizes) if n else np.zeros(0, np.int64)
    flow = np.minimum(month_starts_after(done, lag - 1), eng.last_flow)
    treated = np.maximum(flow - back, done)
    info_only = rng.random(n) < 0.04
    # Drawn apart (these flags, then IJR_EMP_NUM), so that the lines drawn before them stay as they were for a seed.
    apart = np.random.default_rng([int(numbers[0]) if n_dct else 0, n])
    flags = apart.random((2, n))

    block = Block(n, parent=line_owner)
    block.set("DCT_ORD_NUM", dct[line_dct].tolist())
    block.set("FLX_DIS_DTD", flow[line_dct].tolist(), True)
    block.set("FLX_EMT_NUM", emt_num[line_dct].tolist())
    block.set("FLX_EMT_ORD", emt_ord[line_dct].tolist())
    block.set("FLX_EMT_TYP", emt_typ[line_dct].tolist())
    block.set("FLX_TRT_DTD", treated[line_dct].tolist(), True)
    block.set("PRS_ORD_NUM", prs_ord.tolist())
    block.set("REM_TYP_AFF", rem_typ[line_dct].tolist())
    for column in PERSON_ATTRS:
        if column in ident.cols:
            block.set(column, take(ident.cols[column], line_owner), column in ident.dates)
    block.set("ORG_CLE_NUM", take(ident.cols["ORG_AFF_BEN"], line_owner))
    block.set("ORG_CLE_NEW", block.cols["ORG_CLE_NUM"])
    block.set("EXE_SOI_DTD", start.tolist(), True)
    block.set("EXE_SOI_DTF", stop.tolist(), True)
    months = {}
    for column, values in (("EXE_SOI_AMD", start), ("EXE_SOI_AMF", stop)):
        texts = []
        for o in values.tolist():
            t = months.get(o)
            if t is None:
                d = date.fromordinal(o)
                t = months[o] = f"{d.year:04d}{d.month:02d}"
            texts.append(t)
        block.set(column, texts)
    dpn = np.where(info_only, domain.INFORMATION_ONLY_DPN_QLF, 0)
    block.set("DPN_QLF", dpn.tolist())
    block.set("PRS_DPN_QLP", np.where(flags[0] < WIDER_INFORMATION_SHARE, domain.INFORMATION_ONLY_DPN_QLF,
                                      dpn).tolist())
    nature = np.zeros(n, dtype=np.int64)
    cents = np.zeros(n, dtype=np.int64)
    quantity = np.ones(n, dtype=np.int64)
    price_ranges = {"consult": (2500, 3000), "pharmacy": (200, 9500), "biology": (500, 6000),
                    "act": (2000, 9999), "nursing": (300, 5000)}
    for name, i in KIND.items():
        mask = kind == i
        m = int(mask.sum())
        natures = [int(v) for v in eng.codes_for("PRS_NAT_REF", [str(x) for x in C.NATURES[name]], "ER_PRS_F")] \
            or list(C.NATURES[name])
        nature[mask] = np.asarray(natures)[rng.integers(0, len(natures), m)]
        low, high = price_ranges[name]
        cents[mask] = rng.integers(low, high + 1, m)
        if name == "pharmacy":
            quantity[mask] = rng.choice([1, 2, 3], m, p=[0.7, 0.2, 0.1])
    block.set("PRS_NAT_REF", nature.tolist())
    block.set("BSE_PRS_NAT", nature.tolist())
    block.set("PRS_ACT_QTE", quantity.tolist())
    block.set("PRS_ACT_NBR", quantity.tolist())
    paid = [cents_text(c) for c in cents.tolist()]
    block.set("PRS_PAI_MNT", paid)
    block.set("BSE_REM_BSE", paid)
    block.set("BSE_REM_MNT", [cents_text(c) for c in (cents * 7 // 10).tolist()])
    block.set("CPL_MAJ_TOP", np.where(flags[1] < SUPPLEMENT_SHARE, 2, 0).tolist())
    for column, since in domain.TEXT_SINCE_DRIFT.items():  # IJR_EMP_NUM: digits, then letters too (SNDS.md)
        if column in tp.table.by_name:
            number = apart.integers(10 ** 8, 10 ** 9, n).tolist()
            letter = apart.integers(0, 26, n).tolist()
            alphanumeric = (flow[line_dct] >= since.toordinal()).tolist()
            block.set(column, [f"{chr(65 + c)}{v}" if a else str(v) for v, c, a in zip(number, letter, alphanumeric)])
    block.set("_KIND", kind.tolist())
    keep = set(tp.table.columns) | {"_KIND"}
    for column in list(block.cols):
        if column not in keep:
            del block.cols[column]
    block.append_rows(regularisations(eng, tp, block, np.random.default_rng([int(numbers[0]) if n_dct else 0, n, 1])))
    return block


def regularisations(eng: Engine, tp: TablePlan, lines: Block, rng: np.random.Generator) -> Block:
    """Lines a later flow cancels (SNDS.md): each is repeated in a décompte of its own, released one to three months
    after it, with its quantities and amounts negative. Affiliated tables describe none of them."""
    flows = np.asarray(lines.cols["FLX_DIS_DTD"], dtype=np.int64)
    paid = np.asarray(lines.cols["DPN_QLF"]) != domain.INFORMATION_ONLY_DPN_QLF
    chosen = np.flatnonzero((rng.random(lines.n) < REGULARISATION_SHARE) & paid & (flows < eng.last_flow))
    copies = lines.take(chosen)
    k = copies.n
    if not k:
        return copies
    numbers = eng.next_numbers(("ER_PRS_F", "DCT_ORD_NUM"), k) - 1
    copies.set("DCT_ORD_NUM", (numbers % DCT_LIMIT + 1).tolist())
    copies.set("FLX_EMT_ORD", (np.asarray(copies.cols["FLX_EMT_ORD"]) % 1000 + 1000 * (numbers // DCT_LIMIT)).tolist())
    copies.set("PRS_ORD_NUM", [1] * k)
    later = np.minimum(month_starts_after(flows[chosen], rng.integers(0, 3, k)), eng.last_flow)
    treated = np.maximum(later - rng.integers(1, 20, k), np.asarray(copies.cols["FLX_TRT_DTD"], dtype=np.int64))
    copies.set("FLX_DIS_DTD", later.tolist(), True)
    copies.set("FLX_TRT_DTD", treated.tolist(), True)
    for column in copies.cols:
        if domain.is_signed_quantity(tp.table, column):
            copies.set(column, [negative(v) for v in copies.cols[column]])
    copies.set("_KIND", [-1] * k)
    return copies


def negative(value: int | str) -> int | str:
    if isinstance(value, int):
        return -value
    return value if value in ("", "0", "0.00") or value.startswith("-") else f"-{value}"


@special(DCIR_CHILD)
def affiliated_lines(eng: Engine, tp: TablePlan, lines: Block, rng: np.random.Generator,
                     year: int | None) -> Block:
    target, share, sizes, weights = CHILD_RULES.get(tp.family, DEFAULT_RULE)
    n = lines.n
    eligible = np.asarray(lines.cols["_KIND"]) >= 0  # a regularisation (-1) is described by none
    if target is not None:
        eligible = np.asarray(lines.cols["_KIND"]) == KIND[target]
    described = eligible & (rng.random(n) < share)
    if eng.first_chunk and not described.any() and eligible.any():
        described[int(np.argmax(eligible))] = True
    counts = np.where(described, rng.choice(sizes, n, p=weights), 0)
    block = eng.children(tp, lines, counts)
    within = (np.arange(block.n) - np.repeat(np.cumsum(counts) - counts, counts) + 1).tolist()
    cols = set(tp.table.columns)
    m = block.n
    if tp.family == "ER_PHA_F":
        cip = list(eng.codes_for("PHA_PRS_C13", list(C.CIP13_CODES), "ER_PHA_F")) or list(C.CIP13_CODES)
        chosen = [cip[i] for i in rng.integers(0, len(cip), m).tolist()]
        block.set("PHA_PRS_C13", chosen)
        if "PHA_PRS_IDE" in cols:
            block.set("PHA_PRS_IDE", [int(c[5:12]) for c in chosen])
        block.set("PHA_ORD_NUM", within)
        block.set("PHA_ACT_QSN", rng.choice([1, 1, 1, 2, 3], m).tolist())
    elif tp.family == "ER_BIO_F":
        acts = list(eng.codes_for("BIO_PRS_IDE", [str(a) for a in C.BIOLOGY_ACTS], "ER_BIO_F")) or \
            [str(a) for a in C.BIOLOGY_ACTS]
        block.set("BIO_PRS_IDE", [int(acts[i]) for i in rng.integers(0, len(acts), m).tolist()])
        block.set("BIO_ORD_NUM", within)
        block.set("BIO_ACT_QSN", [1] * m)
    elif tp.family == "ER_CAM_F":
        codes, p = eng.weighted_codes("CAM_PRS_IDE", C.CCAM_ACTS, "ER_CAM_F")
        block.set("CAM_PRS_IDE", [codes[i] for i in rng.choice(len(codes), m, p=p).tolist()])
        block.set("CAM_ORD_NUM", within)
    elif tp.family == "ER_UCD_F":
        ucd = [str(u) for u in C.UCD_CODES]
        for column in ("UCD_UCD_COD", "UCD_COD"):
            if column in cols:
                block.set(column, [ucd[i] for i in rng.integers(0, len(ucd), m).tolist()])
    for column in list(block.cols):
        if column not in cols:
            del block.cols[column]
    return block
