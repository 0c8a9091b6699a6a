"""The CNAM delivery manifest (SPEC §2)."""
from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import asdict, dataclass, field
from typing import Callable

from ..patterns import NO_EQUIVALENT, SUPPORTED, UnsupportedDirective, directives, iso_day, spark_pattern
from ..problems import together

DELIVERY_ID = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})(_[A-Za-z0-9]+)?")
DELIVERY_ID_FORM = "YYYY-MM-DD[_suffix] with a calendar date"
MANIFEST = "manifest.json"


class ManifestError(ValueError):
    """A manifest that cannot be read: the delivery is reported, never half-processed."""


@dataclass(frozen=True)
class Format:
    delimiter: str = ";"
    encoding: str = "utf-8"
    header: bool = True
    null_value: str = ""
    decimal: str = "."
    date_format: str = "default"

    @property
    def quote(self) -> str:
        """The quote character of the delivered CSV: SPEC §2 declares none, so RFC 4180's double quote (a quote
        inside a quoted value is doubled). Not a manifest field, so that the manifest format stays the SPEC's."""
        return '"'


@dataclass(frozen=True)
class DeliveredFile:
    path: str
    rows: int
    sha256: str
    bytes: int

    @property
    def gzip(self) -> bool:
        """Whether the file is gzip: Spark (Hadoop's codecs) decompresses a ``.gz`` file whatever the case."""
        return self.path.lower().endswith(".gz")


@dataclass(frozen=True)
class DeliveredTable:
    table: str  # the delivered name (T_MCO23B)
    files: tuple[DeliveredFile, ...]
    mode: str | None = None  # None: the domain default


@dataclass(frozen=True)
class Manifest:
    delivery_id: str
    tables: tuple[DeliveredTable, ...]
    producer: str = "CNAM"
    created_at: str = ""
    format: Format = field(default_factory=Format)

    def to_json(self) -> str:
        data = {
            "delivery_id": self.delivery_id,
            "producer": self.producer,
            "created_at": self.created_at,
            "format": asdict(self.format),
            "tables": [
                {"table": t.table, **({"mode": t.mode} if t.mode else {}),
                 "files": [asdict(f) for f in t.files]}
                for t in self.tables
            ],
        }
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def manifest_fingerprint(manifest: Manifest) -> str:
    """A short hash of the manifest as read (not its bytes, so reformatting is no change): what the sensor's
    cursor, its run keys and the reception mark compare."""
    return hashlib.sha256(manifest.to_json().encode()).hexdigest()[:16]


def delivery_order(delivery_id: str) -> tuple:
    """Sort key of delivery ids: by date, the day's first delivery (no suffix) before its suffixed ones, and the
    suffixes' digit runs by value, so that ``_10`` comes after ``_9`` (as strings it came first, and an earlier
    full delivery of the day would have replaced the later one). Two ids with equal runs (``_2`` and ``_02``) are
    told apart by the id itself, so that the order is total: no delivery ties with another (a tie left their order
    to the listing of the reports, and ``CurrentState.plan`` dropped the other one)."""
    day, _, suffix = delivery_id.partition("_")
    runs = re.findall(r"[0-9]+|[^0-9]+", suffix)
    return day, tuple((0, int(r), "") if r.isdigit() else (1, 0, r) for r in runs), delivery_id


def valid_delivery_id(value: str) -> bool:
    """YYYY-MM-DD[_suffix], ASCII digits, a real calendar date and nothing more: the id names a landing folder
    and a partition, so "2024-01-15\\n" or "2024-02-30" must be refused, not turned into a folder."""
    match = DELIVERY_ID.fullmatch(value) if isinstance(value, str) else None
    return match is not None and iso_day(match.group(1)) is not None


SPARK_CODECS = (".bz2", ".deflate", ".lz4", ".snappy", ".zst")  # Hadoop's codecs besides gzip, matched in any case
ENCODINGS = ("utf-8", "utf8", "latin-1", "latin1", "iso-8859-1")


def parse_format(data: dict) -> Format:
    """The manifest's ``format``, every field type-checked: a value Python and Spark would read differently
    (``"header": "false"``, truthy here, false for Spark) or one that would fail only in the middle of curation
    (a ``date_format`` Spark cannot follow) is a ManifestError naming the field and its value (every such field)."""
    problems: list[str] = []
    unknown = set(data) - set(Format.__dataclass_fields__)
    if unknown:
        problems.append(f"manifest format has unknown keys: {sorted(unknown)}")
    given = {}
    for name, value in data.items():
        expected = bool if name == "header" else str
        if name in unknown:
            continue
        if not isinstance(value, expected):
            what = "a JSON boolean (true or false)" if expected is bool else "a JSON string"
            problems.append(f"manifest format {name} must be {what}, not {json.dumps(value)}")
        else:
            given[name] = value
    fmt = Format(**given)
    if fmt.encoding.lower().replace("_", "-") not in ENCODINGS:
        problems.append(f"manifest format encoding {fmt.encoding!r} is not utf-8 or latin-1")
    if len(fmt.delimiter) != 1 or fmt.delimiter in ('"', "\n", "\r") or not fmt.delimiter.isascii():
        problems.append(f"manifest format delimiter {fmt.delimiter!r} must be one ASCII character, not a quote "
                        "or a line break")
    elif len(fmt.decimal) != 1 or fmt.decimal in (fmt.delimiter, '"'):
        problems.append(f"manifest format decimal {fmt.decimal!r} must be one character, other than the delimiter "
                        "and the quote")
    if "\n" in fmt.null_value or "\r" in fmt.null_value:
        problems.append(f"manifest format null_value {fmt.null_value!r} must not hold a line break")
    elif len(fmt.delimiter) == 1 and fmt.delimiter in fmt.null_value:
        problems.append(f"manifest format null_value {fmt.null_value!r} must not hold the delimiter: no value can "
                        "be it")
    if fmt.date_format not in ("", "default"):
        try:
            spark_pattern(fmt.date_format)
        except UnsupportedDirective as exc:
            hint = (f"; use {' '.join(SUPPORTED)} (e.g. \"%d/%m/%Y\"), or \"default\" for ISO dates"
                    if exc.why == NO_EQUIVALENT else "")
            problems.append(f"manifest format date_format {fmt.date_format!r}: {exc.token} {exc.why}{hint}")
        else:
            if not directives(fmt.date_format):
                problems.append(f"manifest format date_format {fmt.date_format!r} has no strftime directive: give "
                                "a pattern such as \"%d/%m/%Y\", or \"default\" for ISO dates")
    if problems:
        raise ManifestError(together(problems))
    return fmt


def _count(entry: dict, key: str) -> int:
    """A file's ``rows`` or ``bytes``: a whole number, as JSON writes it; ``int()`` alone would take 12.7 for 12 rows
    (or ``true`` for 1), and the row_count check would then pass a count the manifest does not state."""
    value = entry[key]
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())  # not NaN nor Infinity
    if isinstance(value, bool) or not whole or value < 0:
        raise ManifestError(f"file {entry.get('path')!r}: {key} must be a whole number of at least 0, not "
                            f"{json.dumps(value)}")
    return int(value)


def _table_name(i: int, name) -> str:
    """A delivered table's name: it also names the table's report fragments (``report.fragment_path``), so a name
    that is a path (``../../x``) would have them written outside the lake."""
    if not isinstance(name, str) or not name:
        raise ManifestError(f"manifest table #{i + 1}: table must be a non-empty JSON string, not {json.dumps(name)}")
    if name in (".", "..") or any(c in name for c in "/\\") or not name.isprintable():
        raise ManifestError(f"manifest table #{i + 1}: table {name!r} must be a table name, not a path")
    if len(name.encode()) > MAX_NAME_BYTES:  # it names the table's archive folder and report fragments
        raise ManifestError(f"manifest table #{i + 1}: table {name[:40]!r}... is longer than {MAX_NAME_BYTES} bytes")
    return name


MAX_NAME_BYTES = 200  # a file system's name holds 255 bytes; the lake adds suffixes (".json", staging marks)
FILE_KEYS = ("path", "rows", "sha256", "bytes")
TABLE_KEYS = ("table", "mode", "files")
MANIFEST_KEYS = ("delivery_id", "producer", "created_at", "format", "tables")


def _unknown_keys(entry: dict, known: tuple[str, ...], where: str, problems: list[str]) -> None:
    """A key the contract does not name is a problem: a misspelt one (``Mode``, ``fromat``) would be read as absent,
    its default taken instead (a table meant to be added would replace the state)."""
    unknown = sorted(k for k in entry if k not in known)
    if unknown:
        problems.append(f"{where} has unknown keys: {unknown} (known: {', '.join(known)})")


def _file(table: str, j: int, entry: dict, problems: list[str]) -> DeliveredFile | None:
    """One file entry, or None with every problem it has added to ``problems`` (a missing key named, not Python's
    ``KeyError('sha256')``, and the other keys' problems told with it, since CNAM mends them all in one round)."""
    if not isinstance(entry, dict):
        problems.append(f"file #{j + 1} of table {table} must be a JSON object, not {json.dumps(entry)[:40]}")
        return None
    told = len(problems)
    missing = [k for k in FILE_KEYS if k not in entry]
    if missing:
        problems.append(f"file #{j + 1} of table {table}: missing {', '.join(missing)}")
    _unknown_keys(entry, FILE_KEYS, f"file #{j + 1} of table {table}", problems)

    def checked(key: str, check: Callable, *args):
        """The key's value as ``check`` reads it; None when the key is missing (told above) or its value is wrong."""
        if key not in entry:
            return None
        try:
            return check(*args)
        except ManifestError as exc:
            problems.append(str(exc))
            return None

    path = checked("path", _path, table, j, entry.get("path"))
    rows, size = checked("rows", _count, entry, "rows"), checked("bytes", _count, entry, "bytes")
    sha256 = checked("sha256", _sha256, entry)
    return DeliveredFile(path, rows, sha256, size) if len(problems) == told else None


def _path(table: str, j: int, path) -> str:
    """A file's path inside the delivery folder, naming a file (``""``, ``.`` or ``dir/`` name a folder: its
    archive would be the lake's folder of the delivery, or one of its sub-folders)."""
    if not isinstance(path, str):
        raise ManifestError(f"file #{j + 1} of table {table}: path must be a JSON string, not {json.dumps(path)}")
    if path.startswith("/") or ".." in path.split("/"):
        raise ManifestError(f"file path {path!r} must stay inside the delivery folder")
    if not path.isprintable():  # a NUL byte is refused by every file system call, a line break breaks the reports
        raise ManifestError(f"file path {path!r} must not hold control characters")
    if path.split("/")[-1] in ("", "."):
        raise ManifestError(f"file path {path!r} must name a file inside the delivery folder, not a folder")
    if posixpath.normpath(path) == MANIFEST:  # its archive would overwrite the archived manifest, or the other way
        raise ManifestError(f"file path {path!r} names the manifest itself: a data file needs a name of its own")
    name = path.split("/")[-1]
    if name[0] in "_." or ":" in path or name.lower().endswith(SPARK_CODECS):
        # Spark's file listing skips hidden names (the archived rows would be read as none), Hadoop takes a colon
        # for a URI's scheme, and decompresses these suffixes where SPEC §2 declares plain text or gzip
        raise ManifestError(f"file path {path!r}: Spark cannot read it as delivered; a file name must not start "
                            f"with '_' or '.', hold ':' or end with {', '.join(SPARK_CODECS)} (only .gz compression)")
    return path


def _sha256(entry: dict) -> str:
    sha256 = entry["sha256"]
    if not isinstance(sha256, str):
        raise ManifestError(f"file {entry.get('path')!r}: sha256 must be a JSON string, not {json.dumps(sha256)}")
    return sha256.lower()


def _table(i: int, entry: dict, problems: list[str]) -> DeliveredTable | None:
    """One table entry, or None with its files' problems added to ``problems`` (its own problem is raised)."""
    if not isinstance(entry, dict):
        raise ManifestError(f"manifest table #{i + 1} must be a JSON object, not {json.dumps(entry)[:40]}")
    if "table" not in entry:
        raise ManifestError(f"manifest table #{i + 1}: missing table"
                            + ("" if "files" in entry else ", files"))
    name = _table_name(i, entry["table"])
    _unknown_keys(entry, TABLE_KEYS, f"table {name}", problems)
    mode = entry.get("mode")
    if mode not in (None, "full", "incremental"):
        problems.append(f"table {name}: mode {mode!r} is not full or incremental")
    if "files" not in entry:
        raise ManifestError(f"table {name}: missing files")
    listed = entry["files"]
    if not isinstance(listed, list):
        raise ManifestError(f"table {name}: files must be a JSON list, not {json.dumps(listed)[:40]}")
    if not listed:
        raise ManifestError(f"table {name} lists no files")
    files, told = [], len(problems)
    for j, f in enumerate(listed):
        try:
            delivered = _file(name, j, f, problems)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problems.append(f"file #{j + 1} of table {name} is malformed ({exc!r})")
            continue
        if delivered is not None:
            files.append(delivered)
    return DeliveredTable(name, tuple(files), mode) if len(problems) == told else None


def _object(pairs: list[tuple[str, object]], twice: list[str]) -> dict:
    """A JSON object, its keys given twice noted in ``twice``: JSON keeps the last, so a second ``tables`` list
    would have made the files of the first unlisted without a word."""
    seen: dict = {}
    for key, value in pairs:
        if key in seen and repr(key) not in twice:
            twice.append(repr(key))
        seen[key] = value
    return seen


def parse_manifest(text: str | bytes, expected_id: str | None = None) -> Manifest:
    """Decode and validate a manifest. Its problems are one ManifestError, in one line that says what to fix: those
    of every table and file, not only the first, since each round of mending is CNAM's, and a delivery sent again."""
    twice: list[str] = []
    try:
        data = json.loads(text, object_pairs_hook=lambda pairs: _object(pairs, twice))
    except ValueError as exc:
        raise ManifestError(f"manifest.json is not valid JSON ({exc})") from exc
    except RecursionError as exc:  # Python's parser recurses into arrays and objects
        raise ManifestError("manifest.json is not valid JSON (nested too deeply)") from exc
    if not isinstance(data, dict):
        raise ManifestError("manifest.json must hold a JSON object")
    problems: list[str] = [f"manifest.json names {k} twice (JSON keeps the last one only)" for k in twice]
    _unknown_keys(data, MANIFEST_KEYS, "manifest", problems)
    for key in ("producer", "created_at"):
        if data.get(key) is not None and not isinstance(data[key], str):
            problems.append(f"manifest {key} must be a JSON string, not {json.dumps(data[key])[:40]}")
    delivery_id = data.get("delivery_id")
    if not isinstance(delivery_id, str) or not valid_delivery_id(delivery_id):
        problems.append(f"manifest delivery_id {delivery_id!r} is not {DELIVERY_ID_FORM}")
    elif expected_id is not None and delivery_id != expected_id:
        problems.append(f"manifest delivery_id {delivery_id!r} does not match its folder {expected_id!r}")
    fmt = Format()
    fmt_data = {} if data.get("format") is None else data["format"]  # optional (SPEC §2); null is its absence
    try:
        if not isinstance(fmt_data, dict):
            raise ManifestError("manifest format must be an object")
        fmt = parse_format(fmt_data)
    except ManifestError as exc:
        problems.append(str(exc))
    tables = []
    raw_tables = data.get("tables")
    if not isinstance(raw_tables, list) or not raw_tables:
        problems.append("manifest lists no tables")
        raw_tables = []
    for i, t in enumerate(raw_tables):
        try:
            table = _table(i, t, problems)
        except ManifestError as exc:
            problems.append(str(exc))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problems.append(f"manifest table #{i + 1} is malformed ({exc!r})")
        else:
            if table is not None:
                tables.append(table)
    seen: dict[str, str] = {}
    for t in tables:  # names are resolved whatever their case: ir_ben_r beside IR_BEN_R was curated twice
        if t.table.upper() in seen:
            twice = "" if seen[t.table.upper()] == t.table else f" (as {seen[t.table.upper()]} and {t.table})"
            problems.append(f"manifest lists table {t.table} twice{twice}")
        seen[t.table.upper()] = t.table
    listed: dict[str, str] = {}
    for t in tables:  # one file listed twice was archived, counted and curated twice: rows doubled, keys duplicated
        for f in t.files:
            same = posixpath.normpath(f.path)  # ./a.csv and x//a.csv name a.csv and x/a.csv
            if same in listed:
                where = f"table {t.table}" if listed[same] == t.table else f"tables {listed[same]} and {t.table}"
                problems.append(f"manifest lists file {f.path} twice ({where})")
            listed[same] = t.table
    if problems:
        raise ManifestError(together(problems))
    return Manifest(delivery_id, tuple(tables), str(data.get("producer") or "CNAM"),
                    str(data.get("created_at") or ""), fmt)
