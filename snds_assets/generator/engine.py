"""Runs a generation plan: referentials once, then every patient-bearing table chunk of patients by chunk."""
from __future__ import annotations

import re
import zlib
from datetime import date
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import domain
from ..catalog import Catalog
from . import codes as C
from . import archive, dcir, health, pmsi  # noqa: F401  (they register the semantics of the modelled tables)
from .model import Block, take
from .options import GenerateError, GenerateOptions
from .people import PeopleConfig, PeopleGenerator, Pseudonyms, keyed
from .plan import CHUNK, ENTITIES, ESTABLISHMENTS, ONCE, STAYS, Plan, TablePlan, build_plan
from .registry import ENRICHERS, SPECIAL
from .values import FieldSpec, Nomenclatures, Window, field_spec, sample, valid_text
from .writer import TableWriter, render

CHUNK_PERSONS = 2000  # fixed: the same options always cut the same chunks, hence the same bytes
Progress = Callable[[str, int, int], None]


def stable(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def other_pseudonyms(maker: Pseudonyms, numbers: list[int], width: int) -> list[str]:
    """Pseudonyms of ``width`` characters (17 as a pseudo-NIR's, hexadecimal otherwise), unique from 16 on."""
    if width == 17:
        return [maker(n) for n in numbers]
    repeat = -(-width // 32)
    return [(maker.long(n) * repeat)[:width] for n in numbers]


class Engine:
    def __init__(self, opts: GenerateOptions, catalog: Catalog, selection: dict[str, set], root: Path):
        self.opts = opts
        self.catalog = catalog
        self.root = root
        self.seed = int(opts.seed)
        self.patients = int(opts.patients)
        start, end = opts.care_window()
        self.start, self.end = start.toordinal(), end.toordinal()
        self.last_flow = opts.delivery_date().replace(day=1).toordinal()
        self.years = list(range(start.year, end.year + 1))
        self.window = Window(max(date(1900, 1, 1).toordinal(), self.start - 5 * 365), self.end)
        self.noms = Nomenclatures(opts.nomenclatures)
        self.plan: Plan = build_plan(catalog, selection, pmsi.stay_columns)
        self.specs: dict[str, dict[str, FieldSpec]] = {
            f: {fl.name: field_spec(tp.table, fl, self.noms, opts.date_format) for fl in tp.table.fields}
            for f, tp in self.plan.tables.items()}
        self.counters: dict[tuple, int] = {}
        self.once_blocks: dict[tuple[str, int | None], Block] = {}
        pool_rng = self.rng("pools")
        self.establishments = self._establishments(pool_rng)
        self.pseudonyms = [Pseudonyms(self.seed, 9)(i) for i in range(200)]
        self.hints = {f: {c: self._hint(c) for c in tp.table.columns} for f, tp in self.plan.tables.items()}
        self.key_min_len = self._key_min_len()
        self.people = PeopleGenerator(PeopleConfig(
            seed=self.seed, start=self.start, end=self.end,
            codes_cdi_fictitious=self.codes_for("BEN_CDI_NIR", sorted(domain.FICTITIOUS_NIR_CODES)) or ("00",),
            codes_cdi_provisional=self.codes_for("BEN_CDI_NIR", ["03", "04"]) or ("00",),
            organisms=self._organisms(pool_rng),
            departments=self.codes_for("BEN_RES_DPT", list(C.PLAUSIBLE_DEPARTMENTS), sample_from_codes=25)
            or C.PLAUSIBLE_DEPARTMENTS,
            communes=self.codes_for("BEN_RES_COM", [f"{n:03d}" for n in range(1, 300)], sample_from_codes=60)
            or tuple(f"{n:03d}" for n in range(1, 300)),
        ))
        self.writers: dict[tuple[str, int | None], TableWriter] = {}
        self.open_writers()
        self.first_chunk = True
        self.injector = None  # set by generate() when defects are requested

    # --- randomness -------------------------------------------------------------------------------------
    def rng(self, *parts) -> np.random.Generator:
        """An independent stream per purpose, so that a table's rows do not depend on the other tables."""
        return np.random.default_rng([self.seed] + [p if isinstance(p, int) and p >= 0 else stable(str(p))
                                                    for p in parts])

    # --- pools and code lists ---------------------------------------------------------------------------
    def any_spec(self, column: str, family: str | None = None) -> FieldSpec | None:
        if family and family in self.specs and column in self.specs[family]:
            return self.specs[family][column]
        for specs in self.specs.values():
            if column in specs:
                return specs[column]
        return None

    def codes_for(self, column: str, preferred: list[str], family: str | None = None,
               sample_from_codes: int = 0) -> tuple[str, ...]:
        """The preferred values that are valid for the column (and in its nomenclature, when known)."""
        spec = self.any_spec(column, family)
        if spec is None:
            return tuple(preferred)
        good = tuple(v for v in preferred if valid_text(spec, v))
        if not good and spec.codes and sample_from_codes:
            rng = self.rng("codes", column)
            picked = rng.choice(len(spec.codes), min(sample_from_codes, len(spec.codes)), replace=False)
            good = tuple(spec.codes[i] for i in sorted(picked.tolist()))
        return good

    def weighted_codes(self, column: str, pairs: Sequence[tuple[str, float]],
                       family: str | None = None) -> tuple[list[str], np.ndarray]:
        codes, weights = C.weighted(pairs)
        spec = self.any_spec(column, family)
        keep = [i for i, code in enumerate(codes) if spec is None or valid_text(spec, code)]
        if not keep and spec is not None:
            fallback = list(spec.codes or sample(spec, self.rng("fallback", column), 20, self.window))
            return [str(v) for v in fallback], np.full(len(fallback), 1 / len(fallback))
        w = np.array([weights[i] for i in keep])
        return [codes[i] for i in keep], w / w.sum()

    def shared_choices(self, columns: Sequence[str], preferred: list[str]) -> list[str]:
        """Values valid for the columns in every generated table (a key copied from table to table)."""
        specs = [s[c] for s in self.specs.values() for c in columns if c in s]
        good = [v for v in preferred if all(valid_text(sp, v) for sp in specs)]
        if good:
            return good
        for sp in specs:
            if sp.codes:
                good = [v for v in sp.codes if all(valid_text(o, v) for o in specs)]
                if good:
                    rng = self.rng("choices", *columns)
                    picked = rng.choice(len(good), min(40, len(good)), replace=False)
                    return [good[i] for i in sorted(picked.tolist())]
        return list(preferred)

    def _organisms(self, rng) -> tuple[str, ...]:
        synthetic = [f"01C{int(d):03d}{n:03d}" for d in (75, 13, 69, 59, 33, 31, 44, 67) for n in (1, 2, 3)]
        return tuple(self.shared_choices(("ORG_AFF_BEN", "ORG_CLE_NUM", "ORG_CLE_NEW"), synthetic))

    def _establishments(self, rng) -> list[str]:
        n = min(12 + self.patients // 2000, 900)
        numbers = set()
        while len(numbers) < n:
            numbers.add(int(rng.integers(10, 96)) * 10_000_000 + int(rng.integers(0, 10_000_000)))
        return [str(v) for v in sorted(numbers)]

    def _hint(self, column: str) -> list[str] | None:
        if domain.is_return_code(column) or column.endswith("_RET"):  # ETA_NUM_RET too, before FINESS numbers
            return ["0"] * 19 + ["1"]
        if column.startswith("ETA_NUM") or column.endswith("_FIN") or column == "IDE_ETA_NU8":
            return self.establishments + [e[:8] for e in self.establishments]
        if column in domain.PATIENT_PSEUDONYMS or column in domain.PSEUDO_NIR_COLUMNS:
            return self.pseudonyms
        if column == "BEN_NAI_ANN":  # born by 2019 as before, and not after the care period
            return [str(y) for y in range(1930, min(2020, self.window.last_year + 1))]
        return C.name_hint(column)

    def _key_min_len(self) -> dict[tuple[str, str], int]:
        """Key columns referenced under other specs (PFS 9 characters pointing to an 8-character key...)."""
        out: dict[tuple[str, str], int] = {}
        for family, tp in self.plan.tables.items():
            for fk in tp.table.foreign_keys:
                if fk.resource not in self.specs:
                    continue
                for f, r in zip(fk.fields, fk.reference_fields):
                    spec = self.specs[family].get(f)
                    if spec is not None and spec.kind == "string":
                        key = (fk.resource, r)
                        out[key] = max(out.get(key, 1), spec.min_len)
        return out

    # --- key values ---------------------------------------------------------------------------------------
    def key_values(self, family: str, column: str, numbers: np.ndarray) -> list:
        """Distinct numbers (>= 1) as valid values of a key column."""
        spec = self.specs[family][column]
        numbers = np.asarray(numbers, dtype=np.int64)
        if spec.kind in ("integer", "number"):
            base = int(spec.lo or 0)
            values = numbers + (base - 1 if base > 0 else 0)
            if spec.hi is not None and len(values) and values.max() > spec.hi:
                raise GenerateError(f"{family}.{column} cannot number {values.max()} rows within its type")
            return values.tolist()
        if spec.kind == "string":
            width = max(spec.min_len, self.key_min_len.get((family, column), 1), min(spec.max_len, 12))
            base = int(spec.lo) - 1 if spec.lo else 0  # a string key may carry numeric bounds
            texts = [str(v + base).zfill(width) for v in numbers.tolist()]
            if texts and len(texts[-1]) > max(spec.max_len, width):
                raise GenerateError(f"{family}.{column} cannot number {numbers.max()} rows within its length")
            return texts
        if spec.kind in ("date", "datetime"):
            return (self.window.first + numbers % (self.window.last - self.window.first + 1)).tolist()
        return [str(v) for v in numbers.tolist()]

    def next_numbers(self, key: tuple, n: int) -> np.ndarray:
        first = self.counters.get(key, 0)
        self.counters[key] = first + n
        return np.arange(first + 1, first + n + 1, dtype=np.int64)

    # --- blocks -----------------------------------------------------------------------------------------------
    def anchor_block(self, tp: TablePlan, year: int | None, blocks: dict) -> Block | None:
        anchor = tp.anchor
        if anchor is None:
            return None
        if anchor in ENTITIES:
            return blocks[(anchor, None)]
        if anchor.startswith(STAYS):
            return blocks.get((anchor, year))
        parent_year = year if self.catalog[anchor].is_yearly else None
        if self.catalog[anchor].is_yearly and year is None:
            parent_year = self.years[0]
        store = blocks if self.plan.tables[anchor].phase == CHUNK else self.once_blocks
        return store.get((anchor, parent_year))

    def counts(self, tp: TablePlan, anchor: Block, rng: np.random.Generator, year: int | None) -> np.ndarray:
        n = anchor.n
        rule = tp.count
        if rule[0] == "one":
            counts = np.ones(n, dtype=np.int64)
        elif rule[0] == "person" and "_G" in anchor.cols:  # a person's, the same in every delivery
            numbers = np.asarray(anchor.cols["_G"], dtype=np.int64)
            counts = rule[1] + (keyed(self.seed, rule[3], numbers) * (rule[2] - rule[1] + 1)).astype(np.int64)
        elif rule[0] in ("range", "person"):
            counts = rng.integers(rule[1], rule[2] + 1, n)
        elif rule[0] == "rate":
            counts = np.minimum(rng.poisson(rule[1], n), rule[2])
        elif rule[0] == "attr":
            counts = np.asarray(anchor.cols.get(rule[1], [0] * n), dtype=np.int64)
        else:
            raise AssertionError(rule)
        if year is not None and "_LO" in anchor.cols and not (tp.anchor or "").startswith(STAYS):
            lo, hi = np.asarray(anchor.cols["_LO"]), np.asarray(anchor.cols["_HI"])
            alive = (lo <= date(year, 12, 31).toordinal()) & (hi >= date(year, 1, 1).toordinal()) & (lo <= hi)
            counts = counts * alive
        if self.first_chunk and n and counts.sum() == 0:
            counts[0] = 1  # every table gets rows, even in a tiny delivery
        return counts

    def children(self, tp: TablePlan, anchor: Block, counts: np.ndarray) -> Block:
        counts = np.asarray(counts, dtype=np.int64)
        idx = np.repeat(np.arange(anchor.n, dtype=np.int64), counts)
        block = Block(len(idx), parent=idx)
        specs = self.specs[tp.family]
        for column, source in tp.fk_copy.items():
            if source in anchor.cols:
                block.set(column, take(anchor.cols[source], idx), source in anchor.dates)
        if tp.copy_shared:
            for column in tp.table.columns:
                if column in block.cols or column not in anchor.cols:
                    continue
                is_date = column in anchor.dates
                if specs[column].is_date == is_date:
                    block.set(column, take(anchor.cols[column], idx), is_date)
        if tp.extra_pk and len(idx):
            starts = np.repeat(np.cumsum(counts) - counts, counts)
            within = np.arange(len(idx), dtype=np.int64) - starts + 1
            block.set(tp.extra_pk[0], self.key_values(tp.family, tp.extra_pk[0], within))
        return block

    def standalone(self, tp: TablePlan, year: int | None) -> Block:
        if tp.kind == ESTABLISHMENTS:
            block = Block(len(self.establishments))
            block.set(tp.table.primary_key[0], list(self.establishments))
            return block
        if tp.referenced:
            n = min(10 + self.patients // 100, 20000)
        else:
            n = min(5 + self.patients // 20, 2000)
        return Block(n)

    def make(self, tp: TablePlan, year: int | None, blocks: dict, rng: np.random.Generator) -> Block:
        anchor = self.anchor_block(tp, year, blocks)
        if tp.kind in SPECIAL:
            block = SPECIAL[tp.kind](self, tp, anchor, rng, year)
        elif tp.anchor is None:
            block = self.standalone(tp, year)
        elif anchor is None:
            block = Block(0)
        else:
            block = self.children(tp, anchor, self.counts(tp, anchor, rng, year))
        if "_G" not in block.cols and anchor is not None and "_G" in anchor.cols and block.parent is not None:
            block.set("_G", take(anchor.cols["_G"], block.parent))  # the person of each row, for its pseudonyms
        for pattern, enrich in ENRICHERS:
            if re.fullmatch(pattern, tp.family):
                enrich(self, tp, block, anchor, rng, year)
        self.fill_other_pseudonyms(tp, block)
        self.fill_pools(tp, block, year, rng)
        self.fill_sequences(tp, block)
        for column in list(block.cols):
            if not column.startswith("_") and column not in tp.table.by_name:
                del block.cols[column]
        self.enforce(tp, block, rng)
        return block

    def fill_pools(self, tp: TablePlan, block: Block, year: int | None, rng: np.random.Generator) -> None:
        for fk in tp.pools:
            parent_yearly = self.catalog[fk.resource].is_yearly
            parent_year = (year if year is not None else self.years[0]) if parent_yearly else None
            parent = self.once_blocks.get((fk.resource, parent_year))
            if parent is None or parent.n == 0 or not block.n:
                continue
            if any(f in block.cols for f in fk.fields):
                continue
            rows = rng.integers(0, parent.n, block.n)
            for f, r in zip(fk.fields, fk.reference_fields):
                if r in parent.cols:
                    block.set(f, take(parent.cols[r], rows), r in parent.dates)

    def fill_other_pseudonyms(self, tp: TablePlan, block: Block) -> None:
        """A patient's other pseudonyms that no enricher sets (BEN_RAT_ANO, ID_CARTO...): one per person and column
        where the row's person is known, else one per row, so that unrelated patients never share one. A column its
        schema declares unique keeps its sequence, and one a foreign key names takes its parent's value."""
        linked = set(tp.sequences) | {c for fk in tp.table.foreign_keys for c in fk.fields}
        for column in tp.table.columns:
            spec = self.specs[tp.family][column]
            if column not in domain.OTHER_PATIENT_PSEUDONYMS or column in block.cols or column in linked \
                    or not block.n or spec.kind != "string":
                continue
            if "_G" in block.cols:
                numbers = block.cols["_G"]
            else:  # beyond the persons' numbers, which a column may also be keyed by in another table
                numbers = (self.next_numbers(("pseudonym", column), block.n) + (1 << 40)).tolist()
            values = other_pseudonyms(Pseudonyms(self.seed, 64 + stable(column)), numbers, spec.max_len)
            if valid_text(spec, values[0]):
                block.set(column, values)

    def fill_sequences(self, tp: TablePlan, block: Block) -> None:
        for column in tp.sequences:
            if column not in block.cols and block.n:
                numbers = self.next_numbers((tp.family, column), block.n)
                spec = self.specs[tp.family][column]
                block.set(column, self.key_values(tp.family, column, numbers), spec.is_date)

    def enforce(self, tp: TablePlan, block: Block, rng: np.random.Generator) -> None:
        """Values the generator copied or chose that this catalog does not accept are redrawn (never keys)."""
        specs = self.specs[tp.family]
        keys = self.protected(tp)
        for column in list(block.cols):
            spec = specs.get(column)
            if spec is None or column in block.dates or column in keys:
                continue
            values = block.cols[column]
            signed = domain.is_signed_quantity(tp.table, column)  # a regularisation's is negative
            bad = {v for v in set(values) if v != "" and not valid_text(spec, str(v))
                   and not (signed and str(v).startswith("-") and valid_text(spec, str(v)[1:]))}
            if bad:
                fresh = sample(spec, rng, block.n, self.window, self.hints[tp.family].get(column))
                block.set(column, [f if v in bad else v for v, f in zip(values, fresh)], spec.is_date)

    def protected(self, tp: TablePlan) -> set[str]:
        """Columns that join tables or identify patients: copied as they are, never redrawn."""
        keys = set(tp.fk_copy) | set(tp.sequences) | set(tp.extra_pk) | set(domain.required_columns(tp.table))
        keys |= {c for fk in tp.table.foreign_keys for c in fk.fields}
        keys |= {c for other in self.plan.tables.values() for fk in other.table.foreign_keys
                 if fk.resource == tp.family for c in fk.reference_fields}
        keys |= set(domain.PATIENT_PSEUDONYMS) | set(domain.PSEUDO_NIR_COLUMNS) | {domain.PERSON_COLUMN,
                                                                                    domain.RANK_COLUMN}
        return keys

    # --- writing ----------------------------------------------------------------------------------------------
    def open_writers(self) -> None:
        o = self.opts
        for family, tp in self.plan.tables.items():
            for year in sorted(tp.write_years, key=lambda y: -1 if y is None else y):
                name = self.catalog.delivered_name(family, year)
                self.writers[(family, year)] = TableWriter(
                    self.root, name, list(tp.table.columns_in(year)), o.delimiter, o.encoding_name, o.gzip,
                    o.rows_per_file)

    def write(self, tp: TablePlan, year: int | None, block: Block, rng: np.random.Generator) -> None:
        writer = self.writers.get((tp.family, year))
        if writer is None or block.n == 0:
            return
        lines = render(writer.header, self.specs[tp.family], block.cols, block.n, rng, self.window,
                       self.hints[tp.family], self.opts.delimiter)
        writer.write(lines)

    def years_of(self, tp: TablePlan) -> list:
        return list(self.years) if tp.yearly else [None]

    # --- the run ----------------------------------------------------------------------------------------------
    def run(self, progress: Progress | None = None) -> None:
        once = self.plan.phase(ONCE)
        for i, tp in enumerate(once):
            for year in self.years_of(tp):
                block = self.make(tp, year, {}, self.rng("once", tp.family, year if year else 0))
                if self.injector:
                    self.injector.inject(tp, year, block)
                self.once_blocks[(tp.family, year)] = block
                self.write(tp, year, block, self.rng("render-once", tp.family, year if year else 0))
            if progress:
                progress("referentials", i + 1, len(once))
        chunk_tables = self.plan.phase(CHUNK)
        total = self.patients
        for number, first in enumerate(range(0, total, CHUNK_PERSONS)):
            n = min(CHUNK_PERSONS, total - first)
            people = self.people.chunk(first, n)
            blocks: dict = {("@identities", None): people.identities, ("@persons", None): people.persons,
                            ("@deceased", None): people.deceased}
            for field_ in self.plan.stay_fields:
                for year in self.years:
                    blocks[(STAYS + field_.name, year)] = pmsi.stays(
                        self, field_, year, people, self.rng("stays", field_.name, year, number))
            for tp in chunk_tables:
                for year in self.years_of(tp):
                    blocks[(tp.family, year)] = self.make(tp, year, blocks, self.rng(tp.family, year or 0, number))
            if self.injector:
                for tp in chunk_tables:
                    for year in self.years_of(tp):
                        self.injector.inject(tp, year, blocks[(tp.family, year)], blocks)
            for tp in chunk_tables:
                for year in self.years_of(tp):
                    self.write(tp, year, blocks[(tp.family, year)], self.rng("render", tp.family, year or 0, number))
            self.first_chunk = False
            if progress:
                progress("patients", first + n, total)

