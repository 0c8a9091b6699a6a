"""Publishing a partition written under ``<lake>/_staging/`` by renaming it into place.

Spark writes a partition in many files; readers must never see some of them. Every curation run writes its
partitions to a fresh staging folder and, only once everything (including the checks) succeeded, swaps each one
into place: the earlier partition of the same delivery is moved aside, the new one renamed in, the old one
deleted. A run that fails before leaves the published partitions untouched; re-ingesting a delivery replaces
its partition, so rows are never duplicated.
"""
from __future__ import annotations

import os
import posixpath
import uuid

from ..catalog import Catalog
from ..config import Settings
from ..lake import Lake
from ..reception.archive import families_of
from ..reception.manifest import Manifest
from ..reception.report import withdraw_report
from ..reception.storage import filesystem, is_local, lake_exists, move_files


def publish(staged: str | None, target: str) -> None:
    """Make ``target`` hold exactly the staged folder (or nothing when ``staged`` is None or absent)."""
    fs, dst = filesystem(target)
    src = filesystem(staged)[1] if staged is not None else None
    if src is not None and not fs.exists(src):
        src = None
    aside = None
    if fs.exists(dst):
        aside = posixpath.join(posixpath.dirname(dst.rstrip("/")), f".{posixpath.basename(dst.rstrip('/'))}.old-{uuid.uuid4().hex}")
        _move(fs, dst, aside)
    if src is not None:
        fs.makedirs(posixpath.dirname(dst.rstrip("/")), exist_ok=True)
        try:
            _move(fs, src, dst)
        except BaseException:
            if aside is not None:
                _move(fs, aside, dst)
            raise
    if aside is not None:
        fs.rm(aside, recursive=True)


def _move(fs, src: str, dst: str) -> None:
    if is_local(fs):
        os.rename(src, dst)  # atomic on one file system; the staging folder lives in the lake
    else:
        move_files(fs, src, dst)


def drop_undelivered(settings: Settings, catalog: Catalog, manifest: Manifest, earlier: Manifest | None) -> list[str]:
    """Remove the delivery's curated and rejected partitions of the families its ``earlier`` manifest (the one its
    previous reception archived) delivered and this one no longer does: as its raw archive, they mirror the delivery
    as received this time. Its report is withdrawn first, its data changing (``withdraw_report``). The partitions
    removed are returned."""
    if earlier is None:
        return []
    lake, delivery_id = Lake(settings.lake), manifest.delivery_id
    gone = sorted(set(families_of(catalog, earlier)) - set(families_of(catalog, manifest)))
    stale = [p for family in gone for p in (lake.curated(family, delivery_id), lake.rejects(family, delivery_id))
             if lake_exists(p)]
    if stale:
        withdraw_report(settings, delivery_id)
    for target in stale:
        publish(None, target)
    return stale
