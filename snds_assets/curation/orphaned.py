"""The ``orphaned_children`` check: rows of other families' current state whose parent a ``full`` delivery removes.

A ``full`` delivery replaces its family's current state (a PMSI year's table, that year): a parent row it does not
bring again leaves the rows of other families already in the state that point to it (DCIR care lines of earlier
months to an identity of IR_BEN_R, say) without their parent, and no check of those families sees it: they are
not in the delivery. The parent keys that leave the state are those of the state without this delivery that the
state with it lacks, archives included (an identity moved to IR_BEN_R_ARC is not lost): one anti-join of the
parent's key hashes per kind of link, and only when some keys leave are the children's other partitions read, for
those keys. A child row whose parent the state lacked already was reported by its own delivery's ``foreign_key``.

Evaluated once every family of the run is curated (an archive delivered with its family is then curated too).
Severity WARN: the delivery is what CNAM sent; the check tells the hub which rows of its state lost their parent.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from .. import domain
from ..catalog import Catalog
from ..checks import DEFAULT_SEVERITY, ORPHANS_CHECK, CheckOutcome
from ..config import Settings
from ..reception.manifest import Manifest
from ..reception.report import save_fragment
from ..reception.storage import lake_exists
from . import keys
from .state import CurrentState, delivered_parts

CHECK = ORPHANS_CHECK
SAMPLE_SIZE = 5
PENDING = "waits for every family of this run to be curated (a run that stopped before never evaluated it)"


def parent_of(family: str) -> str:
    """The table whose rows ``family`` holds for its children: itself, or the table it archives (IR_BEN_R_ARC)."""
    return domain.ARCHIVES.get(family, family)


def _members(catalog: Catalog, family: str) -> list[str]:
    """The families read together as the parent's rows: the parent and its archives."""
    parent = parent_of(family)
    return [m for m in (parent, *domain.archives_of(parent)) if m in catalog]


def outcome(failures: int, columns: list[str], sample: list, details: str, evaluated: bool = True) -> CheckOutcome:
    return CheckOutcome(CHECK, "foreign_key", DEFAULT_SEVERITY[CHECK], failures == 0, int(failures), list(columns),
                        list(sample)[:SAMPLE_SIZE], evaluated, details)


def first_verdict(state: CurrentState, catalog: Catalog, manifest: Manifest, family: str, mode: str,
                  readable: bool) -> tuple[CheckOutcome, bool]:
    """The check of one delivered table as curation leaves it, and whether it waits for the end of the run: only a
    readable ``full`` table of a family others link to, with a state before this delivery, can orphan a row."""
    parent = parent_of(family)
    if not readable:
        return outcome(0, [], [], "no readable file", evaluated=False), False
    if mode != domain.FULL:
        return outcome(0, [], [], f"delivered {mode}: it removes no row of the current state"), False
    if not domain.child_links(catalog, family):
        return outcome(0, [], [], f"no other family of the catalog links to {parent}"), False
    members = _members(catalog, family)
    if not any(state.plan(m, exclude_delivery=manifest.delivery_id) for m in members):
        return outcome(0, [], [], f"no earlier delivery of {' or '.join(members)} in the current state: this one "
                                  "replaces nothing"), False
    return outcome(0, [], [], PENDING, evaluated=False), True


def _parent_state(state: CurrentState, catalog: Catalog, manifest: Manifest, members: list[str],
                 columns: tuple[str, ...], with_delivery: bool) -> tuple[DataFrame | None, str]:
    """The link columns (and PMSI year) of the parent's state and its archives', with or without this delivery:
    None and why not when it cannot be read, None and no reason when it holds nothing."""
    delivery_id = manifest.delivery_id
    frames = []
    for member in members:
        delivered = delivered_parts(catalog, manifest, member)
        if with_delivery:
            if delivered and not lake_exists(state.lake.curated(member, delivery_id)):
                return None, f"{member} of this delivery is not curated"
            kept = state.plan(member, after=(delivery_id, delivered))
        else:
            kept = state.plan(member, exclude_delivery=delivery_id)
        if not kept:
            continue
        state.verify(member, {d: years for d, years in kept.items() if d != delivery_id})
        df = state.read_plan(member, kept, columns=list(columns))
        if df is None:
            continue
        if any(c not in df.columns for c in columns):
            return None, f"{member} has no column {', '.join(c for c in columns if c not in df.columns)}"
        frames.append(df.select(*columns, *[domain.YEAR_COLUMN] * (domain.YEAR_COLUMN in df.columns)))
    if not frames:
        return None, ""
    out = frames[0]
    for df in frames[1:]:
        out = out.unionByName(df, allowMissingColumns=True)
    return out, ""


class _Removed:
    """The parent keys leaving the state, per kind of link (its columns, casts and year): built once each, once a
    first query has found that some row of the parent's link columns left the state at all (``any_left``)."""

    def __init__(self, state: CurrentState, catalog: Catalog, manifest: Manifest, members: list[str]):
        self.state, self.catalog, self.manifest, self.members = state, catalog, manifest, members
        self._rows: dict[tuple[str, ...], tuple] = {}
        self._hashes: dict[tuple, DataFrame] = {}
        self.counts: dict[tuple, int] = {}

    def any_left(self, columns: tuple[str, ...]) -> bool | None:
        """Whether a row of the parent's state without this delivery, on ``columns`` (every link's, and the year),
        is missing from its state with it (None: the parent cannot be read). When none is, no link's values are
        either: one query instead of one per kind of link, in the usual case of a referential delivered again
        whole. Nulls are hashed with their places, so that (a, null) is not (null, a)."""
        before, after, why = self.rows(columns)
        if before is None:
            return None if why else False
        if after is None:
            return True

        def hashed(df: DataFrame) -> DataFrame:
            cols = [F.col(c) for c in df.columns]
            nulls = F.concat(*[F.when(c.isNull(), "1").otherwise("0") for c in cols])
            return df.select(F.xxhash64(*cols, nulls).alias("_H"))

        return bool(hashed(before).join(hashed(after), on="_H", how="left_anti").limit(1).count())

    def rows(self, columns: tuple[str, ...]) -> tuple:
        """(before, after, why not) of the parent's link columns."""
        if columns not in self._rows:
            before, why = _parent_state(self.state, self.catalog, self.manifest, self.members, columns, False)
            after, why_after = _parent_state(self.state, self.catalog, self.manifest, self.members, columns, True)
            self._rows[columns] = (before, after, why or why_after)
        return self._rows[columns]

    def hashes(self, link: domain.Link, casts: tuple[bool, ...], year: bool, before: DataFrame,
               after: DataFrame | None) -> tuple[DataFrame, int]:
        """The hashes of the parent's link values before this delivery and not after it, persisted, and how many."""
        sig = (link.parent_columns, casts, year)
        if sig not in self._hashes:
            gone = keys.link_hashes(before, link, casts, year)
            if after is not None:
                gone = gone.join(keys.link_hashes(after, link, casts, year), on="_H", how="left_anti")
            self._hashes[sig] = gone.distinct().persist()
            self.counts[sig] = self._hashes[sig].count()
        return self._hashes[sig], self.counts[sig]

    def close(self) -> None:
        for frame in self._hashes.values():
            frame.unpersist()


def check_orphaned_children(spark: SparkSession, settings: Settings, catalog: Catalog, manifest: Manifest,
                            results: list, state: CurrentState) -> None:
    """Evaluate the ``orphaned_children`` checks that curation left pending in ``results`` (one family's
    ``CuratedTable``s, its partition published): updates each table's check and report fragment."""
    pending = [r for r in results if r.orphans_pending]
    if not pending:
        return
    family = results[0].family
    parent = parent_of(family)
    members = _members(catalog, family)
    delivery_id = manifest.delivery_id
    yearly = catalog[parent].is_yearly
    removed = _Removed(state, catalog, manifest, members)
    found: dict[int | None, list[tuple[str, keys.KeyResult]]] = {}
    notes: list[str] = []
    columns: list[str] = []
    checked = False
    # The years a PMSI parent's full tables replace: its same-year children are read for those years only.
    years = {p.year for p in delivered_parts(catalog, manifest, family) if p.mode == domain.FULL}
    links = domain.child_links(catalog, family)
    linked = tuple(dict.fromkeys(c for link in links for c in link.parent_columns))
    anything = removed.any_left(linked)
    if anything is False:  # every row before this delivery, on every link's columns, is still in the state
        links, checked, columns = [], True, list(linked)
    try:
        for link in links:
            label = f"{link.child}({', '.join(link.columns)})"
            kept = state.plan(link.child, after=(delivery_id, delivered_parts(catalog, manifest, link.child)))
            kept.pop(delivery_id, None)  # this delivery's rows of the child are its own foreign_key's
            if yearly and link.same_year:
                kept = {d: held & years for d, held in kept.items() if held & years}
            if not kept:
                continue
            rows = state.read_plan(link.child, kept, columns=list(link.columns))  # nothing read yet
            if rows is None or any(c not in rows.columns for c in link.columns):
                continue
            before, after, why = removed.rows(link.parent_columns)
            if before is None:
                if why:
                    notes.append(f"{label}: not evaluated, {why}")
                continue
            checked = True
            columns += [c for c in link.parent_columns if c not in columns]
            casts = keys.link_casts(dict(rows.dtypes), dict(before.dtypes), link)
            year = link.same_year and yearly and domain.YEAR_COLUMN in before.columns
            gone, count = removed.hashes(link, casts, year, before, after)
            if count:
                state.verify(link.child, kept)
                for y, result in keys.orphans(rows, gone, link, year, casts, year, how="left_semi").items():
                    found.setdefault(y, []).append((label, result))
    finally:
        removed.close()
    left = "; ".join(f"{n} key(s) ({', '.join(sig[0])}) of {parent} left the state"
                     for sig, n in removed.counts.items() if n)
    for r in pending:
        # A PMSI parent's links are all to the same year (``domain.check_links``): its results are by year.
        mine = [(label, res) for label, res in found.get(r.year if yearly else None, []) if res.failures]
        failures = sum(res.failures for _, res in mine)
        sample = [{"table": label, **s} for label, res in mine for s in (res.sample or [])]
        details = [f"{label}: {res.failures} row(s) of other deliveries lost their {parent} row" for label, res in mine]
        if checked and not mine:
            details.append(f"no row of other deliveries lost its {parent} row" + (f" ({left})" if left else ""))
        elif not checked and not notes:
            details.append(f"no other family has rows of other deliveries in the state that point to {parent}")
        check = outcome(failures, columns, sample, "; ".join(details + notes), evaluated=checked or not notes)
        r.checks = [check if c.name == CHECK else c for c in r.checks]
        r.orphans_pending = False
        save_fragment(settings, delivery_id, r.delivered_name, "curated", r.fragment())
