"""The synthetic delivery generator, checked from the files it writes.

Deliveries are read back with csv/gzip/hashlib only and audited against the catalog and the domain model by
``audit`` below, an independent recount of the reception's rules: a clean delivery must pass them all, and a
delivery with defects must fail exactly as its ground truth says.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import pytest

from snds_assets import checks, domain
from snds_assets.catalog import Catalog, locate_nomenclature
from snds_assets.generator import GenerateError, GenerateOptions, generate
from snds_assets.reception.manifest import parse_manifest

DID = "2024-03-01"
UNKNOWN = date(1600, 1, 1)
FIRST = date(1900, 1, 1)


# --- reading a delivery back -----------------------------------------------------------------------------------
@dataclass
class Read:
    """One delivered table as read from its files: header and rows (lists of texts)."""

    name: str
    family: str
    year: int | None
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    rejected: set[int] = field(default_factory=set)

    def col(self, name: str) -> list[str]:
        i = self.header.index(name)
        return [r[i] for r in self.rows]

    def dicts(self) -> list[dict[str, str]]:
        return [dict(zip(self.header, r)) for r in self.rows]


def read_file(path: Path, delimiter: str, encoding: str) -> tuple[list[str], list[list[str]]]:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    reader = csv.reader(io.StringIO(data.decode(encoding), newline=""), delimiter=delimiter)
    header = next(reader)
    return header, list(reader)


def load_manifest(delivery: Path) -> dict:
    return json.loads((delivery / "manifest.json").read_text(encoding="utf-8"))


def read_delivery(delivery: Path, catalog: Catalog) -> dict[str, Read]:
    manifest = load_manifest(delivery)
    fmt = manifest["format"]
    out = {}
    for entry in manifest["tables"]:
        family, year = catalog.resolve(entry["table"])
        t = Read(entry["table"], family.name, year)
        for f in entry["files"]:
            header, rows = read_file(delivery / f["path"], fmt["delimiter"], fmt["encoding"])
            t.header = t.header or header
            t.rows.extend(r[:len(t.header)] for r in rows)
        out[t.name] = t
    return out


def codes_of(folder: Path, name: str, column: str, integer: bool = False, field: str = "",
             width: int | None = None) -> set[str] | None:
    """The codes of a nomenclature column (a bare reference's as curation locates it), as an integer column's
    text would be for an integer field (65.00 is 65); None, as for curation, when no code fits a string field's
    ``width``."""
    paths = sorted(Path(folder).rglob(f"{name}.csv"))
    if not paths:
        return None
    if not column:
        column = locate_nomenclature(folder, (name, column), field).code_column
    reader = csv.reader(io.StringIO(paths[0].read_bytes().decode("utf-8-sig", errors="replace")), delimiter=";")
    header = [h.strip().strip('"').upper() for h in next(reader)]
    if column not in header:
        return None
    i = header.index(column)
    values = {r[i].strip() for r in reader if len(r) > i and r[i].strip()}
    if integer:
        values = {str(int(v.split(".")[0])) for v in values if re.fullmatch(r"-?[0-9]+(\.0+)?", v)}
    if width is not None and not any(len(v) <= width for v in values):
        return None
    return values


def _parser(kind: str, pattern: str):
    if kind == "integer":
        return lambda v: int(v) if re.fullmatch(r"-?\d+", v) else _bad(v)
    if kind == "number":
        return lambda v: float(v) if re.fullmatch(r"-?\d+(\.\d+)?", v) else _bad(v)
    if kind == "boolean":
        return lambda v: v if v in ("0", "1", "true", "false") else _bad(v)
    if kind in ("date", "datetime"):
        return lambda v: datetime.strptime(v, pattern).date()
    if kind == "year":
        return lambda v: date(int(v), 1, 1) if re.fullmatch(r"\d{4}", v) else _bad(v)
    if kind == "yearmonth":
        def yearmonth(v):
            m = re.fullmatch(r"(\d{4})-?(\d{2})", v)
            return date(int(m.group(1)), int(m.group(2)), 1) if m else _bad(v)
        return yearmonth
    return lambda v: v


def _bad(value):
    raise ValueError(value)


def audit(delivery: Path, catalog: Catalog, nomenclatures: Path | None = None) -> dict[tuple[str, str], int]:
    """{(delivered table, rule): failing count} of the reception's rules (plus ``enum``), recounted from the files.

    Rows failing ``type`` or ``not_null`` are rejected and not checked further; file rules count files;
    ``primary_key`` counts the rows beyond the first of each key; foreign keys to a table absent from the
    delivery are not evaluated; a placeholder NIR_ANO_17 is not a foreign-key failure.
    """
    manifest = load_manifest(delivery)
    fmt = manifest["format"]
    delivered_on = date.fromisoformat(manifest["delivery_id"][:10])
    failures: Counter = Counter()
    tables = {}
    for entry in manifest["tables"]:
        family, year = catalog.resolve(entry["table"])
        t = Read(entry["table"], family.name, year)
        for f in entry["files"]:
            data = (delivery / f["path"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != f["sha256"] or len(data) != f["bytes"]:
                failures[(t.name, "checksum")] += 1
            header, rows = read_file(delivery / f["path"], fmt["delimiter"], fmt["encoding"])
            if len(rows) != f["rows"]:
                failures[(t.name, "row_count")] += 1
            if header != list(family.columns_in(year)):
                failures[(t.name, "columns")] += 1
            known = [i for i, h in enumerate(header) if h in family.by_name]
            t.header = [header[i] for i in known]
            t.rows.extend([r[i] for i in known] for r in rows)
        tables[t.name] = t

    codes: dict = {}
    for t in tables.values():
        schema = catalog[t.family]
        n = len(t.rows)
        parsed: dict[str, list] = {}
        bad_type = [False] * n
        for j, name in enumerate(t.header):
            fld = schema.by_name[name]
            kind = domain.effective_type(schema, fld)
            pattern = fld.format if fld.format != "default" else (
                "%Y-%m-%dT%H:%M:%S" if kind == "datetime" else
                ("%Y-%m-%d" if fmt.get("date_format", "default") == "default" else fmt["date_format"]))
            parse, cache, values = _parser(kind, pattern), {}, []
            for i, row in enumerate(t.rows):
                v = row[j]
                if v == "":
                    values.append(None)
                    continue
                if v not in cache:
                    try:
                        cache[v] = parse(v)
                    except ValueError:
                        cache[v] = ValueError
                value = cache[v]
                if value is ValueError:
                    bad_type[i] = True
                    value = None
                values.append(value)
            parsed[name] = values
        required = [t.header.index(c) for c in domain.required_columns(schema, t.year) if c in t.header]
        for i, row in enumerate(t.rows):
            if bad_type[i]:
                failures[(t.name, "type")] += 1
                t.rejected.add(i)
            elif any(row[j] == "" for j in required):
                failures[(t.name, "not_null")] += 1
                t.rejected.add(i)
        good = [i for i in range(n) if i not in t.rejected]
        if schema.primary_key and set(schema.primary_key) <= set(t.header):  # a key not whole that year: unchecked
            idx = [t.header.index(c) for c in schema.primary_key]
            seen = Counter(tuple(t.rows[i][j] for j in idx) for i in good)
            failures[(t.name, "primary_key")] += sum(k - 1 for k in seen.values() if k > 1)
        out_of_range = set()
        for name, values in parsed.items():
            fld = schema.by_name[name]
            kind = domain.effective_type(schema, fld)
            lo, hi = fld.constraints.get("minimum"), fld.constraints.get("maximum")
            min_len = fld.constraints.get("minLength")
            j = t.header.index(name)
            for i in good:
                v = values[i]
                if v is None:
                    continue
                if kind in ("date", "datetime", "year", "yearmonth"):
                    if v != UNKNOWN and not FIRST <= v <= delivered_on:
                        out_of_range.add(i)
                elif kind in ("integer", "number") and ((lo is not None and v < lo) or (hi is not None and v > hi)):
                    # SNDS.md: a regularisation repeats a DCIR line with its quantity (and amounts) negative
                    if not (t.name.startswith("ER_") and re.search(r"_(QTE|QSN|NBR|MNT)", name) and v < 0
                            and (lo is None or -v >= lo) and (hi is None or -v <= hi)):
                        out_of_range.add(i)
                if min_len and len(t.rows[i][j]) < min_len:
                    out_of_range.add(i)
        failures[(t.name, "range")] += len(out_of_range)
        enums = {t.header.index(f.name): {str(e) for e in f.constraints["enum"]}
                 for f in schema.fields if domain.enum_checked(f) and f.name in t.header}
        failures[(t.name, "enum")] += sum(
            1 for i in good if any(t.rows[i][j] not in ("", *e) for j, e in enums.items()))
        if nomenclatures is not None:
            checked = {}
            for f in schema.fields:
                if domain.nomenclature_checked(f) and f.name in t.header:
                    kind = domain.effective_type(schema, f)
                    width = int(f.length) if kind == "string" and f.length and f.length.isdigit() else None
                    key = (f.nomenclature, f.name, kind, width)
                    if key not in codes:
                        codes[key] = codes_of(nomenclatures, *f.nomenclature, integer=kind == "integer", field=f.name,
                                              width=width)
                    if codes[key] is not None:
                        checked[t.header.index(f.name)] = codes[key]
            failures[(t.name, "nomenclature")] += sum(
                1 for i in good if any(t.rows[i][j] != "" and t.rows[i][j] not in s for j, s in checked.items()))

    by_family = defaultdict(list)
    for t in tables.values():
        by_family[t.family].append(t)
    for t in tables.values():
        for link in domain.check_links(catalog, catalog[t.family]):
            parents = [p for p in by_family.get(link.parent, []) if not link.same_year or p.year == t.year]
            if not parents or not all(c in t.header for c in link.columns):
                continue
            keys = set()
            for p in parents:
                idx = [p.header.index(c) for c in link.parent_columns]
                keys.update(tuple(p.rows[i][j] for j in idx) for i in range(len(p.rows)) if i not in p.rejected)
            idx = [t.header.index(c) for c in link.columns]
            for i, row in enumerate(t.rows):
                value = tuple(row[j] for j in idx)
                if i in t.rejected or "" in value or any(v in domain.PLACEHOLDER_NIRS for v in value):
                    continue
                if value not in keys:
                    failures[(t.name, "foreign_key")] += 1
    return {k: v for k, v in failures.items() if v}


# --- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clean(tmp_path_factory, packaged_catalog, reference_nomenclatures):
    out = tmp_path_factory.mktemp("clean")
    result = generate(GenerateOptions(out=out, delivery_id=DID, patients=800, seed=1, catalog=packaged_catalog,
                                      nomenclatures=str(reference_nomenclatures)))
    return result, read_delivery(result.delivery_dir, packaged_catalog)


@pytest.fixture(scope="module")
def defective(tmp_path_factory, packaged_catalog, reference_nomenclatures):
    out = tmp_path_factory.mktemp("defects")
    return generate(GenerateOptions(out=out, delivery_id=DID, patients=300, seed=2, catalog=packaged_catalog, defects=True,
                                    nomenclatures=str(reference_nomenclatures), gzip=True, rows_per_file=2000))


def _stay_rows(tables: dict[str, Read], family: str) -> dict[int, list[dict]]:
    return {t.year: t.dicts() for t in tables.values() if t.family == family}


# --- manifest and files ---------------------------------------------------------------------------------------
def test_manifest_lists_every_file_exactly_and_is_written_last(clean, packaged_catalog):
    result, _ = clean
    folder = result.delivery_dir
    text = (folder / "manifest.json").read_text(encoding="utf-8")
    manifest = parse_manifest(text, DID)
    assert manifest == result.manifest
    assert manifest.created_at.startswith(DID)
    listed = set()
    for t in manifest.tables:
        family, year = packaged_catalog.resolve(t.table)
        assert t.mode == domain.default_mode(family)
        for f in t.files:
            data = (folder / f.path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == f.sha256 and len(data) == f.bytes
            _, rows = read_file(folder / f.path, ";", "utf-8")
            assert len(rows) == f.rows
            listed.add(f.path)
        assert result.rows[t.table] == sum(f.rows for f in t.files)
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert on_disk == listed | {"manifest.json"}
    newest_data = max((folder / p).stat().st_mtime_ns for p in listed)
    assert (folder / "manifest.json").stat().st_mtime_ns >= newest_data
    families = {packaged_catalog.resolve(t.table)[0].name for t in manifest.tables}
    assert families == set(packaged_catalog.tables) - set(domain.ARCHIVES)  # every table but IR_BEN_R_ARC, PMSI per year
    assert {t.table for t in manifest.tables} >= {"T_MCO22B", "T_MCO23B", "T_SSR22C", "T_RIP23C"}
    assert result.ground_truth is None and not (folder.parent / f"{DID}.defects.json").exists()


def test_clean_delivery_passes_every_reception_rule(clean, packaged_catalog, reference_nomenclatures):
    result, _ = clean
    assert audit(result.delivery_dir, packaged_catalog, reference_nomenclatures) == {}


def test_domain_rules_hold_on_clean_output(clean, packaged_catalog, spark):
    """Every rule of domain.DOMAIN_RULES, evaluated by Spark on the files, holds on every row of every table."""
    from functools import reduce

    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    result, tables = clean
    checks_, evaluated = [], 0
    for t in tables.values():
        schema = packaged_catalog[t.family]
        reads = {r: {r.column} | {c for c in re.findall(r"\b[A-Z][A-Z0-9_]{3,}\b", r.expr) if c in schema.by_name}
                 for r in domain.domain_rules(schema)}
        # A PMSI year's files carry that year's columns (T_SSR22C has no SOR_ANN, dropped in 2009): the rules of
        # the others cannot be evaluated, and the files are read by their own header's positions.
        rules = [r for r, columns in reads.items() if columns <= set(t.header)]
        if not rules:
            continue
        paths = [str(result.delivery_dir / f.path) for dt in result.manifest.tables if dt.table == t.name
                 for f in dt.files]
        strings = StructType([StructField(c, StringType()) for c in t.header])
        df = spark.read.schema(strings).csv(paths, header=True, sep=";", encoding="utf-8")
        used = set().union(*(reads[r] for r in rules))
        df = df.select(*[F.expr(f"try_to_date({c}, 'yyyy-MM-dd')").alias(c)
                         if domain.effective_type(schema, schema.by_name[c]) == "date" else F.col(c)
                         for c in t.header if c in used])
        failed = []
        for rule in rules:
            condition = f"{rule.column} IN ({', '.join(repr(v) for v in rule.values)})" if rule.values else rule.expr
            failed.append(F.expr(f"CASE WHEN coalesce(({condition}), false) THEN NULL "
                                 f"ELSE '{rule.name}:{rule.column}' END"))
            evaluated += 1
        checks_.append(df.select(F.lit(t.name).alias("table"), F.concat_ws(",", *failed).alias("failed")))
    assert evaluated >= 10
    counts = reduce(lambda a, b: a.unionByName(b), checks_).groupBy("table", "failed").count().collect()
    assert {(r["table"], r["failed"]) for r in counts if r["failed"]} == set()  # no row breaks a rule
    rows_read = {r["table"]: r["count"] for r in counts}
    assert all(rows_read[t] == len(tables[t].rows) for t in rows_read)  # every row was evaluated


# --- coherence ----------------------------------------------------------------------------------------------------
def test_dcir_nine_keys_unique_and_every_affiliated_line_has_its_parent(clean):
    _, tables = clean
    prs = tables["ER_PRS_F"]
    rows = prs.dicts()
    keys = [tuple(r[k] for k in domain.DCIR_KEYS) for r in rows]
    assert len(set(keys)) == len(keys)
    for t in tables.values():
        if t.family.startswith("ER_") and t.family != "ER_PRS_F":
            link = domain.dcir_keys(t.family)
            parents = {tuple(r[k] for k in link) for r in rows}
            children = [tuple(r[k] for k in link) for r in t.dicts()]
            assert children and all(c in parents for c in children), t.name
    pha = tables["ER_PHA_F"].dicts()
    assert all(re.fullmatch(r"34009\d{8}", r["PHA_PRS_C13"]) for r in pha)
    assert all(re.fullmatch(r"[A-Z]{4}\d{3}", r["CAM_PRS_IDE"]) for r in tables["ER_CAM_F"].dicts())
    per_line = Counter(tuple(r[k] for k in domain.DCIR_KEYS) for r in pha)
    assert max(per_line.values()) > 1  # a line can have several affiliated lines
    for r in rows:
        flow = date.fromisoformat(r["FLX_DIS_DTD"])
        assert flow.day == 1 and date.fromisoformat(r["EXE_SOI_DTD"]) <= flow <= date.fromisoformat(DID)
    info = sum(r["DPN_QLF"] == "71" for r in rows) / len(rows)
    assert 0.01 < info < 0.1
    # SNDS.md: PRS_DPN_QLP = 71 is wider than DPN_QLF = 71; CPL_MAJ_TOP >= 2 marks supplements; care can arrive up
    # to 27 months late, 99 % within 6.
    assert all(r["PRS_DPN_QLP"] == "71" for r in rows if r["DPN_QLF"] == "71")
    assert 0.002 < sum(r["PRS_DPN_QLP"] == "71" and r["DPN_QLF"] != "71" for r in rows) / len(rows) < 0.03
    assert 0.005 < sum(r["CPL_MAJ_TOP"] == "2" for r in rows) / len(rows) < 0.05
    months = [(f.year - c.year) * 12 + f.month - c.month
              for f, c in ((date.fromisoformat(r["FLX_DIS_DTD"]), date.fromisoformat(r["EXE_SOI_DTD"])) for r in rows)]
    assert max(months) > 7 and max(months) <= 29 and sum(m <= 7 for m in months) / len(months) > 0.99
    identities = len(tables["IR_BEN_R"].rows)
    assert len(rows) / identities / 2 > 10  # tens of care lines per person-year


def test_regularisation_lines_cancel_earlier_lines(clean):
    """SNDS.md: a regularisation repeats a line with a negative quantity. Each is a décompte of its own in a later
    flow, the same care of the same identity as a line released before it, its quantities and amounts negative;
    no affiliated table describes it."""
    _, tables = clean
    keys = list(domain.DCIR_KEYS)
    lines = tables["ER_PRS_F"].dicts()

    def care(r: dict) -> tuple:
        return r["BEN_NIR_PSA"], r["BEN_RNG_GEM"], r["EXE_SOI_DTD"], r["EXE_SOI_DTF"], r["PRS_NAT_REF"]

    paid = defaultdict(list)
    for r in lines:
        if not r["PRS_ACT_QTE"].startswith("-"):
            paid[care(r)].append(r)
    cancelling = [r for r in lines if r["PRS_ACT_QTE"].startswith("-")]
    assert len(lines) / 200 < len(cancelling) < len(lines) / 50
    for r in cancelling:
        assert r["PRS_ORD_NUM"] == "1" and r["DPN_QLF"] != "71", r
        assert any(o["PRS_ACT_QTE"] == r["PRS_ACT_QTE"][1:] and o["PRS_PAI_MNT"] == r["PRS_PAI_MNT"][1:]
                   and o["BSE_REM_MNT"] == r["BSE_REM_MNT"][1:] and o["FLX_DIS_DTD"] < r["FLX_DIS_DTD"]
                   for o in paid[care(r)]), r
    cancelled = {tuple(r[k] for k in keys) for r in cancelling}
    for family in ("ER_PHA_F", "ER_BIO_F", "ER_CAM_F", "ER_ETE_F", "ER_UCD_F"):
        assert not any(tuple(r[k] for k in keys) in cancelled for r in tables[family].dicts()), family


def test_pmsi_rows_hang_from_their_stay_in_the_same_year(clean):
    _, tables = clean
    persons = len(tables["IR_IBA_R"].rows)
    pseudo_nirs = set(tables["IR_BEN_R"].col("BEN_NIR_PSA"))
    fields = 0
    for field_ in domain.PMSI_FIELDS:
        links = {t.year: {tuple(r[k] for k in field_.stay_key) for r in t.dicts()}
                 for t in tables.values() if t.family == field_.link_table}
        if not links:
            continue
        fields += 1
        for t in tables.values():
            if t.family == field_.link_table or not t.family.startswith(field_.prefix) or \
                    not set(field_.stay_key) <= set(t.header):
                continue
            assert all(tuple(r[k] for k in field_.stay_key) in links[t.year] for r in t.dicts()), t.name
        for year in links:
            link = tables[next(n for n, t in tables.items() if t.family == field_.link_table and t.year == year)]
            rows = link.dicts()
            assert rows and all(r["NIR_ANO_17"] in pseudo_nirs or r["NIR_ANO_17"] in domain.PLACEHOLDER_NIRS
                                for r in rows)
            assert any(r["NIR_ANO_17"] in domain.PLACEHOLDER_NIRS for r in rows)
            assert any(any(r.get(c) == "1" for c in domain.PMSI_RETURN_CODES) for r in rows)
    assert fields == 4  # MCO, SSR, HAD and RIM-P link tables of the packaged catalog
    mco = [r for t in tables.values() if t.family == "T_MCOaaC" for r in t.dicts()]
    assert {r["ETA_NUM_RET"] for r in mco} <= {"0", "1", ""}  # a return code, not a FINESS number
    bad = [r for r in mco if any(r.get(c) == "1" for c in domain.PMSI_RETURN_CODES)]
    assert len(bad) < 0.1 * len(mco)  # mostly good links
    assert 0.01 < len({r["NIR_ANO_17"] for r in mco}) / persons / 2 < 0.15  # a few percent a year
    diagnoses = [r["DGN_PAL"] for t in tables.values() if t.family == "T_MCOaaB" for r in t.dicts()]
    associated = [r["ASS_DGN"] for t in tables.values() if t.family == "T_MCOaaD" for r in t.dicts()]
    assert any(d.startswith("U071") for d in diagnoses) and any(d.startswith("E11") for d in diagnoses + associated)
    acts = [r["CDC_ACT"] for t in tables.values() if t.family == "T_MCOaaA" for r in t.dicts()]
    assert acts and all(re.fullmatch(r"[A-Z]{4}\d{3}", a) for a in acts)


def test_identities_twins_several_pseudo_nirs_and_fictitious_nirs(clean):
    _, tables = clean
    ben = tables["IR_BEN_R"].dicts()
    by_psa = defaultdict(list)
    by_person = defaultdict(list)
    for r in ben:
        by_psa[r["BEN_NIR_PSA"]].append(r)
        by_person[r["BEN_IDT_ANO"]].append(r)
    twins = [rows for rows in by_psa.values() if len(rows) > 1]
    assert twins
    for rows in twins:
        assert sorted(r["BEN_RNG_GEM"] for r in rows) == ["1", "2"]
        assert len({r["BEN_IDT_ANO"] for r in rows}) == 2
        assert len({(r["BEN_SEX_COD"], r["BEN_NAI_ANN"], r.get("BEN_NAI_MOI")) for r in rows}) == 1
    assert any(len({r["BEN_NIR_PSA"] for r in rows}) >= 2 for rows in by_person.values())
    assert any(r["BEN_CDI_NIR"] in domain.FICTITIOUS_NIR_CODES for r in ben)
    assert any(r["BEN_NAI_ANN"] == "1600" for r in ben)
    for person, rows in by_person.items():
        top = {r["BEN_IDT_TOP"] for r in rows}
        assert len(top) == 1
        if top == {"1"}:
            assert all(r["BEN_NIR_ANO"] == person for r in rows)
        else:  # SNDS.md: without a lifelong NIR, BEN_IDT_ANO is BEN_NIR_PSA || BEN_RNG_GEM, identity by identity
            assert [r["BEN_NIR_PSA"] + r["BEN_RNG_GEM"] for r in rows] == [person], rows
    iba = tables["IR_IBA_R"].col("BEN_IDT_ANO")
    assert len(iba) == len(set(iba)) and set(iba) == set(by_person)


def test_successive_periods_of_a_seed_tell_one_history(tmp_path, packaged_catalog):
    """Deliveries of one seed for successive periods are one population's history: every identity of the first is in
    the next with its birth, sex, person and entry into the base; a death stays (but the showcase's two persons, who
    die in every period), the persons born since are added, and whoever dies next was alive. A death's causes and an
    identity's ALDs stay, the ALDs inserted since are added, and an ended ALD keeps its end; an archived identity
    stays archived. Births were ages in the period's last year, so that across a new year every birth year moved, and
    deaths, their causes, the ALDs and the archive were drawn per period."""
    periods = (("2024-03-01", date(2023, 1, 1), date(2023, 12, 31)), ("2024-09-01", date(2024, 1, 1),
                                                                       date(2024, 6, 30)))
    ben, alds, causes, archives = [], [], [], []
    for delivery_id, start, end in periods:
        result = generate(GenerateOptions(out=tmp_path, delivery_id=delivery_id, patients=2500, seed=9,
                                          catalog=packaged_catalog, tables=["IR_BEN_R", "IR_BEN_R_ARC", "IR_IMB_R",
                                                                            "KI_CCI_R", "KI_ECD_R"], start=start, end=end))
        tables = read_delivery(result.delivery_dir, packaged_catalog)
        ben.append({(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"]): r for r in tables["IR_BEN_R"].dicts()})
        assert {r["BEN_IDT_ANO"] for r in tables["KI_CCI_R"].dicts()} == {
            r["BEN_IDT_ANO"] for r in ben[-1].values() if r["BEN_DCD_DTE"] != "1600-01-01"}
        alds.append({(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"], r["MED_MTF_COD"], r["IMB_ALD_NUM"], r["IMB_ALD_DTD"],
                      r["INS_DTE"]): r["IMB_ALD_DTF"] for r in tables["IR_IMB_R"].dicts()})
        lines = defaultdict(list)
        for r in sorted(tables["KI_ECD_R"].dicts(), key=lambda r: int(r["CER_LIG_NUM"])):
            lines[r["BEN_IDT_ANO"]].append(r["ECD_CIM_COD"])
        certificates = {r["BEN_IDT_ANO"]: (r["DCD_IDT_ENC"], r["DCD_CIM_COD"]) for r in tables["KI_CCI_R"].dicts()}
        assert all(lines[p][0] == cause for p, (_, cause) in certificates.items())  # the certificate's is the first
        causes.append({p: (identifier, tuple(lines[p])) for p, (identifier, _) in certificates.items()})
        archives.append({(r["BEN_NIR_PSA"], r["BEN_IDT_ANO"], r["MAX_TRT_DTD"], r["BEN_DTE_INS"], r["BEN_DTE_MAJ"])
                         for r in tables["IR_BEN_R_ARC"].dicts()})
    before, after = ben
    assert set(before) < set(after)
    for key, r in before.items():
        later = after[key]
        assert [r[c] for c in ("BEN_NAI_ANN", "BEN_NAI_MOI", "BEN_SEX_COD", "BEN_IDT_ANO", "BEN_DTE_INS")] == \
            [later[c] for c in ("BEN_NAI_ANN", "BEN_NAI_MOI", "BEN_SEX_COD", "BEN_IDT_ANO", "BEN_DTE_INS")], (r, later)
    deaths_moved = {r["BEN_IDT_ANO"] for key, r in before.items()
                    if r["BEN_DCD_DTE"] != "1600-01-01" and after[key]["BEN_DCD_DTE"] != r["BEN_DCD_DTE"]}
    assert len(deaths_moved) <= 2, deaths_moved
    kept = {p: c for p, c in causes[0].items() if p not in deaths_moved}
    assert len(kept) > 300 and kept.items() <= causes[1].items()
    assert Counter(len(c[1]) for c in kept.values()).keys() == {1, 2, 3}
    moved = {key for key, r in before.items() if r["BEN_IDT_ANO"] in deaths_moved}
    first_alds = {key: end for key, end in alds[0].items() if key[:2] not in moved}
    assert len(first_alds) > 300 and first_alds.keys() <= alds[1].keys()
    ended = {key: end for key, end in first_alds.items() if end not in ("", "1600-01-01")}
    assert ended and ended.items() <= alds[1].items()
    added = [key for key in alds[1].keys() - alds[0].keys() if key[:2] not in moved]
    assert added and all(key[5] >= "2024-01-01" for key in added), added
    archived = {a for a in archives[0] if a[1] not in deaths_moved}
    assert len(archived) > 50 and archived <= archives[1]
    new_deaths = [r for key, r in before.items() if r["BEN_DCD_DTE"] == "1600-01-01"
                  and after[key]["BEN_DCD_DTE"] != "1600-01-01"]
    assert new_deaths and all("2024-01-01" <= after[(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"])]["BEN_DCD_DTE"] <= "2024-06-30"
                              for r in new_deaths)
    born = [r for key, r in after.items() if key not in before]
    assert born and all(r["BEN_NAI_ANN"] in ("2024", "1600") for r in born), born
    assert any(r["BEN_DCD_DTE"] < "2010-01-01" for r in before.values() if r["BEN_DCD_DTE"] != "1600-01-01")


def test_a_fictitious_nir_fits_its_holder(tmp_path, packaged_catalog, reference_nomenclatures):
    """IR_NIR_V's labels say who holds each fictitious NIR: an abortion's (01) was drawn for men born in 1952."""
    start = date(2023, 1, 1)
    result = generate(GenerateOptions(out=tmp_path, delivery_id=DID, patients=30000, seed=5, catalog=packaged_catalog,
                                      nomenclatures=str(reference_nomenclatures), tables=["IR_BEN_R"],
                                      start=start, end=date(2023, 12, 31)))
    ben = read_delivery(result.delivery_dir, packaged_catalog)["IR_BEN_R"].dicts()
    women_only, men_only, minors_only = {"01", "06", "11", "13"}, {"14"}, {"06", "11", "12"}
    held = Counter()
    for r in ben:
        code = r["BEN_CDI_NIR"]
        if code not in domain.FICTITIOUS_NIR_CODES:
            continue
        held[code] += 1
        assert r["BEN_SEX_COD"] == ("2" if code in women_only else "1" if code in men_only else r["BEN_SEX_COD"]), r
        if r["BEN_NAI_ANN"] != "1600":  # the holder's age when the identity entered the base
            inserted = date.fromisoformat(r["BEN_DTE_INS"])
            age = inserted.year - int(r["BEN_NAI_ANN"]) - (int(r["BEN_NAI_MOI"]) > inserted.month)
            assert code not in minors_only or age <= 18, r
            assert code not in {"01", "13"} or 14 <= age <= 50, r
    assert set(held) == domain.FICTITIOUS_NIR_CODES, held  # every code of IR_NIR_V is drawn, each for its holders


def _mco_stays(tables: dict[str, Read]) -> list[dict]:
    """Every MCO stay of the delivery: its T_MCOaaB row with its T_MCOaaC row's patient, date and number."""
    out = []
    for year, rows in _stay_rows(tables, "T_MCOaaB").items():
        patient = {(r["ETA_NUM"], r["RSA_NUM"]): r for r in _stay_rows(tables, "T_MCOaaC")[year]}
        for r in rows:
            c = patient[(r["ETA_NUM"], r["RSA_NUM"])]
            out.append({**r, **{k: c[k] for k in ("NIR_ANO_17", "EXE_SOI_DTD", "NIR_ANO_MAM")}, "year": year})
    return out


def _is_delivery(stay: dict) -> bool:
    return stay["DGN_PAL"][:3] in ("O80", "O81", "O82", "O83", "O84") and stay["COD_SEX"] == "2"


def test_mother_child_numbers_belong_to_births_and_deliveries(clean):
    """NIR_ANO_MAM links a birth's stay to its mother's delivery: a newborn's stays and a woman's delivery stays carry
    one (32 characters), other stays none, and a number names one child (twins share a pseudo-NIR) and at most one
    mother (a pool of 200 values named unrelated patients)."""
    _, tables = clean
    children, mothers = defaultdict(set), defaultdict(set)
    for stay in _mco_stays(tables):
        newborn = stay["AGE_JOU"] != "" and int(stay["AGE_JOU"]) < 28
        delivery = _is_delivery(stay) and stay["AGE_ANN"] != ""
        assert (stay["NIR_ANO_MAM"] != "") == (newborn or delivery), stay
        if stay["NIR_ANO_MAM"]:
            assert len(stay["NIR_ANO_MAM"]) == 32
            if stay["NIR_ANO_17"] not in domain.PLACEHOLDER_NIRS:
                (children if newborn else mothers)[stay["NIR_ANO_MAM"]].add(stay["NIR_ANO_17"])
    assert children and all(len(p) == 1 for p in children.values()), children
    assert mothers and all(len(p) == 1 for p in mothers.values()), mothers


def test_a_birth_is_a_stay_of_the_child_and_of_its_mother(clean):
    """A person born in the care period has a birth stay (Z38, or a perinatal condition when longer) on the day of
    birth, paired by NIR_ANO_MAM with the delivery stay (O80-O84) of a woman of 15 to 49 in the same establishment
    the same day, both entered from home, and one time in two the child is on her card (ASS_NIR_ANO). The
    mother-child numbers were one per newborn and one per delivery: no birth had a mother."""
    _, tables = clean
    first_year = min(t.year for t in tables.values() if t.family == "T_MCOaaB")
    ben = tables["IR_BEN_R"].dicts()
    born_in_period = {r["BEN_IDT_ANO"] for r in ben
                      if r["BEN_NAI_ANN"] != "1600" and int(r["BEN_NAI_ANN"]) >= first_year}
    unknown_birth = {r["BEN_IDT_ANO"] for r in ben if r["BEN_NAI_ANN"] == "1600"}
    person_of = defaultdict(set)
    for r in ben:
        person_of[r["BEN_NIR_PSA"]].add(r["BEN_IDT_ANO"])
    stays = _mco_stays(tables)
    births = [s for s in stays if s["AGE_JOU"] == "0" and s["DGN_PAL"].startswith(("Z38", "P"))]
    deliveries = defaultdict(list)
    for s in stays:
        if _is_delivery(s) and s["NIR_ANO_MAM"]:
            deliveries[s["NIR_ANO_MAM"]].append(s)
    assert len(born_in_period) >= 10
    assert len(born_in_period) <= len(births) <= len(born_in_period) + len(unknown_birth)
    children_of = Counter(s["NIR_ANO_MAM"] for s in births)
    for s in births:
        if s["NIR_ANO_17"] not in domain.PLACEHOLDER_NIRS:
            assert person_of[s["NIR_ANO_17"]] & (born_in_period | unknown_birth), s
        assert children_of[s["NIR_ANO_MAM"]] in (1, 2), s  # twins share their mother's delivery
        (mother,) = deliveries[s["NIR_ANO_MAM"]]
        assert 15 <= int(mother["AGE_ANN"]) <= 49, mother
        assert (mother["EXE_SOI_DTD"], mother["ETA_NUM"], mother["year"]) == (s["EXE_SOI_DTD"], s["ETA_NUM"], s["year"])
        assert mother["NIR_ANO_17"] != s["NIR_ANO_17"] or s["NIR_ANO_17"] in domain.PLACEHOLDER_NIRS
        assert (s["ENT_MOD"], s["ENT_PRV"], mother["ENT_MOD"]) == ("8", "", "8"), (s, mother)  # born there, not moved
    longer = [s for s in births if s["DGN_PAL"].startswith("P")]
    assert all(int(s["SEJ_NBJ"]) >= 2 for s in births) and longer
    # a newborn is on its mother's card one time in two: its insured (ASS_NIR_ANO) is then her lifelong NIR
    identities = defaultdict(list)
    for r in ben:
        identities[r["BEN_NIR_PSA"]].append(r)
    on_card = Counter()
    for s in births:
        (mother,) = deliveries[s["NIR_ANO_MAM"]]
        her_nir = {r["BEN_NIR_ANO"] for r in identities[mother["NIR_ANO_17"]] if r["BEN_IDT_TOP"] == "1"}
        if her_nir and s["NIR_ANO_17"] not in domain.PLACEHOLDER_NIRS:
            on_card[bool(her_nir & {r["ASS_NIR_ANO"] for r in identities[s["NIR_ANO_17"]]})] += 1
    assert on_card[True] >= 3 and on_card[False] >= 3, on_card
    assert min(int(s["SEJ_NBJ"]) for s in longer) > max(int(s["SEJ_NBJ"]) for s in births if s["DGN_PAL"] == "Z380")


# The CMD of a main diagnosis, by ICD-10 chapter and block (written here from the GHM classification's CMD list, not
# from the generator's table): the longest matching prefix wins.
_CMD = {"A": "18", "E1": "10", "F3": "19", "G30": "01", "H25": "02", "I": "05", "I6": "01", "J": "04", "K35": "06",
        "K80": "07", "M17": "08", "N39": "11", "O8": "14", "P": "15", "S72": "08", "U07": "04", "Z38": "15"}


def test_a_ghm_fits_its_stay(clean):
    """GRG_GHM was drawn apart from the stay (a childbirth in CMD 05, a 12-night stay as ambulatory): its CMD now
    follows the main diagnosis, its severity what the stay's length allows, Z51.1 without a night is a session. Its
    GHS_NUM, the filler's, is the GHM's one (9999 for an error)."""
    _, tables = clean
    checked = Counter()
    tariffs = defaultdict(set)
    for stay in _mco_stays(tables):
        ghm, nights, dgn = stay["GRG_GHM"], int(stay["SEJ_NBJ"]), stay["DGN_PAL"]
        tariffs[ghm].add(stay["GHS_NUM"])
        if ghm == "90Z00Z":
            continue
        assert re.fullmatch(r"\d\d[CKMZ]\d\d[1-4A-DJTZ]", ghm), stay
        if dgn.startswith("Z511") and nights == 0:
            assert ghm == "28Z07Z", stay
            checked["session"] += 1
            continue
        prefix = max((p for p in _CMD if dgn.startswith(p)), key=len, default=None)
        if prefix is not None:
            assert ghm[:2] == _CMD[prefix], stay
            checked[_CMD[prefix]] += 1
        severity = ghm[5]
        level = "1234".find(severity) + 1 or "ABCD".find(severity) + 1
        if level >= 2:
            assert nights >= level + 1, stay  # level 2 from 3 nights, 3 from 4, 4 from 5
        assert severity != "J" or nights == 0, stay
        assert severity != "T" or nights <= 1, stay
    assert len(checked) >= 8 and checked["14"] and checked["15"] and checked["session"], checked
    assert tariffs["90Z00Z"] == {"9999"} and all(len(ghs) == 1 for ghs in tariffs.values()), tariffs
    assert len({ghs for g, (ghs,) in tariffs.items() if g != "90Z00Z"}) > 0.9 * (len(tariffs) - 1)


def test_other_patient_pseudonyms_are_their_own_patients(tmp_path, reference_catalog):
    """A patient pseudonym no rule models (BEN_RAT_ANO of ER_RAT_F) is one per person: it was drawn from a pool of
    200 values, so that unrelated patients shared one."""
    result = generate(GenerateOptions(out=tmp_path, delivery_id=DID, patients=1200, seed=6, catalog=reference_catalog,
                                      tables=["IR_BEN_R", "ER_PRS_F", "ER_RAT_F"]))
    tables = read_delivery(result.delivery_dir, reference_catalog)
    person = {(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"]): r["BEN_IDT_ANO"] for r in tables["IR_BEN_R"].dicts()}
    keys = list(domain.DCIR_KEYS)
    line_person = {tuple(r[k] for k in keys): person[(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"])]
                   for r in tables["ER_PRS_F"].dicts()}
    named = defaultdict(set)
    for r in tables["ER_RAT_F"].dicts():
        named[line_person[tuple(r[k] for k in keys)]].add(r["BEN_RAT_ANO"])
    assert len(named) > 200
    assert all(len(values) == 1 for values in named.values())
    assert len(set().union(*named.values())) == len(named)


def test_the_archive_holds_former_identities_of_persons(tmp_path, packaged_catalog):
    """IR_BEN_R_ARC, when named, holds identities CNAM archived (it was IR_BEN_R again, row for row): former
    pseudo-NIRs of persons whose lifelong NIR names them, with their last care years before the period, in no care row."""
    start = date(2023, 1, 1)
    result = generate(GenerateOptions(out=tmp_path, delivery_id=DID, patients=1500, seed=7, catalog=packaged_catalog,
                                      tables=["IR_BEN_R", "IR_BEN_R_ARC", "ER_PRS_F"], start=start,
                                      end=date(2023, 12, 31)))
    tables = read_delivery(result.delivery_dir, packaged_catalog)
    ben, arc = tables["IR_BEN_R"].dicts(), tables["IR_BEN_R_ARC"].dicts()
    assert 50 < len(arc) < len(ben) / 5
    archived = {(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"]) for r in arc}
    assert len(archived) == len(arc) and not archived & {(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"]) for r in ben}
    assert not archived & {(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"]) for r in tables["ER_PRS_F"].dicts()}
    lifelong = {r["BEN_IDT_ANO"] for r in ben if r["BEN_IDT_TOP"] == "1"}
    for r in arc:
        assert r["BEN_IDT_TOP"] == "1" and r["BEN_IDT_ANO"] == r["BEN_NIR_ANO"] and r["BEN_IDT_ANO"] in lifelong, r
        assert "2006-01-01" <= r["MAX_TRT_DTD"] < str(start) and r["BEN_DTE_INS"] <= r["MAX_TRT_DTD"], r
    assert audit(result.delivery_dir, packaged_catalog) == {}


def test_a_diagnosis_fits_its_patient(tmp_path, packaged_catalog, reference_nomenclatures):
    """A childbirth (O80) was drawn for men and children, Alzheimer's (G30) at any age, prostate cancer (C61) for
    women: a project's `diagnosis` criterion then selected them. Stays, their associated diagnoses, long-term
    illnesses and causes of death now fit their patient's sex and age."""
    result = generate(GenerateOptions(out=tmp_path, delivery_id=DID, patients=20000, seed=8, catalog=packaged_catalog,
                                      nomenclatures=str(reference_nomenclatures),
                                      tables=["IR_BEN_R", "T_MCOaaB", "T_MCOaaD", "IR_IMB_R", "KI_CCI_R", "KI_ECD_R"]))
    tables = read_delivery(result.delivery_dir, packaged_catalog)
    seen = Counter()
    for year, stays in _stay_rows(tables, "T_MCOaaB").items():
        age = {(r["ETA_NUM"], r["RSA_NUM"]): int(r["AGE_ANN"] or 0) for r in stays}
        for r in stays:
            years = int(r["AGE_ANN"] or 0)
            if r["DGN_PAL"].startswith("O"):
                seen["O"] += 1
                assert r["COD_SEX"] == "2" and 12 <= years <= 55, r
            if r["DGN_PAL"].startswith("G30"):
                seen["G30"] += 1
                assert years >= 40, r
            if r["DGN_PAL"].startswith(("I21", "I50")):
                seen["I21 I50"] += 1
                assert years >= 18, r
            if r["DGN_REL"].startswith(("E11", "I10")):
                seen["related E11 I10"] += 1
                assert years >= 10, r
        for r in _stay_rows(tables, "T_MCOaaD")[year]:
            if r["ASS_DGN"].startswith("G30"):
                seen["associated G30"] += 1
                assert age[(r["ETA_NUM"], r["RSA_NUM"])] >= 40, r
    sex = {(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"]): r["BEN_SEX_COD"] for r in tables["IR_BEN_R"].dicts()}
    for r in tables["IR_IMB_R"].dicts():
        if r["MED_MTF_COD"].startswith("C61"):
            seen["C61"] += 1
            assert sex[(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"])] == "1", r
    born = {r["BEN_IDT_ANO"]: int(r["BEN_NAI_ANN"]) for r in tables["IR_BEN_R"].dicts()}
    for family, column in (("KI_CCI_R", "DCD_CIM_COD"), ("KI_ECD_R", "ECD_CIM_COD")):
        for r in tables[family].dicts():
            if r[column].startswith("G30") and born[r["BEN_IDT_ANO"]] != 1600:
                seen[f"{family} G30"] += 1
                assert int(r["BEN_DCD_DTE"][:4]) - born[r["BEN_IDT_ANO"]] >= 39, r
    assert min(seen.values()) > 3 and len(seen) == 8, seen


def test_deaths_agree_between_referentials_and_care_stops(clean):
    _, tables = clean
    ben = tables["IR_BEN_R"].dicts()
    death_of = {r["BEN_IDT_ANO"]: r["BEN_DCD_DTE"] for r in ben}
    assert all(len({r["BEN_DCD_DTE"] for r in ben if r["BEN_IDT_ANO"] == p}) == 1 for p in list(death_of)[:200])
    dead = {p for p, d in death_of.items() if d != "1600-01-01"}
    cci = tables["KI_CCI_R"].dicts()
    assert dead and {r["BEN_IDT_ANO"] for r in cci} == dead
    assert all(r["BEN_DCD_DTE"] == death_of[r["BEN_IDT_ANO"]] for r in cci)
    assert {r["BEN_IDT_ANO"] for r in tables["KI_ECD_R"].dicts()} <= dead
    # one identifier per death, the certificate's and its causes' (it was drawn from a pool: 8 deaths shared one)
    death_id = {r["BEN_IDT_ANO"]: r["DCD_IDT_ENC"] for r in cci}
    assert len(set(death_id.values())) == len(cci) == len(death_id) and all(death_id.values())
    assert all(r["DCD_IDT_ENC"] == death_id[r["BEN_IDT_ANO"]] for r in tables["KI_ECD_R"].dicts())
    death_by_identity = {(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"]): r["BEN_DCD_DTE"] for r in ben}
    for r in tables["ER_PRS_F"].dicts():
        d = death_by_identity[(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"])]
        assert d == "1600-01-01" or r["EXE_SOI_DTD"] <= d


def test_care_lines_end_before_death_release_and_processing(tmp_path, packaged_catalog):
    """A line's care (nursing series included) ends by the death, before its flow is processed and released."""
    result = generate(GenerateOptions(out=tmp_path, delivery_id=DID, patients=3000, seed=4, catalog=packaged_catalog,
                                      tables=["IR_BEN_R", "ER_PRS_F"]))
    tables = read_delivery(result.delivery_dir, packaged_catalog)
    death = {(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"]): r["BEN_DCD_DTE"] for r in tables["IR_BEN_R"].dicts()}
    rows = tables["ER_PRS_F"].dicts()
    assert any(r["EXE_SOI_DTF"] > r["EXE_SOI_DTD"] for r in rows)  # nursing series last days
    after_death = [r for r in rows if death[(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"])] not in ("1600-01-01",)
                   and r["EXE_SOI_DTF"] > death[(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"])]]
    assert after_death == []
    assert [r for r in rows if not r["EXE_SOI_DTF"] <= r["FLX_TRT_DTD"] < r["FLX_DIS_DTD"]] == []
    # SNDS.md: care arrives up to 27 months late, 99 % within 6 (a décompte once its last care is done); lags of
    # 0-27 months after the next month's flow made it 28, and 98 % within 6
    done: dict[tuple, str] = {}
    for r in rows:
        if not r["PRS_ACT_QTE"].startswith("-"):  # a regularisation comes after the line it cancels
            dct = (r["FLX_DIS_DTD"], r["FLX_EMT_ORD"], r["DCT_ORD_NUM"])
            done[dct] = max(done.get(dct, ""), r["EXE_SOI_DTF"])
    late = Counter((int(f[:4]) - int(c[:4])) * 12 + int(f[5:7]) - int(c[5:7]) for (f, _, _), c in done.items())
    assert min(late) == 1 and max(late) <= 27, late
    assert sum(n for months, n in late.items() if months <= 6) >= 0.99 * len(done), late


def test_pmsi_entry_year_and_month_agree_with_the_entry_date(clean, packaged_catalog):
    _, tables = clean
    checked = 0
    for t in tables.values():
        if not {"ENT_DAT", "ENT_ANN", "ENT_MOI"} <= set(t.header):
            continue
        pattern = packaged_catalog[t.family].by_name["ENT_DAT"].format
        for r in t.dicts():
            entry = datetime.strptime(r["ENT_DAT"], pattern).date()
            assert (int(r["ENT_ANN"]), int(r["ENT_MOI"])) == (entry.year, entry.month), (t.name, r)
            checked += 1
    assert checked


def test_nobody_dies_before_birth_twins_included(tmp_path, packaged_catalog):
    result = generate(GenerateOptions(out=tmp_path, delivery_id=DID, patients=5000, seed=5, catalog=packaged_catalog,
                                      tables=["IR_BEN_R"], start=date(2015, 1, 1), end=date(2023, 12, 31)))
    rows = read_delivery(result.delivery_dir, packaged_catalog)["IR_BEN_R"].dicts()
    dead = [r for r in rows if r["BEN_DCD_DTE"] != "1600-01-01" and r["BEN_NAI_ANN"] != "1600"]
    assert any(r["BEN_RNG_GEM"] == "2" for r in dead)
    assert [r for r in dead if r["BEN_DCD_DTE"][:7] < f"{r['BEN_NAI_ANN']}-{int(r['BEN_NAI_MOI']):02d}"] == []


def test_long_term_illnesses_start_by_the_death(tmp_path, packaged_catalog):
    result = generate(GenerateOptions(out=tmp_path, delivery_id=DID, patients=3000, seed=3, catalog=packaged_catalog,
                                      tables=["IR_BEN_R", "IR_IMB_R"]))
    tables = read_delivery(result.delivery_dir, packaged_catalog)
    death = {(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"]): r["BEN_DCD_DTE"] for r in tables["IR_BEN_R"].dicts()}
    rows = [(r, death[(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"])]) for r in tables["IR_IMB_R"].dicts()]
    dead = [(r, d) for r, d in rows if d != "1600-01-01"]
    assert dead and [r for r, d in dead if r["IMB_ALD_DTD"] > d] == []


def test_long_term_illnesses(clean):
    _, tables = clean
    rows = tables["IR_IMB_R"].dicts()
    identities = {(r["BEN_NIR_PSA"], r["BEN_RNG_GEM"]) for r in tables["IR_BEN_R"].dicts()}
    assert rows and all((r["BEN_NIR_PSA"], r["BEN_RNG_GEM"]) in identities for r in rows)
    assert all(re.fullmatch(r"[A-Z]\d{2,4}", r["MED_MTF_COD"]) for r in rows)
    assert any(r["MED_MTF_COD"].startswith("E11") for r in rows)
    ends = Counter("ongoing" if r["IMB_ALD_DTF"] in ("", "1600-01-01") else "ended" for r in rows)
    assert ends["ongoing"] and ends["ended"]
    assert all(r["IMB_ALD_DTF"] in ("", "1600-01-01") or r["IMB_ALD_DTF"] >= r["IMB_ALD_DTD"] for r in rows)


# --- options ------------------------------------------------------------------------------------------------------
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, packaged_catalog):
    def run(folder: str, seed: int):
        return generate(GenerateOptions(out=tmp_path / folder, delivery_id=DID, patients=150, seed=seed,
                                        catalog=packaged_catalog, tables=["IR_BEN_R", "ER_PRS_F", "ER_PHA_F", "T_MCOaaC"]))

    first, again, other = run("a", 7), run("b", 7), run("c", 8)
    files = sorted(p.relative_to(first.delivery_dir) for p in first.delivery_dir.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again.delivery_dir) for p in again.delivery_dir.rglob("*") if p.is_file())
    for f in files:
        assert (first.delivery_dir / f).read_bytes() == (again.delivery_dir / f).read_bytes(), f
    for name in ("IR_BEN_R/part-0001.csv", "ER_PRS_F/part-0001.csv", "manifest.json"):
        assert (first.delivery_dir / name).read_bytes() != (other.delivery_dir / name).read_bytes()


def test_gzip_parts_delimiter_encoding_and_date_format(tmp_path, reference_catalog):
    result = generate(GenerateOptions(
        out=tmp_path, delivery_id=DID, patients=120, catalog=reference_catalog, gzip=True, rows_per_file=1000,
        delimiter="|", encoding="latin-1", date_format="%d/%m/%Y",
        tables=["IR_BEN_R", "ER_PRS_F", "KI_CCI_R", "T_MCOaaC", "T_MCOaaE"]))
    folder = result.delivery_dir
    manifest = load_manifest(folder)
    assert manifest["format"]["delimiter"] == "|" and manifest["format"]["encoding"] == "latin-1"
    assert manifest["format"]["date_format"] == "%d/%m/%Y"
    prs = next(t for t in manifest["tables"] if t["table"] == "ER_PRS_F")
    assert len(prs["files"]) > 2 and all(f["path"].endswith(".csv.gz") for f in prs["files"])
    assert all(f["rows"] == 1000 for f in prs["files"][:-1]) and 0 < prs["files"][-1]["rows"] <= 1000
    accents = False
    for t in manifest["tables"]:
        for f in t["files"]:
            raw = gzip.decompress((folder / f["path"]).read_bytes())
            header = raw.split(b"\n", 1)[0].decode("latin-1").split("|")
            family, year = reference_catalog.resolve(t["table"])
            assert header == list(family.columns_in(year))
            if any(b > 127 for b in raw):
                accents = True
                with pytest.raises(UnicodeDecodeError):
                    raw.decode("utf-8")
                assert "É" in raw.decode("latin-1")
    assert accents  # labels carry accented letters, written in latin-1
    tables = read_delivery(folder, reference_catalog)
    row = tables["ER_PRS_F"].dicts()[0]
    assert re.fullmatch(r"\d{2}/\d{2}/\d{4}", row["EXE_SOI_DTD"]) and re.fullmatch(r"\d{6}", row["EXE_SOI_AMD"])
    c = tables["T_MCO22C"].dicts()[0]
    assert re.fullmatch(r"\d{8}", c["ENT_DAT"])  # schema format %d%m%Y is kept
    assert re.fullmatch(r"\d{2}[A-Z][a-z]{2}\d{4}:00:00:00", c["EXE_SOI_DTD"])  # %d%b%Y:%H:%M:%S
    assert audit(folder, reference_catalog) == {}


def test_full_reference_catalog_gives_a_valid_delivery_for_every_table(tmp_path, reference_catalog):
    """Every table that existed in the care period (2022-2023) is delivered, with the columns its schema's
    history gives the files of each year, as CNAM's would have: T_MCO22FASTC without NIR_ANO_17 (dropped in 2008);
    the 17 tables whose every column was dropped before 2022 (T_MCOaaORP in 2017...) are not. A stay's corrected
    GHM is its GHM, and its GHS the GHM's (they were the filler's)."""
    result = generate(GenerateOptions(out=tmp_path, delivery_id=DID, patients=30, seed=3, catalog=reference_catalog))
    delivered = defaultdict(int)
    for name, rows in result.rows.items():
        delivered[reference_catalog.resolve(name)[0].name] += rows
    ceased = {n for n, t in reference_catalog.tables.items() if t.is_yearly and not t.columns_in(2022)}
    assert {"T_MCOaaORP", "T_SSRaaA", "T_SUPaaALD"} <= ceased and len(ceased) == 17
    assert set(delivered) == set(reference_catalog.tables) - set(domain.ARCHIVES) - ceased and len(delivered) == 171
    assert all(rows > 0 for rows in delivered.values())
    assert audit(result.delivery_dir, reference_catalog) == {}
    tables = read_delivery(result.delivery_dir, reference_catalog)
    employers = [v for v in tables["ER_PRS_F"].col("IJR_EMP_NUM") if v]
    assert employers and not all(v.isdigit() for v in employers)  # alphanumeric since November 2017 (SNDS.md)
    stays = tables["T_MCO23B"].dicts() + tables["T_MCO22B"].dicts()
    tariffs = {(r["GRG_GHM"], r["GHS_NUM"]) for r in stays}
    assert stays and all(r["GRC_GHM"] == r["GRG_GHM"] for r in stays)
    assert len(tariffs) == len({ghm for ghm, _ in tariffs}) > 5
    fastc = tables["T_MCO22FASTC"]
    assert "NIR_ANO_17" not in fastc.header and fastc.header == list(reference_catalog["T_MCOaaFASTC"].columns_in(2022))
    assert len(fastc.header) < len(reference_catalog["T_MCOaaFASTC"].columns)
    for name in ("T_MCOaaORP", "T_MCO22ORP"):
        with pytest.raises(GenerateError, match="none of its columns is in use in 2022"):
            generate(GenerateOptions(out=tmp_path / name, delivery_id=DID, catalog=reference_catalog, tables=[name]))


def test_the_packaged_catalog_dates_the_columns_of_its_pmsi_tables(tmp_path, packaged_catalog):
    """The packaged catalog carries the PMSI fields' history as schema-snds gives it, so that a year's files have
    that year's columns whatever the catalog: no NIR_ANO_MAM before 2013, no ETA_NUM_RET before 2017, no
    DGN_ASS_NUM before 2014, no SSR SOR_ANN since 2009; EXE_SOI_DTD (2009) dates the stays of 2012."""
    result = generate(GenerateOptions(out=tmp_path, delivery_id="2014-06-01", patients=400, seed=5,
                                      catalog=packaged_catalog, start=date(2012, 1, 1), end=date(2013, 12, 31)))
    tables = read_delivery(result.delivery_dir, packaged_catalog)
    assert "NIR_ANO_MAM" not in tables["T_MCO12C"].header and "NIR_ANO_MAM" in tables["T_MCO13C"].header
    assert "ETA_NUM_RET" not in tables["T_MCO13C"].header and "EXE_SOI_DTD" in tables["T_MCO12C"].header
    assert "DGN_ASS_NUM" not in tables["T_MCO13D"].header
    assert "SOR_ANN" not in tables["T_SSR13C"].header and "SOR_ANN" in tables["T_MCO13C"].header
    assert list(tables["T_MCO12C"].header) == list(packaged_catalog["T_MCOaaC"].columns_in(2012))


def test_an_earlier_care_period_gets_the_tables_and_columns_of_its_years(tmp_path, reference_catalog,
                                                                         reference_nomenclatures):
    """2009-2011 with all of schema-snds: T_RIP10R3AD without SEJ_IDT (2011 on), no T_RIP09FB (T_RIPaaFB begins in
    2010), no birth year after the care period; and the defects' ground truth still matches a recount."""
    result = generate(GenerateOptions(out=tmp_path, delivery_id="2012-06-01", patients=60, seed=5,
                                      catalog=reference_catalog, start=date(2009, 1, 1), end=date(2011, 12, 31),
                                      defects=True, nomenclatures=reference_nomenclatures))
    tables = read_delivery(result.delivery_dir, reference_catalog)
    assert "SEJ_IDT" not in tables["T_RIP10R3AD"].header and "SEJ_IDT" in tables["T_RIP11R3AD"].header
    assert "T_RIP09FB" not in tables and {"T_RIP10FB", "T_RIP09C"} <= set(tables)
    births = [int(r["BEN_NAI_ANN"]) for t in tables.values() if "BEN_NAI_ANN" in t.header for r in t.dicts()
              if r["BEN_NAI_ANN"]]
    assert births and max(births) <= 2011
    employers = [v for v in tables["ER_PRS_F"].col("IJR_EMP_NUM") if v]
    assert employers and all(v.isdigit() for v in employers)  # digits until November 2017 (SNDS.md)
    truth = json.loads((tmp_path / "2012-06-01.defects.json").read_text(encoding="utf-8"))
    expected: Counter = Counter()
    for d in truth["defects"]:
        expected[(d["table"], d["rule"])] += d["failures"]
    assert audit(result.delivery_dir, reference_catalog, reference_nomenclatures) == dict(expected)


def test_tables_option_families_and_delivered_names(tmp_path, packaged_catalog):
    result = generate(GenerateOptions(out=tmp_path, delivery_id=DID, patients=50, catalog=packaged_catalog,
                                      tables=["ER_PHA_F", "T_MCO23B"]))
    assert set(result.rows) == {"ER_PHA_F", "T_MCO23B"}
    with pytest.raises(GenerateError, match="unknown tables"):
        generate(GenerateOptions(out=tmp_path, delivery_id="2024-03-02", catalog=packaged_catalog, tables=["NOPE_R"]))
    with pytest.raises(GenerateError, match="outside the care period"):
        generate(GenerateOptions(out=tmp_path, delivery_id="2024-03-02", catalog=packaged_catalog, tables=["T_MCO19B"]))
    spelt = generate(GenerateOptions(out=tmp_path / "spelt", delivery_id=DID, patients=20, catalog=packaged_catalog,
                                     tables=["er_pha_f", "t_mco23b"]))  # "year None is outside the care period"
    assert set(spelt.rows) == {"ER_PHA_F", "T_MCO23B"}
    with pytest.raises(GenerateError, match="already exists"):
        generate(GenerateOptions(out=tmp_path, delivery_id=DID, patients=50, catalog=packaged_catalog, tables=["ER_PHA_F"]))
    for bad, told in ((dict(delivery_id="2024-3-1"), "'2024-3-1' is not YYYY-MM-DD"),
                      (dict(delimiter="-"), "delimiter '-' must be one ASCII character that no value holds"),
                      (dict(encoding="utf-16"), "encoding 'utf-16' is not utf-8 or latin-1"),
                      (dict(delivery_id="2022-01-15"), "too early for care starting"),
                      (dict(seed=-1), "seed must be a non-negative integer")):
        with pytest.raises(GenerateError, match=told):
            generate(GenerateOptions(out=tmp_path, catalog=packaged_catalog, **{"delivery_id": "2024-03-05", **bad}))
    # a delimiter the reception refuses (one ASCII character): é was written, then the delivery was refused
    for delimiter in ("é", "€"):
        with pytest.raises(GenerateError, match=f"delimiter '{delimiter}' must be one ASCII character"):
            generate(GenerateOptions(out=tmp_path, catalog=packaged_catalog, delivery_id="2024-03-05",
                                     delimiter=delimiter, encoding="latin-1"))
    # a date format the reception would refuse: two-digit years, a space-padded day, a part given twice
    for date_format, told in (("%d/%m/%y", "two-digit year"), ("%e/%m/%Y", "%e has no Spark equivalent"),
                              ("%d/%m/%Y %d", "%d gives the day again")):
        with pytest.raises(GenerateError, match=f"{re.escape(told)}.*the reception would refuse such a manifest"):
            generate(GenerateOptions(out=tmp_path, delivery_id="2024-03-06", catalog=packaged_catalog,
                                     date_format=date_format))


def test_a_care_period_starts_within_the_years_the_base_keeps(tmp_path, packaged_catalog):
    """SNDS.md: the base keeps 19 years plus the current one, and a PMSI table names its year in two digits read
    20yy: care in 1998-1999 was written as T_MCO98B, which the reception reads as 2098 (rejected), and care of
    2001-2002 in a delivery of 2024 gave flows the range check rejects."""
    for start, end, delivery, earliest in ((date(1998, 1, 1), date(1999, 12, 31), "2001-06-01", "2000-01-01"),
                                           (date(2001, 1, 1), date(2002, 12, 31), "2024-03-15", "2005-01-01")):
        with pytest.raises(GenerateError, match=f"care period start {start} is before {earliest}: a delivery of "):
            generate(GenerateOptions(out=tmp_path, delivery_id=delivery, catalog=packaged_catalog, start=start, end=end))
    assert not list(tmp_path.iterdir())
    result = generate(GenerateOptions(out=tmp_path, delivery_id="2024-03-15", patients=20, catalog=packaged_catalog,
                                      start=date(2005, 1, 1), end=date(2005, 12, 31), tables=["IR_BEN_R"]))
    assert result.rows["IR_BEN_R"] > 0


def test_a_care_period_of_a_month_has_a_month_of_stays(tmp_path, packaged_catalog):
    """PMSI rates are per year: a care period of one month had nearly a whole year's stays (98 MCO stays per 100
    person-years against 8 for a full year), where DCIR lines were scaled."""
    def stays(start: date, end: date) -> int:
        result = generate(GenerateOptions(out=tmp_path / str(start), delivery_id="2024-03-15", patients=2000, seed=14,
                                          catalog=packaged_catalog, start=start, end=end, tables=["T_MCOaaB"]))
        return sum(rows for name, rows in result.rows.items() if name.startswith("T_MCO"))

    year, month = stays(date(2023, 1, 1), date(2023, 12, 31)), stays(date(2023, 11, 1), date(2023, 11, 30))
    assert year > 100 and month < year / 6, (year, month)


def test_streams_chunks_of_patients_with_progress(tmp_path, packaged_catalog):
    seen = []
    result = generate(GenerateOptions(out=tmp_path, delivery_id=DID, patients=4500, catalog=packaged_catalog,
                                      tables=["IR_BEN_R", "IR_IBA_R"]), progress=lambda *a: seen.append(a))
    steps = [done for stage, done, total in seen if stage == "patients"]
    assert steps == [2000, 4000, 4500] and seen[-1][0] == "manifest"
    tables = read_delivery(result.delivery_dir, packaged_catalog)
    # one person of each of the 4500 slots is alive on any day (the start's here); IR_BEN_R also holds the dead since
    # 2006, and persons of unknown birth (1600) may be born later
    start = GenerateOptions(out=tmp_path).start  # the default period's
    persons = tables["IR_IBA_R"].dicts()
    alive = [r for r in persons if r["BEN_DCD_DTE"] == "1600-01-01" or r["BEN_DCD_DTE"] >= str(start)]
    known = [r for r in alive if r["BEN_NAI_ANN"] != "1600"
             and (int(r["BEN_NAI_ANN"]), int(r["BEN_NAI_MOI"])) < (start.year, start.month)]
    unknown = [r for r in alive if r["BEN_NAI_ANN"] == "1600"]
    assert len(known) <= 4500 <= len(known) + len(unknown), (len(known), len(unknown))
    assert len(persons) > 4500 and any(r["BEN_DCD_DTE"][:4] == "2006" for r in persons)
    assert audit(result.delivery_dir, packaged_catalog) == {}  # keys stay unique across chunks


# --- defects ----------------------------------------------------------------------------------------------------
def test_defects_ground_truth_matches_the_files(defective, packaged_catalog, reference_nomenclatures):
    truth_path = defective.ground_truth
    assert truth_path == defective.delivery_dir.parent / f"{DID}.defects.json"
    assert not any(p.name.endswith(".defects.json") for p in defective.delivery_dir.rglob("*"))
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    assert truth["delivery_id"] == DID and truth["seed"] == 2
    kinds = {d["defect"] for d in truth["defects"]}
    assert kinds >= {"duplicate_key", "orphan_affiliated", "unparseable_date", "unparseable_integer",
                     "missing_key", "row_count_mismatch", "checksum_mismatch", "unknown_column",
                     "out_of_nomenclature", "out_of_range"}
    dup_tables = {d["table"] for d in truth["defects"] if d["defect"] == "duplicate_key"}
    assert "ER_PRS_F" in dup_tables and any(re.fullmatch(r"T_MCO\d\dB", t) for t in dup_tables)
    listed = {f.path for t in defective.manifest.tables for f in t.files}
    expected: Counter = Counter()
    for d in truth["defects"]:
        assert d["rule"] in checks.ALL_RULES and d["failures"] > 0
        assert d["file"] in listed and set(d["files"]) <= listed
        expected[(d["table"], d["rule"])] += d["failures"]
    assert audit(defective.delivery_dir, packaged_catalog, reference_nomenclatures) == dict(expected)
    for d in truth["defects"]:  # rejected rows are in the files the ground truth names
        if d["rule"] in ("type", "not_null"):
            column, found = d["columns"][0], 0
            for path in d["files"]:
                header, rows = read_file(defective.delivery_dir / path, ";", "utf-8")
                j = header.index(column)
                if d["rule"] == "not_null":
                    found += sum(1 for r in rows if r[j] == "")
                else:
                    found += sum(1 for r in rows if r[j] and not re.fullmatch(r"[\d\-./:T]+", r[j]))
            assert found == d["failures"], d
    assert len(expected) == len(truth["defects"])  # each (table, rule) carries one defect: counts are exact


def test_ssr_weekly_summaries_fall_within_their_stay(tmp_path, packaged_catalog):
    """T_SSRaaB: MOI_ANN_SOR_SEJ is the stay's discharge month, MOI_ANN the month of its RHS's week (were both
    random, an SSR stay would be summarised in months it did not cover)."""
    result = generate(GenerateOptions(out=tmp_path, delivery_id=DID, patients=3000, seed=1, catalog=packaged_catalog,
                                      tables=["IR_BEN_R", "T_SSRaaB", "T_SSRaaC"]))
    tables = read_delivery(result.delivery_dir, packaged_catalog)
    pattern = packaged_catalog["T_SSRaaC"].by_name["SOR_DAT"].format
    checked = later_weeks = 0
    for year in ("22", "23"):
        stays = {(r["ETA_NUM"], r["RHA_NUM"]): r for r in tables[f"T_SSR{year}C"].dicts()}
        for r in tables[f"T_SSR{year}B"].dicts():
            stay = stays[(r["ETA_NUM"], r["RHA_NUM"])]
            entry = datetime.strptime(stay["ENT_DAT"], pattern).date()
            exit_ = datetime.strptime(stay["SOR_DAT"], pattern).date()
            assert r["MOI_ANN_SOR_SEJ"] == f"{exit_.year:04d}{exit_.month:02d}", (r, stay)
            assert f"{entry.year:04d}{entry.month:02d}" <= r["MOI_ANN"] <= r["MOI_ANN_SOR_SEJ"], (r, stay)
            later_weeks += r["MOI_ANN"] != f"{entry.year:04d}{entry.month:02d}"
            checked += 1
    assert checked and later_weeks


# --- a failed generate ------------------------------------------------------------------------------------------
def test_a_missing_nomenclature_folder_is_refused_before_any_folder_is_made(tmp_path, packaged_catalog):
    """The folder was found missing once the delivery folder was made: an empty delivery was left in the landing
    zone, which the sensor then logged as "no manifest.json yet" on every tick."""
    landing = tmp_path / "landing"
    with pytest.raises(GenerateError, match=f"nomenclature folder not found: {tmp_path / 'none'}"):
        generate(GenerateOptions(out=landing, delivery_id=DID, patients=5, catalog=packaged_catalog,
                                 tables=["IR_BEN_R"], nomenclatures=str(tmp_path / "none")))
    assert not landing.exists()


@pytest.mark.parametrize("existing", ["nothing", "landing", "delivery"])
def test_a_failed_generate_leaves_no_folder_it_made(tmp_path, packaged_catalog, monkeypatch, existing):
    """Stopped mid-way (Ctrl-C, a full disk), it left a delivery folder without manifest behind; the folders that
    existed before stay, emptied of what it wrote."""
    from snds_assets.generator import engine

    def interrupted(self, progress=None):
        (self.root / "IR_BEN_R.csv").write_text("BEN_NIR_PSA\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.Engine, "run", interrupted)
    landing = tmp_path / "landing"
    if existing != "nothing":
        (landing / DID if existing == "delivery" else landing).mkdir(parents=True)
    with pytest.raises(KeyboardInterrupt):
        generate(GenerateOptions(out=landing, delivery_id=DID, patients=5, catalog=packaged_catalog,
                                 tables=["IR_BEN_R"]))
    assert landing.exists() is (existing != "nothing")
    assert (landing / DID).exists() is (existing == "delivery")
    assert existing == "nothing" or not any(p.is_file() for p in landing.rglob("*"))


def test_a_table_gets_one_file_level_defect_at_most(tmp_path, reference_catalog, reference_nomenclatures):
    """The tables offered to the file-level defects listed the preferred ones twice: with `--tables`, ER_ETE_F got
    both the wrong checksum and the unknown column, where a table with a file-level defect carries no other."""
    generate(GenerateOptions(out=tmp_path, delivery_id="2024-07-01", patients=150, seed=21, catalog=reference_catalog,
                             defects=True, nomenclatures=str(reference_nomenclatures), date_format="%Y%j", tables=[
                                 "IR_BEN_R", "IR_IMB_R", "ER_PRS_F", "ER_PHA_F", "ER_UCD_F", "ER_ETE_F", "KI_ECD_R",
                                 "T_MCOaaB", "T_MCOaaC", "T_MCOaaUM", "T_RIPaaC"]))
    defects = json.loads((tmp_path / "2024-07-01.defects.json").read_text(encoding="utf-8"))["defects"]
    file_level = [d["table"] for d in defects if d["rule"] in ("row_count", "checksum", "columns")]
    assert len(file_level) == 3, defects
    assert all(Counter(d["table"] for d in defects)[table] == 1 for table in file_level), defects
