"""A documented set of delivery defects, and the ground truth that says where each one is.

Each defect is caught by exactly one reception rule (``checks.ALL_RULES``) on exactly one delivered table, and
the ground truth gives the exact failing count that rule must report. Defects are kept independent so that
the counts stay exact: rows that the reception rejects (unparseable values, missing keys) are put where no
other row depends on them (leaf tables, or ER_PRS_F lines without affiliated lines); a duplicated key is
never on a row with another defect; a table with a file-level defect (row count, checksum, unknown column)
carries no other defect.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from .. import checks, domain
from ..reception.manifest import DeliveredFile, DeliveredTable
from .model import Block
from .people import PERSON_ATTRS
from .plan import DCIR_CHILD, TablePlan
from .values import FieldSpec, fits, sample

if TYPE_CHECKING:
    from .engine import Engine

UNKNOWN_COLUMN = "ZZ_COLONNE_INCONNUE"
NOT_A_DATE = "XX/XX/XXXX"
NOT_AN_INTEGER = "AB"
OUT_OF_RANGE = (date(2099, 6, 15).toordinal(), date(1850, 6, 15).toordinal())


@dataclass
class Defect:
    defect: str
    rule: str
    family: str
    year: int | None
    columns: tuple[str, ...]
    wanted: int
    description: str
    rows: list[int] = field(default_factory=list)  # data rows of the delivered table (0-based)
    file_level: bool = False
    value: str | None = None  # the out-of-nomenclature code

    def __post_init__(self):
        assert self.rule in checks.ALL_RULES, self.rule


class DefectInjector:
    """Chooses where the defects go (for the tables of this run) and injects them while blocks are built."""

    def __init__(self, eng: Engine):
        self.eng = eng
        self.rng = eng.rng("defects")
        self.defects: list[Defect] = []
        self.used_rows: dict[tuple[str, int | None], set[int]] = {}
        self.busy: set[tuple[str, int | None]] = set()  # tables that already carry a defect
        self._choose()

    # --- where ------------------------------------------------------------------------------------------
    def _written(self, family: str, year) -> bool:
        return (family, year) in self.eng.writers

    def _leaves(self) -> set[str]:
        """Families nothing else points to (no anchor, no foreign key, no check link of another table)."""
        eng = self.eng
        pointed: set[str] = set()
        for tp in eng.plan.tables.values():
            if tp.anchor:
                pointed.add(tp.anchor)
            pointed.update(fk.resource for fk in tp.pools)
            pointed.update(link.parent for link in domain.check_links(eng.catalog, tp.table))
        return {f for f in eng.plan.tables if f not in pointed}

    def _slots(self, families, leaves_only: bool = False) -> list[tuple[str, int | None]]:
        out = []
        leaves = self._leaves()
        for family in families:
            tp = self.eng.plan.tables.get(family)
            if tp is None or (leaves_only and family not in leaves):
                continue
            for year in sorted(tp.write_years, key=lambda y: -1 if y is None else y):
                out.append((family, year))
        return out

    def _column(self, family: str, predicate, year: int | None = None) -> str | None:
        """A column of ``family`` that files of ``year`` carry, a defect can be put in and ``predicate`` accepts."""
        tp = self.eng.plan.tables[family]
        keys = set(domain.required_columns(tp.table)) | set(tp.sequences) | set(tp.fk_copy) | set(tp.extra_pk)
        ruled = {r.column for r in domain.domain_rules(tp.table)}
        written = set(tp.table.columns_in(year))
        for f in tp.table.fields:
            spec = self.eng.specs[family][f.name]
            if (f.name in keys or f.name in ruled or f.name in PERSON_ATTRS or spec.codes is not None
                    or spec.enum is not None or f.name not in written):
                continue
            if predicate(spec):
                return f.name
        return None

    def _add(self, slot, defect: str, rule: str, columns, wanted: int, description: str, file_level=False):
        self.defects.append(Defect(defect, rule, slot[0], slot[1], tuple(columns), wanted, description,
                                   file_level=file_level))
        self.busy.add(slot)

    def _choose(self) -> None:
        eng = self.eng
        plan = eng.plan.tables
        families = sorted(plan)
        leaves = self._leaves()
        prs = ("ER_PRS_F", None)
        if self._written(*prs):
            self._add(prs, "duplicate_key", "primary_key", domain.DCIR_KEYS, 3,
                      "ER_PRS_F lines repeated with the same nine DCIR keys (rows beyond the first of each key)")
            column = self._column("ER_PRS_F", lambda s: s.kind == "date")
            if column:
                self._add(prs, "unparseable_date", "type", [column], 2,
                          f"'{NOT_A_DATE}' in the date column {column} of lines without affiliated lines")
        pmsi_pk = [f for f in ["T_MCOaaB", "T_SSRaaB", "T_HADaaB", "T_RIPaaFB"] + families
                   if f in plan and plan[f].yearly and plan[f].table.primary_key]
        whole = [s for s in self._slots(pmsi_pk)  # a key whole in that year's files (Field.in_use)
                 if set(plan[s[0]].table.primary_key) <= set(plan[s[0]].table.columns_in(s[1]))]
        for slot in whole[:1]:
            self._add(slot, "duplicate_key", "primary_key", plan[slot[0]].table.primary_key, 2,
                      "PMSI stay rows repeated with the same stay key")
        if self._written(*prs):
            children = [f for f in ["ER_PHA_F"] + families if f in plan and plan[f].kind == DCIR_CHILD]
            for slot in self._slots(children)[:1]:
                self._add(slot, "orphan_affiliated", "foreign_key", domain.dcir_keys(slot[0]), 3,
                          "affiliated lines whose DCIR keys match no ER_PRS_F line (DCT_ORD_NUM changed)")
        preferred = ["IR_IMB_R", "T_MCOaaD", "KI_ECD_R", "ER_BIO_F", "T_MCOaaUM", "ER_CAM_F", "ER_UCD_F",
                     "ER_ETE_F", "T_MCOaaA"]
        order = [f for f in preferred if f in plan] + [f for f in families if f not in preferred]
        self._row_defect(order, leaves, "unparseable_integer", "type", 2,
                         lambda s: s.kind == "integer", "letters '{v}' in the integer column {c}", NOT_AN_INTEGER)
        missing = [f for f in ["T_MCOaaUM", "ER_BIO_F", "ER_CAM_F", "T_MCOaaA", "T_MCOaaD"] if f in plan] + order
        for slot in self._slots(missing, leaves_only=True):
            if slot in self.busy:
                continue
            keys = list(domain.required_columns(plan[slot[0]].table, slot[1]))
            if keys:
                self._add(slot, "missing_key", "not_null", [keys[-1]], 2,
                          f"empty key column {keys[-1]}: rows that cannot be linked")
                break
        self._row_defect(order, leaves, "out_of_range", "range", 2,
                         lambda s: s.kind == "date" and s.name not in domain.OPEN_END_DATES,
                         "dates in 2099 and 1850 in the column {c}", None)
        if eng.noms.folder is not None:
            nomenclature_order = [f for f in ["T_MCOaaB", "IR_BEN_R"] if f in plan] + families
            for slot in self._slots(nomenclature_order):
                if slot in self.busy and slot[0] != "T_MCOaaB":
                    continue
                column, value = self._off_nomenclature(slot[0], slot[1])
                if column:
                    self._add(slot, "out_of_nomenclature", "nomenclature", [column], 2,
                              f"code '{value}' absent from the nomenclature of {column}")
                    self.defects[-1].value = value
                    break
        file_order = [f for f in ["KI_ECD_R", "ER_UCD_F", "ER_ETE_F", "ER_TIP_F", "T_MCOaaD", "ER_ARO_F"]
                      if f in plan] + families
        # each slot once: the preferred families come again among all of them
        free = [s for s in dict.fromkeys(self._slots(file_order, leaves_only=True)) if s not in self.busy]
        for (defect, rule, description), slot in zip([
            ("row_count_mismatch", "row_count", "the manifest announces one row more than the first file holds"),
            ("checksum_mismatch", "checksum", "the manifest sha256 of the first file is wrong"),
            ("unknown_column", "columns", f"the first file has a column {UNKNOWN_COLUMN} the catalog does not know"),
        ], free):
            self._add(slot, defect, rule, [UNKNOWN_COLUMN] if rule == "columns" else [], 1, description, True)
            if rule == "columns":
                eng.writers[slot].extra = (UNKNOWN_COLUMN, "X")

    def _row_defect(self, order, leaves, defect, rule, wanted, predicate, description, value) -> None:
        for slot in self._slots(order, leaves_only=True):
            if slot in self.busy:
                continue
            column = self._column(slot[0], predicate, slot[1])
            if column:
                self._add(slot, defect, rule, [column], wanted, description.format(c=column, v=value))
                return

    def _off_nomenclature(self, family: str, year: int | None = None) -> tuple[str | None, str | None]:
        tp = self.eng.plan.tables[family]
        keys = set(domain.required_columns(tp.table))
        ruled = {r.column for r in domain.domain_rules(tp.table)}
        written = set(tp.table.columns_in(year))
        for f in tp.table.fields:
            spec = self.eng.specs[family][f.name]
            if not spec.codes or f.name in keys or f.name in ruled or spec.enum is not None or f.name not in written:
                continue
            codes = set(spec.codes)
            for candidate in ("ZZ9", "Z99", "Z9", "99999", "9999", "999", "99", "ZZZZZZ"[:spec.max_len], "X"):
                if candidate not in codes and fits(spec, candidate):
                    return f.name, candidate
        return None, None

    # --- how ----------------------------------------------------------------------------------------------
    def _pick(self, slot, candidates: list[int], k: int) -> list[int]:
        used = self.used_rows.setdefault(slot, set())
        pool = [i for i in candidates if i not in used]
        if not pool:
            return []
        chosen = sorted(self.rng.choice(pool, min(k, len(pool)), replace=False).tolist())
        used.update(chosen)
        return chosen

    def _ensure_column(self, tp: TablePlan, block: Block, column: str) -> FieldSpec:
        spec = self.eng.specs[tp.family][column]
        if column not in block.cols:
            values = sample(spec, self.rng, block.n, self.eng.window, self.eng.hints[tp.family].get(column))
            block.set(column, values, spec.is_date)
        return spec

    def inject(self, tp: TablePlan, year: int | None, block: Block, blocks: dict | None = None) -> None:
        slot = (tp.family, year)
        pending = [d for d in self.defects if (d.family, d.year) == slot and not d.file_level
                   and len(d.rows) < d.wanted]
        if not pending or not block.n:
            return
        writer = self.eng.writers[slot]
        offset = writer.rows_total
        candidates = list(range(block.n))
        if tp.family == "ER_PRS_F" and blocks is not None:
            described = set()
            for other in self.eng.plan.tables.values():
                if other.anchor == "ER_PRS_F" and (other.family, None) in blocks:
                    parent = blocks[(other.family, None)].parent
                    if parent is not None:
                        described.update(np.unique(parent).tolist())
            candidates = [i for i in candidates if i not in described]
        for d in pending:
            need = d.wanted - len(d.rows)
            if d.defect in ("duplicate_key", "orphan_affiliated"):
                rows = self._pick(slot, candidates, need)
                if not rows:
                    continue
                copies = block.take(np.asarray(rows))
                if d.defect == "orphan_affiliated":
                    top = 99_999_999
                    if self.eng.counters.get(("ER_PRS_F", "DCT_ORD_NUM"), 0) >= top - 1000:
                        raise AssertionError("DCT_ORD_NUM space exhausted: no room for orphan lines")
                    copies.cols["DCT_ORD_NUM"] = [top - len(d.rows) - i for i in range(copies.n)]
                start = block.n
                block.append_rows(copies)
                d.rows.extend(offset + start + i for i in range(copies.n))
                continue
            rows = self._pick(slot, candidates, need)
            if not rows:
                continue
            column = d.columns[0]
            spec = self._ensure_column(tp, block, column)
            values = list(block.cols[column])
            for k, i in enumerate(rows):
                if d.defect == "unparseable_date":
                    values[i] = NOT_A_DATE
                elif d.defect == "unparseable_integer":
                    values[i] = NOT_AN_INTEGER
                elif d.defect == "missing_key":
                    values[i] = ""
                elif d.defect == "out_of_range":
                    values[i] = OUT_OF_RANGE[(len(d.rows) + k) % 2]
                elif d.defect == "out_of_nomenclature":
                    values[i] = d.value
            block.set(column, values, spec.is_date)
            d.rows.extend(offset + i for i in rows)

    # --- after writing ------------------------------------------------------------------------------------
    def tamper(self, tables: list[DeliveredTable]) -> list[DeliveredTable]:
        """Apply the manifest defects (row count, checksum) to the tables about to be listed."""
        out = []
        for t in tables:
            table, year = self.eng.catalog.resolve(t.table)
            family = table.name
            files = list(t.files)
            for d in self.defects:
                if (d.family, d.year) != (family, year) or not d.file_level:
                    continue
                first = files[0]
                if d.rule == "row_count":
                    files[0] = DeliveredFile(first.path, first.rows + 1, first.sha256, first.bytes)
                elif d.rule == "checksum":
                    wrong = hashlib.sha256(b"tampered:" + first.sha256.encode()).hexdigest()
                    files[0] = DeliveredFile(first.path, first.rows, wrong, first.bytes)
                d.rows = [0]
            out.append(DeliveredTable(t.table, tuple(files), t.mode))
        return out

    def ground_truth(self) -> list[dict]:
        entries = []
        for d in self.defects:
            if not d.rows:
                continue
            writer = self.eng.writers[(d.family, d.year)]
            files = sorted({writer.file_of_row(r) for r in d.rows}) if not d.file_level else [writer.files[0].path]
            entries.append({
                "defect": d.defect,
                "table": self.eng.catalog.delivered_name(d.family, d.year),
                "rule": d.rule,
                "failures": 1 if d.file_level else len(d.rows),
                "file": files[0],
                "files": files,
                "columns": list(d.columns),
                "description": d.description,
            })
        return entries
