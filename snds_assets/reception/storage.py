"""Where deliveries land and where the lake lives, reached through fsspec: a local folder or a URI.

The landing zone is a local folder or ``az://<container>/<prefix>`` (Azure Blob / ADLS Gen2 through adlfs); the
lake is a local folder or an ``abfss://`` URI. Azure credentials are never handled here: adlfs reads the standard
variables (``AZURE_STORAGE_CONNECTION_STRING``, ``AZURE_STORAGE_ACCOUNT_NAME`` + ``AZURE_STORAGE_ACCOUNT_KEY`` or
``AZURE_STORAGE_SAS_TOKEN``, else ``DefaultAzureCredential``), so no secret passes through our messages or logs.

Every write is published whole: a local file is written under a temporary name and renamed; a blob only
becomes visible when its upload is committed.
"""
from __future__ import annotations

import io
import os
import posixpath
import queue
import re
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Callable, Iterator, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ..azure import adlfs_options, foreign_credentials, url_account
from ..lake import join
from .manifest import (
    DELIVERY_ID_FORM, MANIFEST, Manifest, ManifestError, delivery_order, parse_manifest, valid_delivery_id,
)


class DeliveryNotFound(ManifestError):
    """The delivery folder, or its manifest, is not in the landing zone."""


@dataclass(frozen=True)
class LandingEntry:
    """One folder of the landing zone: a delivery ready to be received (complete) or the reason it is skipped."""

    delivery_id: str
    complete: bool
    reason: str | None = None
    manifest_version: str | None = None  # ``file_version`` of its manifest.json, when complete


class StorageError(ValueError):
    """A landing zone or lake URI that cannot be reached as configured (missing credentials, unknown scheme)."""


AZURE_CREDENTIALS = ("AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY, "
                     "AZURE_STORAGE_SAS_TOKEN or, alone, an Azure identity")
# Azure Storage's error codes for a request whose credentials were refused (wrong, expired, or without the rights).
_REFUSED = re.compile(r"ErrorCode:\s*(AuthenticationFailed|Authorization\w*|InsufficientAccountPermissions|"
                      r"NoAuthenticationInformation|InvalidAuthenticationInfo)")


def azure_refusal(cls_name: str, message: str, urls: dict[str, str]) -> str | None:
    """What to fix when Azure Storage refused a request's credentials, naming the settings whose URLs are on Azure
    (``urls``: setting -> URL); None for any other error. Azure says only "Server failed to authenticate the
    request", naming neither the container nor the variables that hold the credentials."""
    refused = _REFUSED.search(message)
    if refused is None and cls_name != "ClientAuthenticationError":
        return None
    where = ", ".join(f"{name} {url}" for name, url in urls.items() if "://" in url) or "the storage account"
    code = refused[1] if refused else cls_name
    return (f"Azure Storage refused the credentials for {where} ({code}): wrong, expired, or without the rights "
            f"needed; check {AZURE_CREDENTIALS}")


@contextmanager
def azure_errors_told(landing: str, setting: str = "SNDS_LANDING") -> Iterator[None]:
    """Azure's refusal of the landing zone's credentials, or a landing zone it cannot reach, as a StorageError that
    says what to check: the sensor then skips its tick with that line instead of failing with Azure's own error,
    and `snds ingest` prints it (``setting``: what gave the landing zone, `snds generate --out` too)."""
    try:
        yield
    except Exception as exc:
        if not type(exc).__module__.startswith("azure."):
            raise
        told = _azure_error_told(exc, setting, landing)
        if told is None:
            raise
        raise StorageError(told) from exc


def _azure_error_told(exc: Exception, setting: str, landing: str) -> str | None:
    """What to check for an Azure error on the landing zone, or None for one that says it already."""
    from azure.core.exceptions import (
        ClientAuthenticationError, HttpResponseError, ServiceRequestError, ServiceResponseError,
    )

    cause = _redacted(exc)
    if type(exc).__name__ == "AzureSigningError":  # the key is not base64: a connection string cut when pasted
        return (f"the account key for {setting} {landing} cannot sign requests ({cause}): is it whole? check "
                f"{AZURE_CREDENTIALS}")
    name = "ClientAuthenticationError" if isinstance(exc, ClientAuthenticationError) else type(exc).__name__
    told = azure_refusal(name, str(exc), {setting: landing})
    if told is not None:
        return told
    if isinstance(exc, ServiceRequestError):  # after the SDK's retries
        return (f"cannot reach Azure Storage for {setting} {landing} ({cause}): is the storage account's endpoint "
                "reachable from here (network, proxy, firewall)?")
    if isinstance(exc, ServiceResponseError):
        return (f"Azure Storage did not answer for {setting} {landing} ({cause}): is the storage account's "
                "endpoint the right one, and reachable from here (network, proxy, firewall)?")
    if isinstance(exc, HttpResponseError) and "InvalidResourceName" in str(exc):
        return (f"{setting} {landing} does not name a valid container (Azure: {cause}): container names are 3 to 63 "
                "lower-case letters, digits and hyphens")
    return None


_SECRET = re.compile(r"(AccountKey|SharedAccessSignature|sig|AZURE_STORAGE_ACCOUNT_KEY|ClientSecret)=[^;&\s]*",
                     re.IGNORECASE)


def _redacted(exc: BaseException) -> str:
    """An error's message on one line, its secrets (a connection string's key, a SAS signature) left out."""
    return _SECRET.sub(r"\1=<redacted>", one_line(exc))


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of a local path or URI, and the path inside it (fsspec caches the instances).

    A URL that names its storage account (the ``abfss://`` lake) is refused when adlfs would reach it with
    another account's credentials: with a connection string it would write to that other account. One of a
    sovereign cloud is given its endpoint (``adlfs_options``)."""
    account = url_account(url)
    problem = foreign_credentials(account) if account else None
    if problem:
        raise StorageError(f"cannot open storage account {account}: {problem}")
    try:
        return fsspec.core.url_to_fs(url, **adlfs_options(url))
    except (ValueError, ImportError) as exc:
        scheme = url.split("://", 1)[0] if "://" in url else "file"
        hint = f": set {AZURE_CREDENTIALS}" if scheme in ("az", "abfs", "abfss") else ""
        cause, where = _redacted(exc), _SECRET.sub(r"\1=<redacted>", url)
        raise StorageError(f"cannot open {where} ({cause}){hint}") from exc


def fresh_filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """``filesystem`` for a listing that must see what other processes (CNAM, Spark, another run) wrote since:
    adlfs keeps listings in a cache that never expires by default, so a long-lived process (the code server that
    runs the sensor) would otherwise never see a new delivery folder."""
    fs, path = filesystem(url)
    fs.invalidate_cache(path)
    return fs, path


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def one_line(exc: BaseException) -> str:
    """An error as one line, for reports and messages."""
    return " ".join(str(exc).split()) or type(exc).__name__


# --- Landing ------------------------------------------------------------------------------------------------
T = TypeVar("T")


def answered_within(seconds: float, what: str, call: Callable[..., T], *args: object) -> T:
    """``call(*args)``, or a StorageError naming ``what`` when it has not returned after ``seconds``.

    The Azure SDK tries an endpoint that does not answer for about 80 s before it gives up, longer than the 60 s
    Dagster gives a sensor's tick: the tick then failed with Dagster's timeout instead of saying why. The call
    goes on in a daemon thread until the SDK gives up, and its outcome is dropped."""
    outcome: queue.Queue = queue.Queue(maxsize=1)

    def run() -> None:
        try:
            outcome.put((True, call(*args)))
        except BaseException as exc:  # handed to the caller's thread, raised there
            outcome.put((False, exc))

    threading.Thread(target=run, name=f"snds-{what}", daemon=True).start()
    try:
        answered, value = outcome.get(timeout=seconds)
    except queue.Empty:
        raise StorageError(f"no answer from {what} within {seconds:g} s: is its endpoint reachable from here "
                           "(network, proxy, firewall)?") from None
    if answered:
        return value
    raise value


def list_deliveries(landing: str) -> list[LandingEntry]:
    """The folders of the landing zone, in delivery order (``delivery_order``: the sensor requests their receptions,
    which run one at a time, in that order).

    A folder named like a delivery id is complete when its manifest.json exists (CNAM writes it last); any other
    folder is listed as skipped with the reason. Whether the manifest can be read is ``read_manifest``'s call.
    """
    with azure_errors_told(landing):
        return _list_deliveries(landing)


def _list_deliveries(landing: str) -> list[LandingEntry]:
    fs, root = fresh_filesystem(landing)
    try:
        children = fs.ls(root, detail=True)
    except FileNotFoundError:
        return []
    entries = []
    named = ((posixpath.basename(child["name"].rstrip("/")), child) for child in children)
    for name, child in sorted(named, key=lambda pair: delivery_order(pair[0])):
        if child.get("type") != "directory":
            continue
        if not valid_delivery_id(name):
            entries.append(LandingEntry(name, False, f"folder name is not a delivery id ({DELIVERY_ID_FORM})"))
        else:
            try:  # as cheap as asking whether it exists, and tells the sensor whether it changed
                info = fs.info(posixpath.join(child["name"].rstrip("/"), MANIFEST))
            except FileNotFoundError:
                info = None
            except PermissionError as exc:  # one folder the hub cannot enter held back every other delivery
                entries.append(LandingEntry(name, False, f"cannot look into the folder ({exc.strerror or exc}): "
                                                         "give the hub read access to it"))
                continue
            if info is not None and info.get("type") == "file":
                entries.append(LandingEntry(name, True, None, file_version(info)))
            else:
                entries.append(LandingEntry(name, False, "no manifest.json yet (delivery still being written)"))
    return entries


def file_version(info: dict) -> str:
    """A version stamp of a file from its listing (size and ETag, or modification time on a local disk) that
    changes when the file is rewritten."""
    stamp = info.get("etag") or info.get("mtime") or info.get("last_modified") or ""
    return f"{info.get('size')}:{stamp}"


def landing_exists(landing: str) -> bool:
    """Whether the landing zone is there (on object storage: holds a blob), asked afresh each time."""
    fs, root = fresh_filesystem(landing)
    return bool(fs.exists(root))


def landing_path(landing: str, delivery_id: str, *relpath: str) -> str:
    return join(landing, delivery_id, *relpath)


def delivery_folder_used(landing: str, delivery_id: str) -> bool:
    """Whether the landing zone already holds files under ``<ID>/``."""
    fs, root = fresh_filesystem(landing_path(landing, delivery_id))
    return bool(fs.exists(root) and fs.find(root))


def upload_delivery(folder: str, landing: str, delivery_id: str,
                    progress: Callable[[str, int, int], None] | None = None) -> str:
    """Copy a local delivery folder (``<folder>/<ID>/`` and its ``<ID>.defects.json`` if any) to a landing zone
    as CNAM would: data files first, ``manifest.json`` last, so that the sensor never picks a delivery half
    uploaded. Refuses a delivery folder that already holds files. An upload stopped before its manifest (Ctrl-C, a
    lost connection) removes what it uploaded: the folder would wait for a manifest for ever and keep the id used.
    Returns the delivery's landing URL."""
    target = landing_path(landing, delivery_id)
    if delivery_folder_used(landing, delivery_id):
        raise FileExistsError(f"{target} already exists: choose another delivery id")
    fs, root = filesystem(target)
    local = os.path.join(folder, delivery_id)
    files = sorted(os.path.relpath(os.path.join(d, f), local).replace(os.sep, "/")
                   for d, _, names in os.walk(local) for f in names)
    files = [f for f in files if f != MANIFEST] + [MANIFEST]
    uploaded: list[str] = []
    try:
        for done, rel in enumerate(files, 1):
            path = posixpath.join(root, rel)
            fs.makedirs(posixpath.dirname(path), exist_ok=True)
            uploaded.append(path)  # before the upload: one stopped half-way may have committed it
            fs.put_file(os.path.join(local, rel), path)
            if progress:
                progress("upload", done, len(files))
    except BaseException:
        _remove_quietly(fs, uploaded)
        raise
    truth = os.path.join(folder, f"{delivery_id}.defects.json")
    if os.path.exists(truth):
        fs.put_file(truth, posixpath.join(posixpath.dirname(root), f"{delivery_id}.defects.json"))
    return target


def _remove_quietly(fs: fsspec.AbstractFileSystem, paths: list[str]) -> None:
    """Remove what an interrupted upload wrote, as far as the store lets it: the upload's own error is the one told."""
    for path in paths:
        try:
            fs.rm_file(path)
        except Exception:  # absent (never committed), or the store unreachable: nothing more to do here
            pass


def read_manifest_bytes(landing: str, delivery_id: str) -> bytes:
    """The manifest exactly as delivered; raises DeliveryNotFound or ManifestError with a one-line message."""
    if not valid_delivery_id(delivery_id):
        raise ManifestError(f"{delivery_id!r} is not a delivery id ({DELIVERY_ID_FORM})")
    fs, folder = filesystem(landing_path(landing, delivery_id))
    try:
        with azure_errors_told(landing), open_stored(fs, posixpath.join(folder, MANIFEST)) as handle:
            return handle.read()
    except IsADirectoryError as exc:
        raise ManifestError(f"{MANIFEST} of delivery {delivery_id} is a folder, not a file") from exc
    except FileNotFoundError as exc:
        if not fs.isdir(folder):
            raise DeliveryNotFound(f"delivery {delivery_id} not found in the landing zone {landing}") from exc
        raise DeliveryNotFound(
            f"delivery {delivery_id} is incomplete: {MANIFEST} is missing (CNAM writes it last)") from exc
    except OSError as exc:
        raise ManifestError(f"cannot read {MANIFEST} of delivery {delivery_id}: {one_line(exc)}") from exc


def read_manifest(landing: str, delivery_id: str) -> Manifest:
    """The validated manifest of a delivery; its delivery_id must match its folder."""
    data = read_manifest_bytes(landing, delivery_id)
    try:
        return parse_manifest(data, expected_id=delivery_id)
    except ManifestError as exc:
        raise ManifestError(one_line(exc)) from exc


def unlisted_files(landing: str, manifest: Manifest) -> list[str]:
    """Files of the delivery folder that its manifest does not list, by path inside the folder: not received (SPEC
    §2 takes the listed files), so told, lest a file CNAM forgot to list be lost without a word. Hidden files and
    folders (``.DS_Store``, an upload's ``.part``) are not data, and another delivery's ``<ID>.defects.json`` lies
    beside the folder, not in it."""
    fs, folder = fresh_filesystem(landing_path(landing, manifest.delivery_id))
    root = folder.rstrip("/") + "/"
    listed = {posixpath.normpath(f.path) for t in manifest.tables for f in t.files} | {MANIFEST}
    found = []
    for name in fs.find(folder):
        rel = name[len(root):] if name.startswith(root) else posixpath.basename(name)
        if rel in listed or any(p.startswith(".") for p in rel.split("/")):
            continue
        found.append(rel)
    return sorted(found)


def open_landing_file(landing: str, delivery_id: str, relpath: str) -> IO[bytes]:
    """A delivered file opened for streaming reads (raises FileNotFoundError when it was not delivered)."""
    return open_stored(*filesystem(landing_path(landing, delivery_id, relpath)))


def open_stored(fs: fsspec.AbstractFileSystem, path: str) -> IO[bytes]:
    """A delivered file opened for reading its bytes as stored.

    Azure's client decompresses a blob uploaded with a ``Content-Encoding`` (``azcopy --content-encoding gzip``
    sets it on ``.gz`` files) and adlfs reads it through that client up to the stored size: a correct delivery
    was archived as its decompressed text cut short, and failed its checksum."""
    from adlfs import AzureBlobFileSystem

    if isinstance(fs, AzureBlobFileSystem):
        return StoredBlob(fs, path)
    return fs.open(path, "rb")


class StoredBlob(io.RawIOBase):
    """A blob read in ranges as stored (``decompress=False``), for ``open_stored``."""

    def __init__(self, fs, path: str):
        super().__init__()
        info = fs.info(path)  # FileNotFoundError when absent
        if info.get("type") != "file":
            raise IsADirectoryError(path)
        self.fs, self.size, self.position = fs, int(info["size"]), 0
        self.container, self.blob, self.version_id = fs.split_path(path)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self.position + size)
        if end <= self.position:
            return b""
        from fsspec.asyn import sync

        data = sync(self.fs.loop, self._fetch, self.position, end - self.position)
        self.position += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    async def _fetch(self, offset: int, length: int) -> bytes:
        async with self.fs.service_client.get_blob_client(container=self.container, blob=self.blob) as client:
            stream = await client.download_blob(offset=offset, length=length, version_id=self.version_id,
                                                max_concurrency=self.fs.max_concurrency or 1, decompress=False)
            return await stream.readall()


# --- Lake ---------------------------------------------------------------------------------------------------
def open_lake_file(url: str, mode: str = "rb") -> IO:
    """A lake file opened for reading or writing; writes create the parent folders."""
    fs, path = filesystem(url)
    if "w" in mode or "a" in mode:
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
    return fs.open(path, mode)


def lake_exists(url: str) -> bool:
    fs, path = filesystem(url)
    return fs.exists(path)


def read_lake_bytes(url: str) -> bytes | None:
    """A lake file's content, or None when it does not exist."""
    fs, path = filesystem(url)
    try:
        with fs.open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_lake_bytes(url: str, data: bytes) -> str:
    """Write a whole lake file so that readers see the old content or the new one, never a part."""
    fs, path = filesystem(url)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    if is_local(fs):
        tmp = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    else:
        fs.pipe_file(path, data)
    return url


def remove_lake_file(url: str) -> bool:
    """Remove a lake file if it exists; True when something was removed. A folder there is no such file: it is left
    (a manifest path naming a folder of the delivery, whose files an earlier reception archived under it)."""
    fs, path = filesystem(url)
    try:
        fs.rm_file(path)
        return True
    except (FileNotFoundError, IsADirectoryError):
        return False


def remove_empty_folders(url: str) -> None:
    """Remove the empty folders under a lake folder (not the folder itself), deepest first. Object storage has
    none to remove: a flat namespace's folders end with their last file (and adlfs' ``rmdir`` removes a
    container), so only a local lake is pruned."""
    fs, path = filesystem(url)
    if not is_local(fs) or not os.path.isdir(path):
        return
    for folder, _, _ in os.walk(path, topdown=False):
        if os.path.normpath(folder) != os.path.normpath(path):
            try:
                os.rmdir(folder)
            except OSError:  # not empty
                pass


def list_lake_files(url: str, suffix: str = "") -> list[str]:
    """Files directly under a lake folder (URLs, sorted), optionally only those ending with ``suffix``."""
    return list(lake_file_versions(url, suffix))


def lake_file_versions(url: str, suffix: str = "") -> dict[str, str]:
    """Files directly under a lake folder (URLs, sorted) with a version stamp (size and ETag, or modification
    time on a local lake) that changes when a file is rewritten: what a cache of their contents is keyed on."""
    fs, path = fresh_filesystem(url)
    try:
        children = fs.ls(path, detail=True)
    except FileNotFoundError:
        return {}
    out = {}
    for c in sorted((c for c in children if c.get("type") == "file"), key=lambda c: c["name"]):
        name = posixpath.basename(c["name"].rstrip("/"))
        if name.endswith(suffix):
            out[join(url, name)] = file_version(c)
    return out


@dataclass(frozen=True)
class ValueRange:
    """What one column of a Parquet folder holds, from its footers: the least and greatest value as stored (an
    integer; a date's days since 1970, which also holds dates no Python date can, year 0 or 10000), None when it
    holds no value, what kind of value (``DATE`` or ``INT``) and whether it holds nulls."""

    low: int | None
    high: int | None
    nulls: bool
    kind: str | None = None

    def meets(self, other: "ValueRange") -> bool:
        """Whether a value of this column can equal one of ``other`` (a null meets a null, as the key hashes do)."""
        if self.nulls and other.nulls:
            return True
        if self.low is None or other.low is None:
            return False
        if self.kind != other.kind:  # a column typed otherwise by an earlier version: its values are not comparable
            return True
        return self.low <= other.high and other.low <= self.high


@dataclass(frozen=True)
class ParquetSummary:
    """A Parquet folder's rows, and the value range of its date and integer columns (SPEC §5 partitions), read
    from the files' footers with no data page: ``ranges`` lacks a column whose statistics some file does not
    give; ``columns`` names every column the files have."""

    rows: int
    columns: frozenset[str]
    ranges: dict[str, ValueRange]

    def renamed(self, columns: dict[str, str]) -> dict[str, ValueRange]:
        """The ranges of ``columns`` (a column -> the name to give its range) that the footers give."""
        return {name: self.ranges[column] for column, name in columns.items() if column in self.ranges}


# Parquet's statistics compare these as numbers (dates are days): strings, whose statistics a writer may truncate,
# and floating-point numbers (NaN) are left out.
_RANGED = {("INT32", "NONE"): "INT", ("INT32", "INT"): "INT", ("INT32", "DATE"): "DATE", ("INT64", "NONE"): "INT",
           ("INT64", "INT"): "INT"}


def parquet_summary(url: str) -> ParquetSummary:
    """Rows and column value ranges of the Parquet files under a lake folder, from their footers."""
    import pyarrow.parquet as pq

    fs, path = fresh_filesystem(url)
    if not fs.isdir(path):
        return ParquetSummary(0, frozenset(), {})
    rows, ranges, unknown, files = 0, {}, set(), []
    for name in fs.find(path):
        if not name.endswith(".parquet"):
            continue
        with fs.open(name, "rb") as handle:
            metadata = pq.ParquetFile(handle).metadata
        rows += metadata.num_rows
        schema = metadata.schema
        names = [schema.column(j).path for j in range(metadata.num_columns)]
        files.append((metadata.num_rows, set(names)))
        for j, column in enumerate(names):
            logical = schema.column(j).logical_type
            kind = _RANGED.get((schema.column(j).physical_type, logical.type))
            if kind is None or '"isSigned":false' in logical.to_json().replace(" ", ""):
                unknown.add(column)
            for i in range(metadata.num_row_groups):
                chunk = metadata.row_group(i).column(j)
                _widen(ranges, unknown, column, chunk.statistics, metadata.row_group(i).num_rows, kind)
    columns = frozenset(c for _, names in files for c in names)
    for file_rows, names in files:  # a file without a column gives nulls in it when the folder is read
        for column in columns - names if file_rows else ():
            _widen(ranges, unknown, column, None, 0, absent=file_rows)
    return ParquetSummary(rows, columns, {c: r for c, r in ranges.items() if c not in unknown})


def _widen(ranges: dict[str, ValueRange], unknown: set[str], column: str, stats, rows: int,
           kind: str | None = None, absent: int = 0) -> None:
    """Add one column chunk's statistics to ``ranges`` (a chunk without them makes the column's range unknown);
    ``absent``: rows of a file without the column, nulls when read."""
    if absent:
        seen = ranges.get(column)
        ranges[column] = ValueRange(seen.low, seen.high, True, seen.kind) if seen else ValueRange(None, None, True)
        return
    if column in unknown or rows == 0:
        return
    if stats is None or not stats.has_null_count:
        unknown.add(column)
        return
    nulls = stats.null_count > 0
    if stats.has_min_max:
        low, high = stats.min_raw, stats.max_raw  # ``min`` makes a date a Python date, and fails on year 0
    elif stats.null_count == rows:
        low = high = None
    else:
        unknown.add(column)
        return
    seen = ranges.get(column)
    if seen is not None:
        if seen.kind not in (None, kind):  # files of one folder typing the column otherwise
            unknown.add(column)
            return
        low = seen.low if low is None else low if seen.low is None else min(low, seen.low)
        high = seen.high if high is None else high if seen.high is None else max(high, seen.high)
        nulls = nulls or seen.nulls
    ranges[column] = ValueRange(low, high, nulls, kind if low is not None or seen is None else seen.kind)


def walk_lake_files(url: str) -> list[str]:
    """Every file under a lake folder, as paths relative to it (``/``-separated, sorted)."""
    fs, path = fresh_filesystem(url)
    if not fs.isdir(path):
        return []
    root = path.rstrip("/") + "/"
    return sorted(p[len(root):] if p.startswith(root) else p for p in fs.find(path))


def move_files(fs: fsspec.AbstractFileSystem, src: str, dst: str) -> None:
    """Move a folder of object storage file by file, then remove the source: fsspec's ``mv`` copies the folder
    itself too, as a blob, which a flat namespace does not have (the move failed there)."""
    for path in fs.find(src):
        fs.cp_file(path, dst + path[len(src):])
    fs.rm(src, recursive=True)


def remove_lake_tree(url: str) -> None:
    """Remove a folder of the lake (or of the staging area) and everything under it; absent is fine."""
    fs, path = filesystem(url)
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass
