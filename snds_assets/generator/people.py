"""Persons and their identities (IR_BEN_R), the root every patient-bearing table hangs from.

A person (``BEN_IDT_ANO``) has one or more identities ``(BEN_NIR_PSA, BEN_RNG_GEM)``: same-sex twins share a
pseudo-NIR with ranks 1 and 2, some persons have several pseudo-NIRs (a child on both parents' cards, a
provisional then a final NIR), a few identities carry a fictitious NIR. ``BEN_IDT_ANO`` is ``BEN_NIR_ANO``
when ``BEN_IDT_TOP = 1``, else the first identity's ``BEN_NIR_PSA || BEN_RNG_GEM`` (SNDS.md). A person born in the
care period has a mother among the persons of its chunk when one fits.

Pseudonyms are an affine bijection of a counter on 64 bits, keyed by the seed: unique by construction,
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
        self.identity_counter = 0
        self.end_year = date.fromordinal(config.end).year

    def chunk(self, first: int, n: int, rng: np.random.Generator) -> People:
        c = self.c
        ages = np.arange(0, 106)
        weights = np.where(ages < 60, 1.0, np.maximum(0.02, (106 - ages) / 46.0))
        age = rng.choice(ages, n, p=weights / weights.sum())
        sex = rng.integers(1, 3, n)
        birth = np.array([date(self.end_year - int(a), int(m), int(d)).toordinal() for a, m, d in
                          zip(age, rng.integers(1, 13, n), rng.integers(1, 29, n))], dtype=np.int64)
        birth = np.minimum(birth, c.end - rng.integers(0, 60, n))
        unknown_birth = rng.random(n) < 0.005
        age_at_start = np.maximum(0, (c.start - birth) // 365)
        period_years = max((c.end - c.start + 1) / 365.25, 0.1)
        base = np.select([age_at_start < 50, age_at_start < 70, age_at_start < 85], [0.001, 0.008, 0.035], 0.11)
        dies = rng.random(n) < np.minimum(0.9, base * period_years)
        lo = np.maximum(c.start, birth)
        death = lo + (rng.random(n) * np.maximum(c.end - lo + 1, 1)).astype(np.int64)
        death = np.where(dies & (lo <= c.end), np.minimum(death, c.end), -1)
        hi = np.where(death > 0, death, c.end)
        top = rng.random(n) < 0.93
        twin_start = rng.random(n) < 0.007
        fictitious = rng.random(n) < 0.008
        n_ids = rng.choice([1, 2, 3], n, p=[0.88, 0.09, 0.03])
        org = rng.integers(0, len(c.organisms), n)
        dpt = rng.integers(0, len(c.departments), n)
        com = rng.integers(0, len(c.communes), n)
        if first == 0:  # a showcase in the first chunk, so that even a tiny delivery has every case
            head = min(n, 9)
            twin_start[:head] = False
            fictitious[:head] = False
            if n >= 3:
                twin_start[1] = True  # persons 1 and 2 are twins
            if n >= 4:
                n_ids[3] = 3  # person 3 has three identities
            if n >= 5:
                fictitious[4] = True
            if n >= 6:
                unknown_birth[5] = True
            for j in (6, 7):
                if j < n:
                    death[j] = max(int(lo[j]), min(c.end, int(lo[j]) + 200))
                    hi[j] = death[j]
        twin_of = np.full(n, -1)
        j = 0
        while j < n - 1:
            if twin_start[j] and not fictitious[j] and not fictitious[j + 1]:
                twin_of[j + 1] = j
                sex[j + 1], birth[j + 1], age[j + 1] = sex[j], birth[j], age[j]
                age_at_start[j + 1], unknown_birth[j + 1] = age_at_start[j], unknown_birth[j]
                lo[j + 1] = lo[j]
                if death[j + 1] < 0:
                    hi[j + 1] = c.end
                else:  # drawn from the twin's own birth: not before the shared one
                    death[j + 1] = max(int(death[j + 1]), int(lo[j]))
                    hi[j + 1] = death[j + 1]
                j += 2
            else:
                j += 1

        ids: dict[str, list] = {k: [] for k in (
            "BEN_NIR_PSA", "BEN_RNG_GEM", "BEN_NIR_ANO", "BEN_IDT_ANO", "BEN_IDT_TOP", "ASS_NIR_ANO", "BEN_IDT_MAJ",
            "BEN_CDI_NIR", "BEN_NAI_ANN", "BEN_NAI_MOI", "BEN_SEX_COD", "BEN_DCD_DTE", "BEN_DCD_AME", "ORG_AFF_BEN",
            "BEN_RES_DPT", "BEN_RES_COM", "BEN_TOP_CNS", "MAX_TRT_DTD", "ORG_CLE_NEW", "BEN_DTE_INS", "BEN_DTE_MAJ",
            "_P", "_G", "_W", "_LO", "_HI", "_AGE", "_BIRTH")}
        identities_of: list[list[int]] = [[] for _ in range(n)]
        shared: dict[int, list[str]] = {}  # first twin -> the pseudo-NIRs the pair shares
        insertion = rng.integers(0, 1 << 30, 4 * n).tolist()
        person_ido: list[str] = [""] * n
        person_top: list[bool] = [bool(t) for t in top]
        for j in range(n):
            g = first + j
            birth_j, lo_j, hi_j = int(birth[j]), int(lo[j]), int(hi[j])
            if fictitious[j]:
                person_top[j] = False
            adult = age_at_start[j] >= 18
            plan: list[tuple[str, int, str, float]] = []  # (pseudo-NIR, rank, BEN_CDI_NIR, weight)
            if twin_of[j] >= 0:
                for k, psa in enumerate(shared.get(int(twin_of[j]), [])):
                    plan.append((psa, 2, "00", 1.0 if k == 0 else 0.25))
            elif fictitious[j]:
                held = C.fictitious_codes_for(c.codes_cdi_fictitious, int(sex[j]), int(age_at_start[j]))
                code = held[g % len(held)]
                plan.append((self._new_psa(), 1, code, 0.3))
            else:
                count = int(n_ids[j]) if not twin_start[j] else (2 if rng.random() < 0.3 else 1)
                for k in range(count):
                    code = "00" if k == 0 else (c.codes_cdi_provisional[g % len(c.codes_cdi_provisional)]
                                               if k == 2 else "00")
                    plan.append((self._new_psa(), 1, code, 1.0 if k == 0 else 0.25))
                if twin_start[j] and j + 1 < n and twin_of[j + 1] == j:
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
            inserted = max(birth_j, c.start - 4000 + insertion[4 * j] % 3000)
            inserted = min(inserted, c.end)
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
                    "MAX_TRT_DTD": hi_j if lo_j <= hi_j else updated, "ORG_CLE_NEW": c.organisms[int(org[j])],
                    "BEN_DTE_INS": inserted, "BEN_DTE_MAJ": updated,
                    "_P": j, "_G": g, "_W": weight, "_LO": lo_j, "_HI": hi_j, "_AGE": int(age_at_start[j]),
                    "_BIRTH": birth_j,
                }
                for name, value in row.items():
                    ids[name].append(value)
                identities_of[j].append(len(ids["_P"]) - 1)
        mother, birth_of = self._mothers(birth, sex, death, unknown_birth, twin_of, first, rng)
        # A newborn is on its mother's card one time in two: its first identity's insured (ASS_NIR_ANO) is then her
        # lifelong NIR; newborn twins, who share a pseudo-NIR, share their insured.
        on_card = (rng.random(n) < 0.5).tolist()
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
                 twin_of: np.ndarray, first: int, rng: np.random.Generator) -> tuple[list[int], list[int]]:
        """Each person born in the care period gets a mother in the chunk when one fits (a woman of 15 to 49 alive
        at the birth, one birth each, twins sharing theirs), so that the PMSI pairs the child's birth stay with her
        delivery stay. Also returns, per person, the number of the birth's first child, which keys that pair."""
        n = len(birth)
        mother = [-1] * n
        birth_of = [first + j for j in range(n)]
        women = np.flatnonzero((sex == 2) & ~unknown_birth)
        free = np.ones(len(women), dtype=bool)
        for j in np.flatnonzero(birth >= self.c.start).tolist():
            if twin_of[j] >= 0:
                mother[j], birth_of[j] = mother[int(twin_of[j])], birth_of[int(twin_of[j])]
                continue
            age = birth[j] - birth[women]
            fit = free & (age >= 15 * 365.25) & (age < 50 * 365.25) & ((death[women] < 0) | (death[women] >= birth[j]))
            candidates = np.flatnonzero(fit)
            if len(candidates):
                k = int(candidates[int(rng.integers(0, len(candidates)))])
                mother[j] = int(women[k])
                free[k] = False
        return mother, birth_of

    def _new_psa(self) -> str:
        self.identity_counter += 1
        return self.nir_psa(self.identity_counter)
