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

from ..reception.storage import filesystem, is_local


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
        fs.mv(src, dst, recursive=True)
