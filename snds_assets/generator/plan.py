"""Which tables to generate, in which order, and how each one hangs from the rows it depends on.

Every table is generated as children of an *anchor*: an entity (identities, persons, dead persons, the
hospital stays of a PMSI field) or another table (ER_PRS_F lines, an SSR B row, a referential). The anchor is
read from the domain model (DCIR nine keys, PMSI stay keys) and from the schemas' foreign keys, so that any
catalog, the packaged one or the 188 tables of schema-snds, gets rows whose keys join. Tables with no anchor
are standalone (referentials, aggregates): generated once, and drawn from by the foreign keys pointing to them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from .. import domain
from ..catalog import Catalog, ForeignKey, Table
from .people import PERSON_ATTRS

IDENTITIES, PERSONS, DECEASED, STAYS = "@identities", "@persons", "@deceased", "@stays:"
ENTITIES = (IDENTITIES, PERSONS, DECEASED)
CHUNK, ONCE = "chunk", "once"
# kinds
IDENTITY, ARCHIVED, DCIR, DCIR_CHILD, STAY_LINK, STAY_CHILD, DEATHS, ALD, CHILD, ESTABLISHMENTS, STANDALONE = (
    "identity", "archived", "dcir", "dcir_child", "stay_link", "stay_child", "deaths", "ald", "child",
    "establishments", "standalone")
ENTITY_COLUMNS = frozenset(PERSON_ATTRS) | {
    "BEN_IDT_MAJ", "BEN_TOP_CNS", "MAX_TRT_DTD", "ORG_CLE_NEW", "BEN_DTE_INS", "BEN_DTE_MAJ"}
PATIENT_COLUMNS = frozenset({domain.PERSON_COLUMN, domain.RANK_COLUMN, domain.NIR_ANO_COLUMN,
                             *domain.PSEUDO_NIR_COLUMNS})
# Rows per anchor row of tables whose volume the domain suggests (others use the defaults of their kind); a "person"
# range is drawn by the person's number (its last item the keyed stream), so that every delivery gives the same.
COUNTS: dict[str, tuple] = {
    "T_MCOaaD": ("attr", "NBR_DGN"), "T_MCOaaA": ("attr", "NBR_ACT"), "T_MCOaaUM": ("attr", "NBR_RUM"),
    "KI_CCI_R": ("one",), "KI_ECD_R": ("person", 1, 3, 48), "NS_PRS_F": ("rate", 4.0, 15),
}


@dataclass
class TablePlan:
    family: str
    table: Table
    kind: str
    anchor: str | None = None
    fk_copy: dict[str, str] = field(default_factory=dict)  # column -> anchor column, always copied
    copy_shared: bool = False  # also copy the columns the anchor block has under the same name
    count: tuple = ("one",)
    extra_pk: tuple[str, ...] = ()  # numbered within the anchor row
    sequences: tuple[str, ...] = ()  # given values unique over the delivery
    pools: tuple[ForeignKey, ...] = ()  # foreign keys to tables generated once: values drawn from their rows
    yearly: bool = False
    write_years: set = field(default_factory=set)  # years (None for a non-yearly table) that are delivered
    phase: str = CHUNK
    referenced: bool = False  # other generated tables point to it


@dataclass
class Plan:
    tables: dict[str, TablePlan]  # in generation order
    stay_fields: tuple[domain.PmsiField, ...]

    def phase(self, phase: str) -> list[TablePlan]:
        return [t for t in self.tables.values() if t.phase == phase]


def _stay_anchor(field_: domain.PmsiField) -> str:
    return STAYS + field_.name


def classify(catalog: Catalog, family: str, memo: dict | None = None) -> tuple[str, str | None, dict, bool]:
    """(kind, anchor, columns copied from the anchor, copy shared columns) of one family."""
    memo = {} if memo is None else memo
    if family in memo:
        return memo[family]
    memo[family] = (STANDALONE, None, {}, False)  # guards cycles of foreign keys
    t = catalog[family]
    cols = set(t.columns)
    result = None
    link = domain.parent_link(t)
    field_ = domain.pmsi_field(t) if t.is_yearly else None
    if family == "IR_BEN_R" and "BEN_NIR_PSA" in cols:
        result = (IDENTITY, IDENTITIES, {}, True)
    elif domain.ARCHIVES.get(family) == "IR_BEN_R" and "BEN_NIR_PSA" in cols:
        result = (ARCHIVED, PERSONS, {}, True)
    elif family == domain.DCIR_CENTRAL and {"BEN_NIR_PSA", "BEN_RNG_GEM"} <= cols:
        result = (DCIR, IDENTITIES, {}, False)
    elif link is not None and link.parent == domain.DCIR_CENTRAL:
        result = (DCIR_CHILD, domain.DCIR_CENTRAL, {k: k for k in domain.DCIR_KEYS if k in cols}, False)
    elif field_ is not None:
        stay = _stay_anchor(field_)
        if family == field_.link_table:
            result = (STAY_LINK, stay, {k: k for k in field_.stay_key}, True)
        else:
            best = None
            for fk in t.foreign_keys:
                parent = catalog.tables.get(fk.resource)
                if (parent is None or fk.resource == family or not set(fk.fields) <= cols
                        or domain.pmsi_field(parent) != field_ or not set(fk.fields) > set(field_.stay_key)):
                    continue
                if best is None or len(fk.fields) > len(best.fields):
                    best = fk
            if best is not None:
                result = (STAY_CHILD, best.resource, dict(zip(best.fields, best.reference_fields)), True)
            else:
                result = (STAY_CHILD, stay, {k: k for k in field_.stay_key}, True)
    elif family in ("KI_CCI_R", "KI_ECD_R") and domain.PERSON_COLUMN in cols:
        result = (DEATHS, DECEASED, {}, True)
    elif family == "IR_IMB_R" and "BEN_NIR_PSA" in cols:
        result = (ALD, IDENTITIES, {}, True)
    if result is None:
        best_key = None
        for fk in t.foreign_keys:
            if fk.resource == family or fk.resource not in catalog or not set(fk.fields) <= cols:
                continue
            if fk.resource == "IR_BEN_R":
                anchor = IDENTITIES if "BEN_NIR_PSA" in fk.reference_fields else PERSONS
                candidate = (1, len(fk.fields), anchor, {})
            elif fk.resource == "IR_IBA_R":
                candidate = (1, len(fk.fields), PERSONS, {})
            else:
                parent_kind = classify(catalog, fk.resource, memo)[0]
                priority = 0 if parent_kind in (STANDALONE, ESTABLISHMENTS) else 2
                candidate = (priority, len(fk.fields), fk.resource, dict(zip(fk.fields, fk.reference_fields)))
            if best_key is None or candidate[:2] > best_key[:2]:
                best_key = candidate
        if best_key is not None:
            anchor = best_key[2]
            copy = dict(best_key[3])
            if anchor in catalog.tables:  # the patient of a child row is its parent row's patient
                shared = set(catalog[anchor].columns) & cols & PATIENT_COLUMNS
                copy.update({c: c for c in sorted(shared) if c not in copy})
            if anchor == IDENTITIES and "NIR_ANO_17" in cols and "BEN_NIR_PSA" not in cols:
                copy["NIR_ANO_17"] = "BEN_NIR_PSA"
            result = (CHILD, anchor, copy, anchor in ENTITIES)
    if result is None:
        ids = domain.identifier_columns(t)
        if "BEN_NIR_PSA" in ids or "NIR_ANO_17" in ids:
            copy = {"NIR_ANO_17": "BEN_NIR_PSA"} if "NIR_ANO_17" in cols and "BEN_NIR_PSA" not in cols else {}
            result = (CHILD, IDENTITIES, copy, True)
        elif domain.PERSON_COLUMN in ids:
            result = (CHILD, PERSONS, {}, True)
        elif len(t.primary_key) == 1 and t.primary_key[0].startswith("ETA_NUM"):
            result = (ESTABLISHMENTS, None, {}, False)
        else:
            result = (STANDALONE, None, {}, False)
    memo[family] = result
    return result


def build_plan(catalog: Catalog, selection: dict[str, set],
               stay_columns: Callable[[domain.PmsiField], Iterable[str]]) -> Plan:
    """The generation plan of the selected families (family -> delivered years) and everything they need.

    ``stay_columns(field)`` lists the columns the stay generator fills for a PMSI field (copied by its tables).
    """
    memo: dict = {}
    kinds = {f: classify(catalog, f, memo) for f in catalog.tables}
    needed: set[str] = set()
    todo = list(selection)
    while todo:
        family = todo.pop()
        if family in needed:
            continue
        needed.add(family)
        kind, anchor, _, _ = kinds[family]
        if anchor in catalog.tables:
            todo.append(anchor)
        for fk in catalog[family].foreign_keys:
            if fk.resource in catalog.tables and fk.resource != family and kinds[fk.resource][0] in (
                    STANDALONE, ESTABLISHMENTS):
                todo.append(fk.resource)

    def phase_of(family: str, seen: tuple[str, ...] = ()) -> str:
        anchor = kinds[family][1]
        if anchor is None:
            return ONCE
        if anchor in catalog.tables and anchor not in seen:
            return phase_of(anchor, seen + (family,))
        return CHUNK

    referenced: dict[str, set[str]] = {}
    referenced_on: dict[str, list[set[str]]] = {}
    for family in needed:
        for fk in catalog[family].foreign_keys:
            if fk.resource in needed and fk.resource != family:
                referenced.setdefault(fk.resource, set()).update(fk.reference_fields)
                referenced_on.setdefault(fk.resource, []).append(set(fk.reference_fields))

    plans: dict[str, TablePlan] = {}
    for family in needed:
        t = catalog[family]
        kind, anchor, fk_copy, copy_shared = kinds[family]
        cols = set(t.columns)
        covered = set(fk_copy)
        if copy_shared and anchor in ENTITIES:
            covered |= ENTITY_COLUMNS & cols
        elif copy_shared and anchor and anchor.startswith(STAYS):
            field_ = next(f for f in domain.PMSI_FIELDS if _stay_anchor(f) == anchor)
            covered |= set(stay_columns(field_)) & cols
        natural = set(covered)
        if kind == DCIR:
            natural |= set(domain.DCIR_KEYS) | {"BEN_NIR_PSA", "BEN_RNG_GEM"}
        if kind == ESTABLISHMENTS:
            natural |= set(t.primary_key)
        pk = set(t.primary_key)
        extra_pk: tuple[str, ...] = ()
        sequences: list[str] = []
        if kind in (ARCHIVED, DCIR, DCIR_CHILD, ALD):
            count = ("special",)
        elif family in COUNTS:
            count = COUNTS[family]
        elif pk and pk <= natural:
            count = ("one",)
        elif pk and pk & natural and anchor is not None:
            extra_pk = tuple(c for c in t.primary_key if c not in natural)
            count = ("range", 1, 3)
        else:
            if pk and not pk & natural:
                sequences.append(_sequence_column(t, [c for c in t.primary_key]))
            if any(ref <= covered for ref in referenced_on.get(family, [])) and not pk:
                count = ("one",)
            elif anchor is None:
                count = ("size",)
            elif anchor.startswith(STAYS) or kind == STAY_CHILD:
                count = ("rate", 0.5, 3)
            elif anchor == IDENTITIES:
                count = ("rate", 0.15, 2)
            elif anchor in (PERSONS, DECEASED):
                count = ("rate", 0.2, 2)
            elif kinds[anchor][0] in (STANDALONE, ESTABLISHMENTS):
                count = ("rate", 1.5, 4)
            else:
                count = ("rate", 0.5, 3)
        for f in t.fields:
            if f.constraints.get("unique") and not domain.ignores_unique(t, f) and f.name not in natural:
                sequences.append(f.name)
        for c in sorted(referenced.get(family, ())):
            if c in cols and c not in natural and c not in extra_pk:
                sequences.append(c)
        pools = []
        for fk in t.foreign_keys:
            if (fk.resource in needed and fk.resource != family and set(fk.fields) <= cols
                    and phase_of(fk.resource) == ONCE and not set(fk.fields) <= set(fk_copy)):
                pools.append(fk)
        plans[family] = TablePlan(
            family=family, table=t, kind=kind, anchor=anchor, fk_copy=fk_copy, copy_shared=copy_shared, count=count,
            extra_pk=extra_pk, sequences=tuple(dict.fromkeys(s for s in sequences if s not in fk_copy)),
            pools=tuple(pools), yearly=t.is_yearly, write_years=set(selection.get(family, set())),
            phase=phase_of(family), referenced=family in referenced,
        )

    ordered: dict[str, TablePlan] = {}

    def visit(family: str, stack: tuple[str, ...] = ()) -> None:
        if family in ordered or family in stack:
            return
        anchor = plans[family].anchor
        if anchor in plans:
            visit(anchor, stack + (family,))
        for fk in plans[family].pools:
            visit(fk.resource, stack + (family,))
        ordered[family] = plans[family]

    for family in sorted(plans):
        visit(family)
    fields_ = tuple(f for f in domain.PMSI_FIELDS
                    if any(p.anchor == _stay_anchor(f) for p in ordered.values()))
    return Plan(ordered, fields_)


def _sequence_column(table: Table, candidates: list[str]) -> str:
    """The key column best able to number every row: not an establishment number, the most digits."""

    def capacity(name: str) -> tuple:
        f = table.by_name[name]
        try:
            digits = int(str(f.length).split(",")[0]) if f.length else 12
        except ValueError:
            digits = 12
        return (not name.startswith("ETA_NUM"), f.type not in ("date", "datetime", "boolean", "year"), digits)

    return max(candidates, key=capacity)
