"""Research project requests (SPEC §3): ``$SNDS_PROJECTS/<PROJECT_ID>.yaml`` and its identifiers CSV.

A request is validated completely before anything runs, with one-line messages that say what to fix, so that
a bad request is refused by the sensor and the CLI instead of failing half-way through an extraction.
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Callable

import yaml

from .. import domain
from ..catalog import Catalog
from ..config import Settings
from ..patterns import iso_day
from ..problems import together

PROJECT_ID = re.compile(r"^[a-z0-9_-]+$")
IDENTIFIER_COLUMNS = ("BEN_IDT_ANO", "BEN_NIR_PSA", "BEN_RNG_GEM", "NIR_ANO_17")
TOP_LEVEL_KEYS = {"id", "title", "period", "tables", "columns", "cohort"}
COHORT_KEYS = {"identifiers", "criteria"}
CRITERIA_KEYS = {"any_of", "all_of", "age", "sex"}
SEX_CODES = (0, 1, 2, 9)  # IR_SEX_V: 0 "inconnu ou personne morale", 9 "valeur inconnue"
MAX_AGE = 150  # years: a bound past any age is a mistake (leave the bound out instead), and a huge one fails in Spark
MAX_RANK = 2**31 - 1  # BEN_RNG_GEM is matched as a 32-bit integer


class _Loader(yaml.SafeLoader):
    """YAML without implicit timestamps (dates stay text and are validated here with a clear message), without
    repeated keys, which YAML resolves silently to the last one (a second ``any_of`` dropping the first), and whose
    aliases expand to at most ``MAX_VALUES`` values: aliases of aliases grow without bound once written out (a
    request of 546 bytes took 6 GB to be told wrong)."""

    def construct_document(self, node: yaml.Node):
        if _expanded_size(node, {}) > MAX_VALUES:
            raise _TooLarge(f"the request holds more than {MAX_VALUES:,} values once its aliases (*name) are expanded")
        return super().construct_document(node)


class _TooLarge(ValueError):
    """A request whose aliases expand past ``MAX_VALUES``."""


MAX_VALUES = 100_000


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many nodes ``node`` stands for, each alias counted as what it repeats (a node shared by aliases is
    sized once; one that holds itself counts once)."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict:
    """A mapping whose keys are written once each; the keys a merge (``<<: *anchor``) brings may be overridden."""
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        try:
            repeated = key in seen
        except TypeError:  # a list or mapping as a key: construct_mapping refuses it in YAML's own words
            continue
        if repeated:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))
_Loader.add_constructor("tag:yaml.org,2002:map", _mapping)


class RequestError(ValueError):
    """A request that cannot be served as written; the message names the project and what to fix."""


class _Problem(Exception):
    """The problems (its args) of a part of a request, gathered with the others into one ``RequestError``."""


@dataclass(frozen=True)
class Criterion:
    """One ciblage item: ``kind`` (diagnosis, act, drug, ald) with its code list."""

    kind: str
    codes: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.kind}:{','.join(self.codes)}"


@dataclass(frozen=True)
class Criteria:
    any_of: tuple[Criterion, ...] = ()
    all_of: tuple[Criterion, ...] = ()
    age_min: int | None = None
    age_max: int | None = None
    sex: tuple[int, ...] | None = None

    @property
    def items(self) -> list[tuple[str, Criterion]]:
        """Every item with a stable name (``any_of[0]``...), the name the cohort reports matches by."""
        return [(f"any_of[{i}]", c) for i, c in enumerate(self.any_of)] + \
               [(f"all_of[{i}]", c) for i, c in enumerate(self.all_of)]


@dataclass(frozen=True)
class Identifier:
    """One row of the identifiers CSV (``line`` is its line number in the file, header = line 1)."""

    line: int
    ben_idt_ano: str | None = None
    ben_nir_psa: str | None = None
    ben_rng_gem: int | None = None
    nir_ano_17: str | None = None

    @property
    def method(self) -> str:
        """The most specific non-empty value resolves the row (SPEC §3)."""
        if self.ben_idt_ano:
            return "BEN_IDT_ANO"
        if self.ben_nir_psa and self.ben_rng_gem is not None:
            return "BEN_NIR_PSA+BEN_RNG_GEM"
        if self.ben_nir_psa:
            return "BEN_NIR_PSA"
        if self.nir_ano_17:
            return "NIR_ANO_17"
        return "none"


@dataclass
class ProjectRequest:
    id: str
    title: str
    period_start: date
    period_end: date
    tables: list[str]
    columns: dict[str, list[str]]
    identifiers_file: Path | None
    criteria: Criteria | None
    path: Path
    identifiers: list[Identifier] = field(default_factory=list, repr=False)

    @property
    def fingerprint(self) -> str:
        return request_fingerprint(self.path)


def request_path(settings: Settings, project_id: str) -> Path:
    return Path(settings.projects) / f"{project_id}.yaml"


def list_requests(settings: Settings) -> list[tuple[str, str]]:
    """(project id, content fingerprint) of every request file, for the sensor to notice new or changed ones.

    The fingerprint covers the YAML and the identifiers CSV it names, so editing either re-runs the project.
    Files whose name is not a valid project id are listed too: loading them reports the problem.
    """
    folder = Path(settings.projects)
    if not folder.is_dir():
        return []
    return [(p.stem, request_fingerprint(p)) for p in sorted(folder.glob("*.yaml")) if p.is_file()]


def _contents(path: Path) -> bytes | None:
    """A file's bytes, None when it is gone or cannot be read: one request file removed while the folder is
    listed, or unreadable to the hub, failed the project sensor's tick for every project (loading it says why)."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def request_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    raw = _contents(path)
    if raw is None:
        return "unreadable"
    digest.update(raw)
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
        name = ((data or {}).get("cohort") or {}).get("identifiers") if isinstance(data, dict) else None
    except (yaml.YAMLError, UnicodeDecodeError, AttributeError):
        name = None
    if isinstance(name, str):
        ids = path.parent / name
        listed = _contents(ids)
        digest.update(b"\0" + (b"<missing>" if listed is None else listed))
    return digest.hexdigest()[:16]


def load_request(settings: Settings, catalog: Catalog, project_id: str) -> ProjectRequest:
    """Read and validate ``$SNDS_PROJECTS/<project_id>.yaml`` (and its identifiers CSV)."""
    if not PROJECT_ID.fullmatch(project_id or ""):
        raise RequestError(f"bad project id {project_id!r}: use lower-case letters, digits, '_' and '-' only")
    path = request_path(settings, project_id)
    if not path.is_file():
        raise RequestError(f"project {project_id}: no request file {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RequestError(f"project {project_id}: cannot read {path} ({exc})") from exc
    return parse_request(text, catalog, path, project_id)


def parse_request(text: str, catalog: Catalog, path: Path, project_id: str | None = None) -> ProjectRequest:
    """Validate a request's YAML text; ``path`` locates the identifiers CSV (beside the YAML)."""
    pid = project_id or path.stem
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError as exc:  # PyYAML's composer recurses into nested collections
        raise RequestError(f"project {pid}: YAML nested too deeply") from exc
    except _TooLarge as exc:
        raise RequestError(f"project {pid}: {exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RequestError(f"project {pid}: YAML syntax error{where}: {problem}") from exc

    problems: list[str] = []

    def told(*messages: str) -> RequestError:
        return RequestError(f"project {pid}: {together(list(messages))}")

    def part(check: Callable, *args):
        return _checked(problems, check, *args)

    if not isinstance(data, dict):
        raise told("the request must be a YAML mapping with id, period, tables and cohort")
    unknown = sorted(set(map(str, data)) - TOP_LEVEL_KEYS)
    if unknown:
        problems.append(f"unknown key {unknown[0]!r} (expected: {', '.join(sorted(TOP_LEVEL_KEYS))})")
    rid = data.get("id")
    if rid is None:
        problems.append("missing 'id'")
    elif isinstance(rid, (int, float)) and not isinstance(rid, bool) and PROJECT_ID.fullmatch(str(rid)):
        problems.append(f"id {rid!r} is read as a number: write it as text, as the file is named: id: '{pid}'")
    elif not isinstance(rid, str) or not PROJECT_ID.fullmatch(rid):
        problems.append(f"bad id {rid!r}: use lower-case letters, digits, '_' and '-' only")
    elif rid != pid:
        problems.append(f"id {rid!r} differs from the file name {path.name!r}: name the file {rid}.yaml")
    title = data.get("title") or str(rid)
    if not isinstance(title, str):
        problems.append("'title' must be text")

    period = part(_period, data.get("period"))
    tables = part(_tables, data.get("tables"), catalog)
    columns = part(_columns, data.get("columns"), tables, catalog) if tables is not None else None
    identifiers_file, identifiers, criteria = None, [], None
    cohort = data.get("cohort")
    if not isinstance(cohort, dict) or not cohort:
        problems.append("missing 'cohort': give identifiers (a CSV beside the request) and/or criteria")
        cohort = {}
    unknown = sorted(set(map(str, cohort)) - COHORT_KEYS)
    if unknown:
        problems.append(f"unknown cohort key {unknown[0]!r} (expected: identifiers, criteria)")
    if cohort.get("identifiers") is not None:
        identifiers_file, identifiers = part(_identifiers, cohort["identifiers"], path.parent) or (None, [])
    if cohort.get("criteria") is not None:
        criteria = part(_criteria, cohort["criteria"])
    elif cohort and cohort.get("identifiers") is None:
        problems.append("the cohort needs identifiers or criteria")
    if problems:
        raise told(*problems)
    start, end = period
    return ProjectRequest(rid, title, start, end, tables, columns, identifiers_file, criteria, path, identifiers)


def _checked(problems: list[str], check: Callable, *args):
    """``check``'s value, or None with its problems added to ``problems``: every part of a request is checked,
    and its problems told together, so that one edit mends them all."""
    try:
        return check(*args, _Problem)
    except _Problem as problem:
        problems.extend(problem.args)
        return None


def _date(value, what: str, fail) -> date:
    """A day written YYYY-MM-DD (YAML gives it as a date): not 20220101 nor a date-time, which Python would take."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    day = iso_day(value.strip()) if isinstance(value, str) else None
    if day is None:
        raise fail(f"bad period {what} {value!r}: use YYYY-MM-DD")
    return day


def _period(value, fail) -> tuple[date, date]:
    if not isinstance(value, dict) or "start" not in value or "end" not in value:
        raise fail("missing period: give period: {start: YYYY-MM-DD, end: YYYY-MM-DD}")
    extra = sorted(set(map(str, value)) - {"start", "end"})
    if extra:
        raise fail(f"unknown period key {extra[0]!r} (expected: start, end)")
    start, end = _date(value["start"], "start", fail), _date(value["end"], "end", fail)
    if start > end:
        raise fail(f"bad period: start {start} is after end {end}")
    if start <= domain.UNKNOWN_DATE:
        raise fail(f"bad period: start {start} is not a real date")
    return start, end


def _tables(value, catalog: Catalog, fail) -> list[str]:
    """The families listed, each once; every name that is not one is told, not only the first."""
    if not isinstance(value, list) or not value:
        raise fail("'tables' must list at least one table family (e.g. [IR_BEN_R, ER_PRS_F])")
    out: list[str] = []
    problems: list[str] = []
    for name in value:
        problem = _table_problem(name, catalog)
        if problem:
            problems.append(problem)
        elif name not in out:
            out.append(name)
    if problems:
        raise fail(*problems)
    return out


def _table_problem(name, catalog: Catalog) -> str | None:
    if not isinstance(name, str):
        return f"bad table name {name!r}"
    if name not in catalog:
        try:
            table = catalog.resolve(name)[0]
        except KeyError:
            return f"unknown table {name!r}: not in the catalog"
        if table.is_yearly:
            return f"table {name!r} is one year of family {table.name}: list the family {table.name}"
        return f"unknown table {name!r}: write its family name as the catalog does, {table.name}"
    try:
        domain.patient_path(catalog, name)
    except LookupError:
        return f"table {name} has no path to a patient identifier: it cannot be cut per cohort"
    return None


def _columns(value, tables: list[str], catalog: Catalog, fail) -> dict[str, list[str]]:
    """The columns handed out per family; every family's and column's problem told."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail("'columns' must map a table family to its list of columns")
    out: dict[str, list[str]] = {}
    problems: list[str] = []
    for family, cols in value.items():
        if family not in catalog:
            problems.append(f"unknown table {family!r} in columns")
        elif family not in tables:
            problems.append(f"columns given for {family}, which is not in tables")
        elif not isinstance(cols, list) or not cols:
            problems.append(f"columns of {family} must be a non-empty list")
        else:
            known = catalog[family].by_name
            unknown = [col for col in cols if str(col).upper() not in known]
            problems += [f"unknown column {col!r} in table {family}" for col in unknown]
            out[family] = list(dict.fromkeys(str(col).upper() for col in cols if col not in unknown))
    if problems:
        raise fail(*problems)
    return out


def _criteria(value, fail: type[_Problem]) -> Criteria:
    """The ciblage; every item, the age and the sex filters checked, their problems told together."""
    if not isinstance(value, dict):
        raise fail("'criteria' must be a mapping with any_of, all_of, age, sex")
    problems: list[str] = []

    def part(check: Callable, *args):
        return _checked(problems, check, *args)

    unknown = sorted(set(map(str, value)) - CRITERIA_KEYS)
    if unknown:
        problems.append(f"unknown criterion {unknown[0]!r} (expected: {', '.join(sorted(CRITERIA_KEYS))})")
    items = {}
    for name in ("any_of", "all_of"):
        listed = part(_list, value.get(name), name) or []
        items[name] = tuple(part(_item, v, f"{name}[{i}]") for i, v in enumerate(listed))
    if not items["any_of"] and not items["all_of"]:
        problems.append("criteria need at least one any_of or all_of item (age and sex only filter targeted persons)")
    age = part(_age, value.get("age")) or (None, None)
    sex = part(_sex, value.get("sex"))
    if problems:
        raise fail(*problems)
    return Criteria(items["any_of"], items["all_of"], age[0], age[1], sex)


def _age(age, fail) -> tuple[int | None, int | None]:
    if age is None:
        return None, None
    if not isinstance(age, dict) or not age or set(map(str, age)) - {"min", "max"}:
        raise fail("age must be {min: N, max: N} (either bound may be left out)")
    for bound in ("min", "max"):
        v = age.get(bound)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_AGE):
            raise fail(f"age {bound} must be a whole number of years from 0 to {MAX_AGE}, not {v!r}")
    age_min, age_max = age.get("min"), age.get("max")
    if age_min is not None and age_max is not None and age_min > age_max:
        raise fail(f"age min {age_min} is above age max {age_max}")
    return age_min, age_max


def _sex(sex, fail) -> tuple[int, ...] | None:
    if sex is None:
        return None
    if not isinstance(sex, list) or not sex or any(isinstance(s, bool) or s not in SEX_CODES for s in sex):
        raise fail(f"sex must list codes among {list(SEX_CODES)} (1 male, 2 female, 0 or 9 unknown), not {sex!r}")
    return tuple(sorted(set(sex)))


def _list(value, name: str, fail) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(f"{name} must be a list of criteria")
    return value


def _item(value, where: str, fail) -> Criterion:
    if not isinstance(value, dict) or len(value) != 1:
        raise fail(f"{where}: a criterion is one of {', '.join(domain.CRITERIA)} with its codes, "
                   "e.g. {diagnosis: {icd10: [U071]}}")
    (kind, spec), = value.items()
    if kind not in domain.CRITERIA:
        raise fail(f"{where}: unknown criterion {kind!r} (expected: {', '.join(domain.CRITERIA)})")
    code_key = domain.CRITERIA[kind][0]
    if not isinstance(spec, dict) or set(map(str, spec)) != {code_key}:
        raise fail(f"{where}: {kind} takes {{{code_key}: [codes]}}")
    codes = spec[code_key]
    if not isinstance(codes, list) or not codes:
        raise fail(f"{where}: {kind} needs a non-empty list of {code_key} codes")
    clean = []
    for code in codes:
        if code is None:
            raise fail(f"{where}: an empty item among the {code_key} codes")
        if isinstance(code, int) and not isinstance(code, bool) and (code_key != "cip13" or len(str(code)) != 13):
            # YAML reads a bare 0101 as the octal 65 and 1:20 as 80: only a whole CIP13 is safe unquoted
            raise fail(f"{where}: {code_key} code {code!r} is read as a number: write it as text, quoted")
        text = str(code).strip().upper()
        if not text.replace(".", "") or isinstance(code, (bool, float)) or not re.fullmatch(r"[A-Z0-9.+*-]+", text):
            raise fail(f"{where}: bad {code_key} code {code!r}")
        if code_key == "cip13" and not re.fullmatch(r"[0-9]{13}", text):  # a CIP7, say: it would match nothing
            raise fail(f"{where}: bad cip13 code {code!r}: a CIP13 is 13 digits")
        if "*" in text:  # no SNDS code holds one: a wildcard would silently match nothing
            how = "already prefixes: write E11 for E11*" if _matches_prefix(kind) else "whole codes, without wildcard"
            raise fail(f"{where}: bad {code_key} code {code!r}: {kind} codes are {how}")
        clean.append(text.replace(".", ""))
    return Criterion(kind, tuple(dict.fromkeys(clean)))


def _matches_prefix(kind: str) -> bool:
    return all(source.match == "prefix" for source in domain.CRITERIA[kind][1])


def _identifiers(name, folder: Path, fail) -> tuple[Path, list[Identifier]]:
    if not isinstance(name, str) or not name.strip():
        raise fail("cohort identifiers must name a CSV file beside the request")
    if Path(name).name != name or name in (".", ".."):
        raise fail(f"cohort identifiers {name!r} must be a file name beside the request, without a folder")
    try:
        path = (folder / name).resolve()
        found = path.is_file()
    except (OSError, ValueError) as exc:  # a NUL byte, a name longer than the file system takes
        why = getattr(exc, "strerror", None) or exc
        raise fail(f"cohort identifiers {name[:60]!r} cannot name a file here ({why})") from None
    if not found:
        raise fail(f"missing identifiers file {name} (looked for {path})")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read identifiers file {name} as UTF-8 ({exc})") from None
    return path, parse_identifiers(text, name, fail)


def parse_identifiers(text: str, name: str, fail: Callable[..., Exception]) -> list[Identifier]:
    """Rows of an identifiers CSV (``,`` or ``;``, header row with any of IDENTIFIER_COLUMNS); the problems of
    every row are told (``fail`` takes them all), not only the first."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # lines ended by CR alone too (classic Mac OS exports)
    first = text.split("\n", 1)[0]
    if not first.strip():
        raise fail(f"identifiers file {name} is empty: it needs a header row")
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = [h.strip().upper() for h in next(reader)]
    except csv.Error as exc:
        raise fail(f"identifiers file {name} line 1: not a CSV header ({exc})") from None
    known = [h for h in header if h in IDENTIFIER_COLUMNS]
    if not known:
        raise fail(f"identifiers file {name}: the header names none of {', '.join(IDENTIFIER_COLUMNS)}")
    unknown = [h for h in header if h and h not in IDENTIFIER_COLUMNS]
    if unknown:
        raise fail(f"identifiers file {name}: unknown column {unknown[0]!r} (expected: {', '.join(IDENTIFIER_COLUMNS)})")
    named = [h for h in header if h]  # empty ones, a spreadsheet's columns left blank, are no columns
    twice = sorted({h for h in named if named.count(h) > 1})
    if twice:
        raise fail(f"identifiers file {name}: column {twice[0]} is named twice in the header")
    out: list[Identifier] = []
    problems: list[str] = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader, None)
        except csv.Error as exc:  # a value past the csv module's size limit, from a quote left open
            problems.append(f"identifiers file {name} line {start}: not readable as CSV ({exc}): is a quote left open, "
                            "or a value far too long?")
            break
        if row is None:
            break
        line = reader.line_num
        if not any(v.strip() for v in row):
            continue
        if line > start:  # a quoted value over several lines: an identifier is one line, so a quote was left open
            problems.append(f"identifiers file {name} lines {start}-{line}: one row over {line - start + 1} lines "
                            "(a quote left open?)")
            continue
        if len(row) > len(header):
            problems.append(f"identifiers file {name} line {line}: {len(row)} values for {len(header)} columns")
            continue
        values = {h: (row[i].strip() if i < len(row) else "") or None for i, h in enumerate(header)}
        rank = values.get("BEN_RNG_GEM")
        if rank is not None:
            if not (rank.isascii() and rank.isdigit() and len(rank) <= 10 and int(rank) <= MAX_RANK):
                problems.append(f"identifiers file {name} line {line}: BEN_RNG_GEM {rank!r} is not a rank (a whole "
                                f"number from 0 to {MAX_RANK})")
                continue
            rank = int(rank)
        out.append(Identifier(line, values.get("BEN_IDT_ANO"), values.get("BEN_NIR_PSA"), rank,
                              values.get("NIR_ANO_17")))
    if problems:
        raise fail(*problems)
    return out
