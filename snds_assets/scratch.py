"""Scratch that a killed run leaves in the lake, removed by the next run of the same partition.

Every write is staged and published by rename (``lake.Lake.staging``, ``lake.staging_beside``, the ``.old-``
folder a publication moves aside), and a run that fails cleans up after itself. A run that is killed (SIGKILL,
a lost node) cannot: its staged copies of raw and curated data, or of a project's extracts and correspondence,
stay where they were written, hidden from every reader and listing but taking space. The next run of the same
delivery or project removes them, once the instance shows no other unfinished run of that partition: the only
one that could still be writing there.
"""
from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Iterable

from dagster import DagsterRun

from .lake import Lake, join

# ``.<name>.staging-<hex>`` and ``.<name>.old-<hex>`` (folders), ``.<name>.<hex>.tmp`` (files).
HIDDEN = re.compile(r"^\.(?P<name>.+)\.(?:(?P<kind>staging|old)-[0-9a-f]{32}|[0-9a-f]{32}\.tmp)$")


def hidden_scratch(folder: str, name: str | None = None, rewritten: Iterable[str] | None = None) -> list[str]:
    """Scratch entries directly under ``folder`` (URLs), only those staged for ``name`` when it is given.

    A folder moved aside (``.old-``) by a run killed before it put the new one in place is the last published
    copy of ``<name>``: it is scratch only for a run that writes ``<name>`` again, so with ``rewritten`` only the
    names listed there count (staged writes and temporary files always do: nothing was published from them)."""
    from .reception.storage import fresh_filesystem

    fs, path = fresh_filesystem(folder)  # not an object store's listing cache: Spark wrote there meanwhile
    try:
        children = fs.ls(path, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for child in children:
        base = posixpath.basename(child.rstrip("/"))
        found = HIDDEN.match(base)
        if not found or (name is not None and found["name"] != name):
            continue
        if found["kind"] == "old" and rewritten is not None and found["name"] not in rewritten:
            continue
        out.append(join(folder, base))
    return sorted(out)


def delivery_scratch(lake: Lake, delivery_id: str, families: Iterable[str]) -> list[str]:
    """Where runs on one delivery stage their writes: its staging trees, and its partitions moved aside in
    ``families``: those this run curates again (see ``hidden_scratch``)."""
    from .reception.storage import walk_lake_files

    found = [p for p in (lake.staging("raw", delivery_id), lake.staging("curation", delivery_id))
             if walk_lake_files(p)]
    partition = f"delivery_id={delivery_id}"
    for family in families:
        found += hidden_scratch(lake.curated(family), partition) + hidden_scratch(lake.rejects(family), partition)
    return found + hidden_scratch(join(lake.root, "reports", "deliveries", "_parts", delivery_id))


def drop_empty_staging(lake: Lake, delivery_id: str) -> None:
    """The delivery's staging folders once every write has left them, so that ``_staging/`` lists only work in
    progress or left by a killed run (a local folder keeps the empty folders a write was staged in)."""
    from .reception.storage import remove_lake_tree, walk_lake_files

    for path in (lake.staging("raw", delivery_id), lake.staging("curation", delivery_id)):
        if not walk_lake_files(path):
            remove_lake_tree(path)


def project_scratch(lake: Lake, project_id: str, rewritten: Iterable[str]) -> list[str]:
    """Where runs on one project stage their writes: hidden folders beside its cohort, extracts and
    correspondence, in its space and in ``restricted/`` (its withheld extracts too); those moved aside only among
    ``rewritten``, the folders this run writes again (see ``hidden_scratch``)."""
    rewritten = set(rewritten)
    return [p for folder in (lake.project(project_id), lake.restricted(project_id), lake.restricted(project_id, "info"),
                             lake.withheld(project_id)) for p in hidden_scratch(folder, rewritten=rewritten)]


def sweep(paths: list[str], busy: list[DagsterRun], log: logging.Logger, what: str) -> list[str]:
    """Remove ``paths`` unless another run of the partition is unfinished; say what was done either way."""
    from .reception.storage import remove_lake_tree

    if not paths:
        return []
    if busy:
        log.info(f"{len(paths)} staged writes of earlier runs on {what} left in place: run {busy[0].run_id} "
                 f"({busy[0].status.value}) has not ended and may be writing them")
        return []
    for path in paths:
        remove_lake_tree(path)
    log.info(f"removed {len(paths)} staged writes left by killed runs on {what}: {', '.join(paths[:5])}"
             + (" ..." if len(paths) > 5 else ""))
    return paths
