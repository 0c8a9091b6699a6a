"""The ``orphaned_children`` check: rows of other families' current state whose parent a ``full`` delivery removes.

A ``full`` delivery replaces its family's current state (a PMSI year's table, that year): a parent row it does not
bring again leaves the rows of other families already in the state that point to it (DCIR care lines of earlier
months to an identity of IR_BEN_R, say) without their parent, and no check of those families sees it: they are
not in the delivery. A row is reported when its parent's key is in the state without this delivery and not in the
state with it, archives included (an identity moved to IR_BEN_R_ARC is not lost); a row whose parent the state
lacks either way is its own delivery's ``foreign_key`` failure. Both states are first compared on every link's
columns at once, one query that finds nothing gone when a referential comes back whole; only when rows left are
the keys gone found per kind of link and the children's other partitions read for them.

Evaluated at the end of the run, once the parent and its archives of this delivery are curated (a family of the
delivery that this run did not curate makes it not evaluated). WARN, as any foreign key: the delivery is what
CNAM sent; the check tells the hub which rows of its state lost their parent.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Collection

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from .. import domain
from ..catalog import Catalog
from ..checks import DEFAULT_SEVERITY, ORPHANS_CHECK, CheckOutcome, tolerate
from ..config import Settings
from ..reception.manifest import Manifest
from ..reception.report import save_fragment
from . import keys
from .state import CurrentState, DamagedPartition, delivered_parts, family_rows

if TYPE_CHECKING:
    from .curate import CuratedTable

SAMPLE_SIZE = 5
PENDING = "waits for every family of this run to be curated (a run that stopped before never evaluated it)"


def parent_of(family: str) -> str:
    """The table whose rows ``family`` holds for its children: itself, or the table it archives (IR_BEN_R_ARC)."""
    return domain.ARCHIVES.get(family, family)


def _members(catalog: Catalog, family: str) -> list[str]:
    """The families read together as the parent's rows: the parent and its archives."""
    parent = parent_of(family)
    return [m for m in (parent, *domain.archives_of(parent)) if m in catalog]


def _full(catalog: Catalog, manifest: Manifest, family: str) -> set[int | None]:
    """The years (None for a family that is not yearly) of ``family`` this delivery brings ``full``."""
    return {p.year for p in delivered_parts(catalog, manifest, family) if p.mode == domain.FULL}


def _verdict(failures: int, columns: list[str], sample: list, details: str, evaluated: bool = True) -> CheckOutcome:
    return CheckOutcome(ORPHANS_CHECK, "foreign_key", DEFAULT_SEVERITY[ORPHANS_CHECK], failures == 0, int(failures),
                        list(columns), list(sample)[:SAMPLE_SIZE], evaluated, details)


def first_verdict(state: CurrentState, catalog: Catalog, manifest: Manifest, family: str, mode: str,
                  readable: bool) -> tuple[CheckOutcome, bool]:
    """The check of one delivered table as curation leaves it, and whether it waits for the end of the run: only a
    readable ``full`` table of a family others link to, with a state before this delivery, can orphan a row."""
    parent = parent_of(family)
    if not readable:
        return _verdict(0, [], [], "no readable file", evaluated=False), False
    if mode != domain.FULL:
        return _verdict(0, [], [], f"delivered {mode}: it removes no row of the current state"), False
    if not domain.child_links(catalog, family):
        return _verdict(0, [], [], f"no other family of the catalog links to {parent}"), False
    if parent != family and _full(catalog, manifest, parent):
        return _verdict(0, [], [], f"reported on {parent} of this delivery, which reads its state with "
                                   f"{family}'s"), False
    members = _members(catalog, family)
    if not any(state.plan(m, exclude_delivery=manifest.delivery_id) for m in members):
        return _verdict(0, [], [], f"no earlier delivery of {' or '.join(members)} in the current state: this one "
                                   "replaces nothing"), False
    return _verdict(0, [], [], PENDING, evaluated=False), True


class _Removed:
    """The parent's link values in the state without this delivery and with it (its years replaced only, for a PMSI
    family), and the keys that left, per kind of link (its columns, casts and year), each built once."""

    def __init__(self, state: CurrentState, catalog: Catalog, manifest: Manifest, members: list[str],
                 years: set[int | None] | None):
        self.state, self.catalog, self.manifest, self.members, self.years = state, catalog, manifest, members, years
        self._rows: dict[tuple[str, ...], tuple[DataFrame | None, DataFrame | None, str]] = {}
        self._hashes: dict[tuple, DataFrame] = {}
        self.counts: dict[tuple, dict[int | None, int]] = {}  # per kind of link, keys gone by year (None: all)

    def rows(self, columns: tuple[str, ...]) -> tuple[DataFrame | None, DataFrame | None, str]:
        """(before, after, why not): the parent's ``columns`` (and PMSI year) without and with this delivery, None
        for a state that holds nothing; ``why`` when one cannot be read."""
        if columns not in self._rows:
            sides: list[DataFrame | None] = []
            why = ""
            for with_delivery in (False, True):
                frames = []
                for member in self.members:
                    if not (with_delivery and delivered_parts(self.catalog, self.manifest, member)) and not \
                            self.state.plan(member, exclude_delivery=self.manifest.delivery_id):
                        continue  # nothing of it on this side
                    df, reason, _ = family_rows(self.state, self.catalog, self.manifest, member, list(columns),
                                                with_delivery)
                    if df is None:
                        why = why or reason
                        continue
                    if self.years is not None and domain.YEAR_COLUMN in df.columns:
                        df = df.where(F.col(domain.YEAR_COLUMN).isin(sorted(self.years)))
                    frames.append(df.select(*columns, *[domain.YEAR_COLUMN] * (domain.YEAR_COLUMN in df.columns)))
                side = frames[0] if frames else None
                for df in frames[1:]:
                    side = side.unionByName(df, allowMissingColumns=True)
                sides.append(side)
            self._rows[columns] = (sides[0], sides[1], why)
        return self._rows[columns]

    def any_left(self, columns: tuple[str, ...]) -> bool:
        """Whether a row of the parent's state without this delivery, on ``columns`` (every link's, and the year),
        is missing from its state with it. When none is, no link's values are either: one query instead of one per
        kind of link. Nulls are hashed with their places, so that (a, null) is not (null, a)."""
        before, after, _ = self.rows(columns)
        if before is None:
            return False
        if after is None:
            return True

        def hashed(df: DataFrame) -> DataFrame:
            cols = [F.col(c) for c in df.columns]
            nulls = F.concat(*[F.when(c.isNull(), "1").otherwise("0") for c in cols])
            return df.select(F.xxhash64(*cols, nulls).alias("_H"))

        return bool(hashed(before).join(hashed(after), on="_H", how="left_anti").limit(1).count())

    def hashes(self, link: domain.Link, casts: tuple[bool, ...], year: bool) -> tuple[DataFrame, int]:
        """The hashes of the parent's link values before this delivery and not after it, persisted, and how many."""
        sig = (link.parent_columns, casts, year)
        if sig not in self._hashes:
            before, after, _ = self.rows(link.parent_columns)
            gone = keys.link_hashes(before, link, casts, year, keep_year=year)
            if after is not None:
                gone = gone.join(keys.link_hashes(after, link, casts, year), on="_H", how="left_anti")
            self._hashes[sig] = gone.distinct().persist()
            if year:
                by_year = self._hashes[sig].groupBy(domain.YEAR_COLUMN).count().collect()
                self.counts[sig] = {r[0]: r[1] for r in by_year}
            else:
                self.counts[sig] = {None: self._hashes[sig].count()}
        return self._hashes[sig], sum(self.counts[sig].values())

    def left(self, year: int | None) -> str:
        """The keys that left the state, per kind of link, for the parent's table of ``year`` (a PMSI year's keys
        are that year's only)."""
        said = []
        for sig, by_year in self.counts.items():
            n = by_year.get(None, by_year.get(year, 0))
            if n:
                said.append(f"{n} key(s) ({', '.join(sig[0])}) of {self.members[0]} left the state")
        return "; ".join(said)

    def close(self) -> None:
        for frame in self._hashes.values():
            frame.unpersist()


def check_orphaned_children(settings: Settings, catalog: Catalog, manifest: Manifest, results: list[CuratedTable],
                            state: CurrentState, curated: Collection[str]) -> None:
    """Evaluate the ``orphaned_children`` checks that curation left pending in ``results`` (one family's, its
    partition published), once the run has curated the families in ``curated``: updates each table's check and
    report fragment. A damaged partition makes it not evaluated, saying which: this WARN check does not stop the
    reception."""
    pending = [r for r in results if r.orphans_pending]
    if not pending:
        return
    family = results[0].family
    parent = parent_of(family)
    members = _members(catalog, family)
    links = domain.child_links(catalog, family)
    linked = tuple(dict.fromkeys(c for link in links for c in link.parent_columns))
    uncurated = [m for m in members if delivered_parts(catalog, manifest, m) and m not in curated]
    found: dict[int | None, list[tuple[str, str, keys.KeyResult]]] = {}
    counted: dict[tuple[int | None, str], int] = {}
    why = ""
    removed = None
    if uncurated:
        why = f"{', '.join(uncurated)} of this delivery was not curated in this run"
    else:
        years = _full(catalog, manifest, family) if catalog[parent].is_yearly else None
        removed = _Removed(state, catalog, manifest, members, years)
        try:
            found, counted, why = _orphans(state, catalog, manifest, removed, links, linked, years)
        except DamagedPartition as exc:
            why = str(exc)
        finally:
            removed.close()
    for r in pending:
        # A PMSI parent's links are all to the same year (``domain.check_links``): its results are by year.
        year = r.year if catalog[parent].is_yearly else None
        mine = [(child, label, res) for child, label, res in found.get(year, []) if res.failures]
        if why:
            check = _verdict(0, list(linked), [], why, evaluated=False)
        else:
            per_child: dict[str, int] = {}
            for child, _, res in mine:
                per_child[child] = per_child.get(child, 0) + res.failures
            left = removed.left(year) if removed is not None else ""
            details = [f"{label}: {res.failures} row(s) of other deliveries lost their {parent} row"
                       for _, label, res in mine] or [f"no row of other deliveries lost its {parent} row"
                                                      + (f" ({left})" if left else "")]
            details += [f"{child}: {counted[(year, child)]} row(s) in all, a row losing its {parent} row through "
                        "several links counted once" for child in per_child if (year, child) in counted]
            check = _verdict(sum(counted.get((year, child), n) for child, n in per_child.items()), list(linked),
                             [{"table": label, **s} for _, label, res in mine for s in (res.sample or [])],
                             "; ".join(details))
            tolerate([check], r.rows_read, r.rows_rejected, settings.reject_tolerance)
        r.checks = [check if c.name == ORPHANS_CHECK else c for c in r.checks]
        r.orphans_pending = False
        save_fragment(settings, manifest.delivery_id, r.delivered_name, "curated", r.fragment())


def _orphans(state: CurrentState, catalog: Catalog, manifest: Manifest, removed: _Removed, links: list[domain.Link],
             linked: tuple[str, ...], years: set[int | None] | None
             ) -> tuple[dict[int | None, list[tuple[str, str, keys.KeyResult]]], dict[tuple[int | None, str], int],
                        str]:
    """Per year (None for a parent that is not yearly), each link's child rows of other deliveries whose parent
    left the state (child, link's label, result); per year and child with several such links, its rows that lost
    the parent through any of them, each counted once (SPEC §6 counts rows); or why the check cannot be
    evaluated."""
    found: dict[int | None, list[tuple[str, str, keys.KeyResult]]] = {}
    counted: dict[tuple[int | None, str], int] = {}
    before, _, why = removed.rows(linked)
    if why:
        return found, counted, why
    if before is None or not removed.any_left(linked):
        return found, counted, ""
    delivery_id = manifest.delivery_id
    hits: dict[str, list] = {}
    for link in links:
        kept = state.plan(link.child, after=(delivery_id, delivered_parts(catalog, manifest, link.child)))
        kept.pop(delivery_id, None)  # this delivery's rows of the child are its own foreign_key's
        if years is not None and link.same_year:
            kept = {d: held & years for d, held in kept.items() if held & years}
        if not kept:
            continue
        rows = state.read_plan(link.child, kept, columns=list(link.columns))  # nothing read yet
        if rows is None or any(c not in rows.columns for c in link.columns):
            continue
        before, _, _ = removed.rows(link.parent_columns)
        casts = keys.link_casts(dict(rows.dtypes), dict(before.dtypes), link)
        year = link.same_year and years is not None and domain.YEAR_COLUMN in before.columns
        gone, count = removed.hashes(link, casts, year)
        if count:
            state.verify(link.child, kept)
            label = f"{link.child}({', '.join(link.columns)})"
            results = keys.orphans(rows, gone, link, year, casts, year, how="left_semi")
            for y, result in results.items():
                found.setdefault(y, []).append((link.child, label, result))
            if any(result.failures for result in results.values()):
                hits.setdefault(link.child, []).append((kept, gone, link, casts, year))
    for child, hit in hits.items():
        if len(hit) > 1:  # the links of one child to the parent share its partitions and year
            kept, year = hit[0][0], hit[0][4]
            rows = state.read_plan(child, kept, columns=list(dict.fromkeys(c for h in hit for c in h[2].columns)))
            for y, n in keys.orphans_of_any(rows, [h[1:] for h in hit], year, how="left_semi").items():
                counted[(y, child)] = n
    return found, counted, ""
