"""Small-file I/O and directory publication in the lake, for a local folder or a URI (through fsspec).

Spark writes the Parquet data; this module writes what Spark should not see (the project secret) or does not
need to (JSON and HTML reports), and publishes a staged Parquet folder: locally in one rename, so that a project
never reads a half-written extract; on object storage (``az://``, ``abfss://`` through adlfs) a folder move is a
copy of each file, so a reader during the move can find the folder missing or partly copied.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from ..reception.storage import filesystem, fresh_filesystem, move_files, read_lake_bytes, remove_lake_tree

read_bytes = read_lake_bytes  # the file's content, or None when it does not exist
remove = remove_lake_tree  # a file or a folder tree; nothing happens if it is absent


def is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _local(path: str) -> Path:
    return Path(path[len("file://"):] if path.startswith("file://") else path)


def write_bytes(path: str, data: bytes, private: bool = False, exclusive: bool = False) -> bool:
    """Write a whole file atomically (temporary file + rename); ``private`` makes it readable by its owner only.

    With ``exclusive``, an existing file is kept and False is returned: two concurrent writers agree on one
    content (the project secret must never change once created).
    """
    if is_uri(path):
        fs, p = filesystem(path)
        parent = p.rsplit("/", 1)[0]
        fs.makedirs(parent, exist_ok=True)
        if not exclusive:
            fs.pipe_file(p, data)
            return True
        try:
            fs.pipe_file(p, data, mode="create")  # the store refuses to overwrite (adlfs: overwrite=False)
        except FileExistsError:
            return False
        return True
    local = _local(path)
    local.parent.mkdir(parents=True, exist_ok=True)
    if private:
        os.chmod(local.parent, 0o700)
    tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        if exclusive:
            try:
                os.link(tmp, local)  # fails if the file exists: first writer wins
            except FileExistsError:
                return False
            return True
        os.replace(tmp, local)
        return True
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str, data: dict) -> None:
    write_bytes(path, json.dumps(data, indent=2, ensure_ascii=False, default=str).encode("utf-8"))


def read_json(path: str) -> dict | None:
    data = read_bytes(path)
    return None if data is None else json.loads(data.decode("utf-8"))


def list_dirs(path: str) -> list[str]:
    """Names of the sub-folders of a folder ([] when absent), listed afresh (see ``fresh_filesystem``); hidden
    ones (a write being staged, an old copy being replaced) are not listed."""
    if is_uri(path):
        fs, p = fresh_filesystem(path)
        if not fs.exists(p):
            return []
        names = [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(p, detail=True) if e["type"] == "directory"]
    else:
        local = _local(path)
        names = [d.name for d in local.iterdir() if d.is_dir()] if local.is_dir() else []
    return sorted(n for n in names if not n.startswith("."))


def publish_dir(staging: str, target: str) -> None:
    """Replace ``target`` by the folder ``staging``.

    Locally the old content is renamed aside, then dropped: both renames are atomic, a reader sees the old or the
    new folder, never a mix. On object storage it is removed, then the new one copied (see the module's docstring).
    """
    if is_uri(staging):
        # A move is a copy there, so the old content is removed rather than copied aside.
        fs, src = filesystem(staging)
        _, dst = filesystem(target)
        if fs.find(dst):
            fs.rm(dst, recursive=True)
        move_files(fs, src, dst)
        return
    src, dst = _local(staging), _local(target)
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex}")
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    if old.exists():
        shutil.rmtree(old)
