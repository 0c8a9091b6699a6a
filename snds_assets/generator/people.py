"""Persons and their identities (IR_BEN_R), the root every patient-bearing table hangs from.

A person (``BEN_IDT_ANO``) has one or more identities ``(BEN_NIR_PSA, BEN_RNG_GEM)``: same-sex twins share a
pseudo-NIR with ranks 1 and 2, some persons have several pseudo-NIRs (a child on both parents' cards, a
provisional then a final NIR), a few identities carry a fictitious NIR. ``BEN_IDT_ANO`` is ``BEN_NIR_ANO``
when ``BEN_IDT_TOP = 1``, else the first identity's ``BEN_NIR_PSA || BEN_RNG_GEM`` (SNDS.md). A person born since
2006 has a mother among the persons of its chunk when one fits.

The population is a set of slots, each held by one person at a time, from birth to death, then by the next (born
the day after): ``--patients`` persons alive on any day. A person is a slot and a rank in it; its draws are keyed
by that number and the seed, never by the chunk's random stream or the period, so that deliveries of one seed for
any periods tell one history.

Pseudonyms are an affine bijection of a number on 64 bits, keyed by the seed: unique by construction,
different for every seed, and never equal to a placeholder.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from .. import domain
from . import codes as C
from .model import Block

M64 = (1 << 64) - 1
PERSON_ATTRS: tuple[str, ...] = (
    "BEN_IDT_ANO", "BEN_NIR_PSA", "BEN_RNG_GEM", "BEN_NIR_ANO", "BEN_IDT_TOP", "ASS_NIR_ANO", "BEN_CDI_NIR",
    "BEN_NAI_ANN", "BEN_NAI_MOI", "BEN_SEX_COD", "BEN_DCD_DTE", "BEN_DCD_AME", "BEN_RES_DPT", "BEN_RES_COM",
    "ORG_AFF_BEN",
)
IDENTITY_DATES = frozenset({"BEN_DCD_DTE", "BEN_IDT_MAJ", "MAX_TRT_DTD", "BEN_DTE_INS", "BEN_DTE_MAJ"})
_SUFFIX = "GHJKMNPQRSTVWXYZ0123456789ABCDEF"


OCCUPANTS = 64  # a person's number is its slot's times this plus its rank in the slot (from -32)
TWINS = 0.007  # share of the slots' pairs whose occupants at the reference date are twins
DAYS = 365.25
REFERENCE = date(2015, 1, 1).toordinal()  # occupant 0 of each slot is alive then
ORIGIN = date(2006, 1, 1).toordinal()  # IR_BEN_R holds the persons dead since (the base's first care)
INSERTED_FROM = date(2004, 1, 1).toordinal()  # a person entered the base from then, or at birth
BORN_FROM = date(1901, 1, 1).toordinal()  # the base's dates are plausible from 1900 on
# Yearly death rates by age (the same rates the care tables were drawn with): the life table of every occupant.
_AGES = np.arange(0, 121, 1 / 12)
_HAZARD = np.select([_AGES < 50, _AGES < 70, _AGES < 85, _AGES < 105], [0.001, 0.008, 0.035, 0.11], 0.5)
_CUMULATIVE = np.concatenate([[0.0], np.cumsum(_HAZARD[:-1] / 12)])
_SURVIVAL = np.exp(-_CUMULATIVE)
_AGE_CDF = np.cumsum(_SURVIVAL) / _SURVIVAL.sum()  # ages of a stationary population: as its survivors


def _residual(age: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The age at death of persons alive at ``age``, from a uniform draw each, by the life table."""
    target = np.interp(age, _AGES, _CUMULATIVE) - np.log1p(-u)
    return np.interp(target, _CUMULATIVE, _AGES)


def keyed(seed: int, stream: int, numbers: np.ndarray) -> np.ndarray:
    """Uniform draws in [0, 1), one per number, fixed by seed, stream and number (splitmix64): a person's draws do
    not depend on the chunk or the period it is generated in."""
    with np.errstate(over="ignore"):
        x = np.asarray(numbers, dtype=np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        x += np.uint64((seed * 0x632BE59BD9B4E019 + stream * 0xD1B54A32D192ED03) & M64)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class Pseudonyms:
    """Keyed, collision-free 17-character pseudonyms (and 32-character ones for NIR_ANO_MAM)."""

    def __init__(self, seed: int, namespace: int):
        rng = np.random.default_rng([seed, 7919, namespace])
        self.a = int(rng.integers(1 << 40, 1 << 62)) | 1
        self.b = int(rng.integers(0, 1 << 62))

    def __call__(self, n: int) -> str:
        x = (n * self.a + self.b) & M64
        return f"{x:016X}{_SUFFIX[x % 32]}"

    def long(self, n: int) -> str:
        x = (n * self.a + self.b) & M64
        y = (x * 0x9E3779B97F4A7C15 + 1) & M64
        return f"{x:016X}{y:016X}"


@dataclass
class PeopleConfig:
    """What the people generator needs from the run."""

    seed: int
    start: int  # ordinals
    end: int  # last care day (never after the delivery)
    codes_cdi_fictitious: tuple[str, ...]
    codes_cdi_provisional: tuple[str, ...]
    organisms: tuple[str, ...]
    departments: tuple[str, ...]
    communes: tuple[str, ...]


@dataclass
class People:
    persons: Block  # one row per person (its main identity's attributes)
    identities: Block  # one row per identity: IR_BEN_R
    deceased: Block  # one row per dead person
    identities_of: list[list[int]]  # person -> its identity rows


class PeopleGenerator:
    """Generates persons chunk by chunk; counters carry over so that identities stay unique."""

    def __init__(self, config: PeopleConfig):
        self.c = config
        self.nir_ano = Pseudonyms(config.seed, 1)
        self.nir_psa = Pseudonyms(config.seed, 2)
        self.parent_ano = Pseudonyms(config.seed, 3)
        self.death_ids = Pseudonyms(config.seed, 4)  # DCD_IDT_ENC: one per death, by the person's number
        self.mother_child = Pseudonyms(config.seed, 5)  # NIR_ANO_MAM: by the newborn's number, or a delivery's
        self.archived_psa = Pseudonyms(config.seed, 6)  # IR_BEN_R_ARC: a person's former pseudo-NIR, by its number

    def chunk(self, first: int, n: int) -> People:
        """The persons of slots ``first``..``first + n - 1`` in IR_BEN_R: each slot's occupants alive at some time
        from the origin to the period's end, with whatever rows the care tables give them in the period."""
        c = self.c
        slot, rank, birth, death, twinned = self._lineages(first, n)
        n = len(slot)
        g_all = slot * OCCUPANTS + (rank + OCCUPANTS // 2)  # the person's number, whatever the chunk or period
        draws = {name: keyed(c.seed, stream, g_all) for stream, name in enumerate((
            "sex", "unknown", "top", "fictitious", "ids", "org", "dpt", "com", "twin ids", "ins", "upd", "parent0",
            "parent1"), start=20)}
        sex = np.where(draws["sex"] < 0.5, 1, 2)
        unknown_birth = draws["unknown"] < 0.005
        top = draws["top"] < 0.93
        fictitious = draws["fictitious"] < 0.008
        n_ids = np.searchsorted([0.88, 0.97], draws["ids"], side="right") + 1
        org = (draws["org"] * len(c.organisms)).astype(np.int64)
        dpt = (draws["dpt"] * len(c.departments)).astype(np.int64)
        com = (draws["com"] * len(c.communes)).astype(np.int64)
        current = {s_: j for j, s_ in enumerate(slot.tolist())}  # each slot's last occupant born by the end
        if first == 0:  # a showcase in the first chunk, so that even a tiny delivery has every case
            fictitious[[current[s_] for s_ in range(min(n, 9)) if s_ in current]] = False
            if 4 in current:
                n_ids[current[4]] = 3  # person 4 has three identities
            if 5 in current:
                fictitious[current[5]] = True
            if 6 in current:
                unknown_birth[current[6]] = True
        twin_of = np.full(n, -1)
        at_reference = {s_: j for j, (s_, r) in enumerate(zip(slot.tolist(), rank.tolist())) if r == 0}
        for j in np.flatnonzero(twinned).tolist():
            mate = at_reference.get(int(slot[j]) - 1)
            if mate is not None and not fictitious[mate] and not fictitious[j]:
                twin_of[j] = mate
                sex[j], unknown_birth[j] = sex[mate], unknown_birth[mate]
        twin_start = np.zeros(n, dtype=bool)
        twin_start[twin_of[twin_of >= 0]] = True
        if first == 0:
            for s_ in (7, 8):  # persons 7 and 8 die in the period (the only draws that depend on it)
                j = current.get(s_)
                if j is not None and birth[j] <= c.end and death[j] >= c.start:
                    death[j] = max(int(max(c.start, birth[j])), min(c.end, int(max(c.start, birth[j])) + 200))
        lifetime = death.copy()  # the day of death, even after the period
        dead = death <= c.end
        death = np.where(dead, death, -1)
        age_at_start = np.maximum(0, (c.start - birth) // 365)
        lo = np.maximum(c.start, birth)
        hi = np.where(dead, death, c.end)  # before lo for a person dead before the period: no care
        insertion = np.stack([(draws[name] * (1 << 30)).astype(np.int64) for name in
                              ("ins", "upd", "parent0", "parent1")], axis=1).reshape(-1).tolist()

        ids: dict[str, list] = {k: [] for k in (
            "BEN_NIR_PSA", "BEN_RNG_GEM", "BEN_NIR_ANO", "BEN_IDT_ANO", "BEN_IDT_TOP", "ASS_NIR_ANO", "BEN_IDT_MAJ",
            "BEN_CDI_NIR", "BEN_NAI_ANN", "BEN_NAI_MOI", "BEN_SEX_COD", "BEN_DCD_DTE", "BEN_DCD_AME", "ORG_AFF_BEN",
            "BEN_RES_DPT", "BEN_RES_COM", "BEN_TOP_CNS", "MAX_TRT_DTD", "ORG_CLE_NEW", "BEN_DTE_INS", "BEN_DTE_MAJ",
            "_P", "_G", "_I", "_W", "_LO", "_HI", "_AGE", "_BIRTH", "_DEATH")}
        identities_of: list[list[int]] = [[] for _ in range(n)]
        shared: dict[int, list[str]] = {}  # first twin -> the pseudo-NIRs the pair shares
        person_ido: list[str] = [""] * n
        person_top: list[bool] = [bool(t) for t in top]
        for j in range(n):
            g = int(g_all[j])
            birth_j, lo_j, hi_j = int(birth[j]), int(lo[j]), int(hi[j])
            if fictitious[j]:
                person_top[j] = False
            adult = age_at_start[j] >= 18
            inserted = max(birth_j, INSERTED_FROM + insertion[4 * j] % 3000)  # entered the base, once for all
            inserted = min(inserted, hi_j)
            plan: list[tuple[str, int, str, float]] = []  # (pseudo-NIR, rank, BEN_CDI_NIR, weight)
            if twin_of[j] >= 0:
                for k, psa in enumerate(shared.get(int(twin_of[j]), [])):
                    plan.append((psa, 2, "00", 1.0 if k == 0 else 0.25))
            elif fictitious[j]:
                held = C.fictitious_codes_for(c.codes_cdi_fictitious, int(sex[j]), (inserted - birth_j) // 365)
                code = held[g % len(held)]
                plan.append((self.nir_psa(g * 4), 1, code, 0.3))
            else:
                count = int(n_ids[j]) if not twin_start[j] else (2 if draws["twin ids"][j] < 0.3 else 1)
                for k in range(count):
                    code = "00" if k == 0 else (c.codes_cdi_provisional[g % len(c.codes_cdi_provisional)]
                                               if k == 2 else "00")
                    plan.append((self.nir_psa(g * 4 + k), 1, code, 1.0 if k == 0 else 0.25))
                if twin_start[j]:
                    shared[j] = [p[0] for p in plan]
            # SNDS.md: without a lifelong NIR, BEN_IDT_ANO is the identity's own BEN_NIR_PSA || BEN_RNG_GEM, so that
            # several identities are one person only through a lifelong NIR (BEN_IDT_TOP = 1).
            if len(plan) > 1 and not fictitious[j]:
                person_top[j] = True
            nir_ano = self.nir_ano(g) if person_top[j] else ""
            first_psa, first_rank = plan[0][0], plan[0][1]
            ido = nir_ano if person_top[j] else f"{first_psa}{first_rank}"
            person_ido[j] = ido
            dead = death[j] > 0
            death_ord = int(death[j]) if dead else domain.UNKNOWN_DATE.toordinal()
            death_d = date.fromordinal(death_ord)
            year_text = str(domain.UNKNOWN_YEAR) if unknown_birth[j] else str(date.fromordinal(birth_j).year)
            month = date.fromordinal(birth_j).month
            updated = inserted + insertion[4 * j + 1] % max(1, c.end - inserted + 1)
            for k, (psa, rank, code, weight) in enumerate(plan):
                own = k == 0 and adult and nir_ano
                row = {
                    "BEN_NIR_PSA": psa, "BEN_RNG_GEM": rank, "BEN_NIR_ANO": nir_ano, "BEN_IDT_ANO": ido,
                    "BEN_IDT_TOP": "1" if person_top[j] else "0",
                    "ASS_NIR_ANO": nir_ano if own else self.parent_ano(insertion[4 * j + 2 + (k % 2)]),
                    "BEN_IDT_MAJ": updated, "BEN_CDI_NIR": code, "BEN_NAI_ANN": year_text, "BEN_NAI_MOI": month,
                    "BEN_SEX_COD": int(sex[j]), "BEN_DCD_DTE": death_ord,
                    "BEN_DCD_AME": f"{death_d.year:04d}{death_d.month:02d}",
                    "ORG_AFF_BEN": c.organisms[int(org[j])], "BEN_RES_DPT": c.departments[int(dpt[j])],
                    "BEN_RES_COM": c.communes[int(com[j])], "BEN_TOP_CNS": "1" if weight >= 1 else "0",
                    "MAX_TRT_DTD": hi_j, "ORG_CLE_NEW": c.organisms[int(org[j])],
                    "BEN_DTE_INS": inserted, "BEN_DTE_MAJ": updated,
                    "_P": j, "_G": g, "_W": weight, "_LO": lo_j, "_HI": hi_j, "_AGE": int(age_at_start[j]),
                    "_BIRTH": birth_j, "_DEATH": int(lifetime[j]),
                    "_I": g * 4 + k,  # the identity's number, whatever the delivery
                }
                for name, value in row.items():
                    ids[name].append(value)
                identities_of[j].append(len(ids["_P"]) - 1)
        mother, birth_of = self._mothers(birth, sex, death, unknown_birth, twin_of, g_all)
        # A newborn is on its mother's card one time in two: its first identity's insured (ASS_NIR_ANO) is then her
        # lifelong NIR; newborn twins, who share a pseudo-NIR, share their insured.
        on_card = (keyed(c.seed, 41, g_all) < 0.5).tolist()
        for j, m in enumerate(mother):
            child = identities_of[j][0]
            if twin_of[j] >= 0 and m >= 0:
                ids["ASS_NIR_ANO"][child] = ids["ASS_NIR_ANO"][identities_of[int(twin_of[j])][0]]
            elif m >= 0 and on_card[j] and ids["BEN_NIR_ANO"][identities_of[m][0]]:
                ids["ASS_NIR_ANO"][child] = ids["BEN_NIR_ANO"][identities_of[m][0]]
        identities = Block(len(ids["_P"]), ids, dates=IDENTITY_DATES)
        main = [rows[0] for rows in identities_of]
        persons = identities.take(np.array(main, dtype=np.int64))
        persons.cols["BEN_IDT_TOP"] = ["1" if t else "0" for t in person_top]
        dead_rows = np.array([j for j in range(n) if death[j] > 0], dtype=np.int64)
        deceased = persons.take(dead_rows)
        deceased.cols["_PERSON"] = dead_rows.tolist()
        persons.cols["_PERSON"] = list(range(n))
        persons.cols["_MOTHER"] = mother
        persons.cols["_BIRTH_OF"] = birth_of
        return People(persons, identities, deceased, identities_of)

    def _mothers(self, birth: np.ndarray, sex: np.ndarray, death: np.ndarray, unknown_birth: np.ndarray,
                 twin_of: np.ndarray, numbers: np.ndarray) -> tuple[list[int], list[int]]:
        """Each person born since the origin gets a mother among the chunk's persons when one fits (a woman of 15 to
        49 alive at the birth, with no other birth in the 300 days before; twins share theirs), drawn in the order of
        births with a draw keyed by the child: the same mother in every delivery of the seed. The PMSI pairs a birth
        of the care period with her delivery stay. Also returns, per person, the number of the birth's first child,
        which keys that pair."""
        n = len(birth)
        mother = [-1] * n
        birth_of = [int(x) for x in numbers]
        women = np.flatnonzero((sex == 2) & ~unknown_birth)
        last = np.full(len(women), np.iinfo(np.int64).min // 2)
        draw = keyed(self.c.seed, 40, numbers)
        children = np.flatnonzero(birth >= min(ORIGIN, self.c.start))
        for j in children[np.argsort(birth[children], kind="stable")].tolist():
            if twin_of[j] >= 0:
                mother[j], birth_of[j] = mother[int(twin_of[j])], birth_of[int(twin_of[j])]
                continue
            age = birth[j] - birth[women]
            fit = ((birth[j] - last > 300) & (age >= 15 * DAYS) & (age < 50 * DAYS)
                   & ((death[women] < 0) | (death[women] >= birth[j])))
            candidates = np.flatnonzero(fit)
            if len(candidates):
                k = int(candidates[int(draw[j] * len(candidates))])
                mother[j] = int(women[k])
                last[k] = birth[j]
        return mother, birth_of

    def _lineages(self, first: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Slot, rank, birth, death and twin flag of every occupant of slots ``first``..``first + n - 1`` born by
        the period's end and alive at some time since the origin, ordered by slot then rank. Each slot holds one
        person at any time: occupant 0 is alive at the reference date (its age drawn from the stationary
        population's), the next is born the day after its death, the one before died the day before its birth; every
        draw is keyed by the slot and rank, so that deliveries of one seed for any periods tell one history. The
        occupant 0 of an odd slot is flagged when it is the twin of the previous slot's (born the same day)."""
        c = self.c
        origin = min(ORIGIN, c.start)
        slots = np.arange(first, first + n, dtype=np.int64)
        number = slots * OCCUPANTS + OCCUPANTS // 2
        age0 = np.interp(keyed(c.seed, 1, number), _AGE_CDF, _AGES)
        birth0 = REFERENCE - (age0 * DAYS).astype(np.int64)
        twin = (slots % 2 == 1) & (slots > first) & (keyed(c.seed, 12, slots - 1) < 2 * TWINS)
        if first == 0:  # the showcase's only twins: persons 2 and 3
            twin[:9] = slots[:9] == 3
        birth0 = np.where(twin, np.roll(birth0, 1), birth0)
        age0 = (REFERENCE - birth0) / DAYS
        death0 = birth0 + (_residual(age0, keyed(c.seed, 2, number)) * DAYS).astype(np.int64)
        rows = [(slots, np.zeros(n, dtype=np.int64), birth0, death0, twin)]
        born, died, rank, live = birth0, death0, 0, np.ones(n, dtype=bool)
        while True:  # the later occupants, born by the period's end
            rank += 1
            born = died + 1
            live &= born <= c.end
            if not live.any():
                break
            died = born + (_residual(np.zeros(n), keyed(c.seed, 2, number + rank)) * DAYS).astype(np.int64)
            alone = np.zeros(int(live.sum()), dtype=bool)  # only occupants 0 are twins
            rows.append((slots[live], np.full(len(alone), rank), born[live], died[live], alone))
        born, rank, live = birth0, 0, np.ones(n, dtype=bool)
        while True:  # the earlier occupants, dead since the origin
            rank -= 1
            died = born - 1
            live &= died >= origin
            if not live.any():
                break
            born = died - (_residual(np.zeros(n), keyed(c.seed, 2, number + rank)) * DAYS).astype(np.int64)
            alone = np.zeros(int(live.sum()), dtype=bool)  # only occupants 0 are twins
            rows.append((slots[live], np.full(len(alone), rank), born[live], died[live], alone))
        slot, k, birth, death, twinned = (np.concatenate(parts) for parts in zip(*rows))
        birth = np.maximum(birth, BORN_FROM)
        keep = np.flatnonzero((birth <= c.end) & (death >= origin))
        keep = keep[np.lexsort((k[keep], slot[keep]))]
        return slot[keep], k[keep], birth[keep], death[keep], twinned[keep]
