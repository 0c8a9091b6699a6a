"""What the Dagster assets (and `snds extract`) call: build and write a project's cohort, its extracts, its report.

Layout (SPEC §5):
    <lake>/projects/<ID>/cohort/*.parquet          the cohort, project pseudonyms only
    <lake>/projects/<ID>/<FAMILY>/*.parquet        one extract per family of the request
    <lake>/reports/projects/<ID>.json (+ .html)    the extraction report
    <lake>/restricted/projects/<ID>/               secret.key, correspondence/, cohort/, identifiers/,
                                                   identifiers.json (unresolved identifiers with their values),
                                                   info/*.json (what each step did, for the report)
Every Parquet folder is written to a hidden folder beside its place first and published by rename.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from .. import domain
from ..catalog import Catalog
from ..checks import ERROR, WARN, CheckOutcome
from ..config import Settings
from ..lake import Lake, staging_beside
from . import storage
from .extract import Selector, allowed_output_columns, granted_columns, withheld_columns
from .identify import AMBIGUOUS, UNKNOWN, CohortResult, build_cohort
from .links import ANO, IDT, NIR_UNIQUE, PSA, RNG, MissingTable, beneficiary_rows, in_period, link_columns, semi_join
from .pseudonymize import in_content_order, project_secret, pseudonym, pseudonymize
from .report import received_again, state_change, withdraw_project_report, write_project_report
from .request import ProjectRequest
from .source import DELIVERY_COLUMN, TableSource

COHORT = "cohort"
CORRESPONDENCE, RESOLUTION = "correspondence", "identifiers"
COHORT_FOLDERS = (COHORT, CORRESPONDENCE, RESOLUTION)  # what run_cohort writes, in the project space or restricted/
NUM_ENQ, NUM_ENQ_IDT, NUM_ENQ_ANO = (domain.PROJECT_PSEUDONYMS[c] for c in ("BEN_NIR_PSA", IDT, ANO))
ROWS_PER_FILE = 1_000_000
SAMPLE = 10
UNRESOLVED_LISTED = 1000  # in the report; restricted/ lists them all


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_parquet(df: DataFrame, target: str, files: int | None = None) -> None:
    """Write ``df`` under ``target`` atomically: into a hidden folder beside it, then one rename (see
    ``lake.staging_beside``: restricted data never lands outside ``restricted/``)."""
    storage.publish_dir(stage_parquet(df, target, files), target)


def stage_parquet(df: DataFrame, target: str, files: int | None = None) -> str:
    """Write ``df`` into a hidden folder beside ``target`` and return it, for the caller to publish."""
    staging = staging_beside(target, uuid.uuid4().hex)
    if files:
        df = df.coalesce(files)
    try:
        df.write.mode("error").parquet(staging)
    except BaseException:
        storage.remove(staging)  # a failed run cleans up after itself (a full disk left the part written)
        raise
    return staging


def _info_path(lake: Lake, project_id: str, name: str) -> str:
    return lake.restricted(project_id, "info", f"{name}.json")


def _jsonable(info: dict) -> dict:
    return {k: ([c.to_report() for c in v] if k == "checks" else v) for k, v in info.items()}


def _pseudonym_values(df: DataFrame, raw: DataFrame) -> tuple[int, list[str]]:
    """How many values of ``df``'s text columns are or hold SNDS pseudonyms of ``raw`` (column ``v``), and where:
    the whole value, or one of its words (a pseudonym written in a sentence of a free-text field: ``VOIR
    CCFF306F529A9949S MERE``; words are runs of letters and digits, as SNDS pseudonyms are). Only the values and
    words of a pseudonym's length are joined: codes and labels shorter than any are dropped before any shuffle,
    and ``raw`` (every identity of the state) is broadcast or not as Spark sees fit."""
    text = [f.name for f in df.schema.fields if f.dataType.simpleString() == "string"]
    if not text:
        return 0, []
    lengths = sorted(r[0] for r in raw.select(F.length("v")).distinct().collect())
    if not lengths:
        return 0, []
    cells = df.select(F.monotonically_increasing_id().alias("row"), F.explode(F.array(
        *[F.struct(F.lit(c).alias("c"), F.col(c).alias("v")) for c in text])).alias("x"))
    words = (cells.select("row", "x.c", "x.v").where(F.length("v") >= lengths[0])
             .select("row", "c", F.explode(F.array_union(F.array("v"), F.split("v", "[^0-9A-Za-z]+"))).alias("v"))
             .where(F.length("v").isin(lengths)))
    found = (words.join(raw, "v", "left_semi").select("row", "c").distinct()
             .groupBy("c").count().collect())
    return sum(r["count"] for r in found), sorted(r["c"] for r in found)


def _raw_pseudonyms(correspondence: DataFrame, source: TableSource | None = None) -> DataFrame:
    """Every SNDS pseudonym of the cohort's identities, and with ``source`` those of every identity of IR_BEN_R
    and its archive: a delivery can carry someone else's pseudonym in a column the domain does not declare (a
    mother's, a free-text field), which the extract would otherwise hand out unseen. One column ``v``."""
    parts = [correspondence.select(F.col(c).cast("string").alias("v")) for c in (IDT, PSA, ANO) if c in correspondence.columns]
    if source is not None:
        state = beneficiary_rows(source)
        parts += [state.select(F.col(c).alias("v")) for c in (IDT, PSA, ANO)]
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out.where(F.col("v").isNotNull()).distinct()


def _no_snds_pseudonym(df: DataFrame, correspondence: DataFrame, name: str = "no_snds_pseudonym",
                       source: TableSource | None = None) -> CheckOutcome:
    named = sorted(set(df.columns) & set(domain.PROJECT_PSEUDONYMS))
    failures, columns = _pseudonym_values(df, _raw_pseudonyms(correspondence, source))
    held = [f"{failures} text value(s) are or hold SNDS pseudonyms: {', '.join(columns)}"] if failures else []
    details = "; ".join(([f"SNDS pseudonym columns present: {', '.join(named)}"] if named else []) + held)
    return CheckOutcome(name, name, ERROR, passed=not named and failures == 0, failures=failures + len(named),
                        columns=sorted(set(columns) | set(named)), details=details)


# --- Cohort ------------------------------------------------------------------------------------------------
def run_cohort(spark: SparkSession, settings: Settings, catalog: Catalog, request: ProjectRequest,
               source: TableSource) -> dict:
    """Identify the cohort and write it: project space (project pseudonyms) and restricted/ (correspondence)."""
    lake = Lake(settings.lake)
    secret = project_secret(settings, request.id)
    marks = source.receptions()  # before the state is read: a reception ending meanwhile changes a mark
    # The requested families' deliveries now: one an extract then finds in no accepted delivery has left the state.
    perimeter = {family: list(source.deliveries(family)) for family in request.tables}
    try:
        result = build_cohort(spark, catalog, request, source)
    except MissingTable as exc:
        raise MissingTable(f"{exc}{_unfinished(settings)}") from None
    try:
        # before anything of the earlier cohort is replaced
        _state_held(settings, request, result.sources, marks, source)
        files = max(1, result.counts["persons"] // ROWS_PER_FILE)
        correspondence = result.identities.select(
            IDT, pseudonym(IDT, secret, NUM_ENQ_IDT, spark).alias(NUM_ENQ_IDT),
            PSA, RNG, pseudonym(PSA, secret, NUM_ENQ, spark).alias(NUM_ENQ),
            ANO, pseudonym(ANO, secret, NUM_ENQ_ANO, spark).alias(NUM_ENQ_ANO), NIR_UNIQUE,
        )
        withdraw_project_report(settings, request.id)  # written again below, once the new cohort is recorded
        storage.remove(_info_path(lake, request.id, COHORT))  # it describes the cohort the files below replace
        write_parquet(correspondence, lake.restricted(request.id, CORRESPONDENCE), files)
        write_parquet(result.cohort, lake.restricted(request.id, COHORT), files)
        project_cohort = pseudonymize(result.cohort, secret).orderBy(NUM_ENQ_IDT)
        write_parquet(project_cohort, lake.project(request.id, COHORT), files)
        if result.resolution is not None:
            write_parquet(result.resolution, lake.restricted(request.id, RESOLUTION), 1)
            storage.write_json(lake.restricted(request.id, "identifiers.json"), {
                "project": request.id, "file": str(request.identifiers_file), "counts": result.counts["identifiers"],
                "unresolved": result.unresolved,
            })
        written = spark.read.parquet(lake.project(request.id, COHORT))
        checks = [_unresolved_check(result), _no_snds_pseudonym(written, spark.read.parquet(
            lake.restricted(request.id, CORRESPONDENCE)))]
    finally:
        result.unpersist()
    _state_held(settings, request, result.sources, marks, source)  # the writes read the state again where not cached
    removed = _prune(lake, request)
    counts = result.counts
    ids = counts.get("identifiers") or {}
    info = {
        "project": request.id, "request_fingerprint": request.fingerprint, "cohort_run": uuid.uuid4().hex,
        "built_at": _now(), "path": lake.project(request.id, COHORT),
        "persons": counts["persons"], "identified": counts["identified"], "targeted": counts["targeted"],
        "identified_only": counts["identified_only"], "targeted_only": counts["targeted_only"],
        "both": counts["both"], "identities": counts["identities"],
        "identities_archived": counts.get("identities_archived", 0),
        "identifiers_rows": ids.get("rows", 0), "identifiers_resolved": ids.get("resolved", 0),
        "identifiers_ambiguous": ids.get("ambiguous", 0), "identifiers_unknown": ids.get("unknown", 0),
        "identifiers": ids or None,
        "unresolved": [{"line": u["LINE"], "method": u["METHOD"], "status": u["STATUS"], "persons": u["PERSONS"]}
                       for u in result.unresolved[:UNRESOLVED_LISTED]],
        "unresolved_not_listed": max(0, len(result.unresolved) - UNRESOLVED_LISTED),
        "criteria": counts.get("criteria", {}),
        "targeted_before_filters": counts.get("targeted_before_filters"),
        "criteria_tables_missing": counts.get("criteria_tables_missing", []),
        "deliveries": result.sources,
        "perimeter": perimeter,
        "receptions": {d: marks[d] for ids in [*result.sources.values(), *perimeter.values()] for d in ids
                       if d in marks},
        "removed_extracts": removed,
        "checks": checks,
    }
    storage.write_json(_info_path(lake, request.id, COHORT), _jsonable(info))
    # What the project space holds now: the new cohort, the extracts made for an earlier one marked stale (the
    # report step writes it again once they are extracted anew).
    write_project_report(settings, request, _jsonable(info), collect_infos(settings, request)[1])
    return info


def _unfinished(settings: Settings) -> str:
    """What to add when a table is missing from the state: the receptions that have not finished, which hold their
    families out of it (a reception killed while receiving again a delivery that was accepted)."""
    from ..reception.report import unfinished_receptions

    pending = unfinished_receptions(settings)
    if not pending:
        return ""
    if len(pending) == 1:
        return (f"; the reception of delivery {pending[0]} has not finished (still running, or interrupted: then run "
                f"snds ingest {pending[0]})")
    shown = ", ".join(pending[:5]) + (f" and {len(pending) - 5} more" if len(pending) > 5 else "")
    return (f"; the receptions of deliveries {shown} have not finished (still running, or interrupted: then run "
            "snds ingest for each)")


def _unresolved_check(result: CohortResult) -> CheckOutcome:
    name = "unresolved_identifiers"
    if result.resolution is None:
        return CheckOutcome(name, name, WARN, True, evaluated=False, details="the project brought no identifiers")
    ids = result.counts["identifiers"]
    bad = ids[AMBIGUOUS] + ids[UNKNOWN]
    sample = [{"line": u["LINE"], "method": u["METHOD"], "status": u["STATUS"], "persons": u["PERSONS"]}
              for u in result.unresolved[:SAMPLE]]
    return CheckOutcome(name, name, WARN, passed=bad == 0, failures=bad, sample=sample,
                        details=f"{ids['rows']} identifiers: {ids['resolved']} resolved, {ids[AMBIGUOUS]} ambiguous "
                                f"(twins, or an IR_BEN_R row without BEN_IDT_ANO), {ids[UNKNOWN]} unknown; values "
                                "listed under restricted/ only")


def _prune(lake: Lake, request: ProjectRequest) -> list[str]:
    """Extracts of families the request no longer grants leave the project space (and the report)."""
    keep = {COHORT, *request.tables}
    removed = [d for d in storage.list_dirs(lake.project(request.id)) if d not in keep]
    for name in removed:
        storage.remove(lake.project(request.id, name))
        storage.remove(_info_path(lake, request.id, name))
    for name in storage.list_dirs(lake.withheld(request.id)):
        if name not in keep:
            storage.remove(lake.withheld(request.id, name))
    return removed


def load_cohort(spark: SparkSession, settings: Settings, request: ProjectRequest) -> tuple[CohortResult, dict]:
    """The cohort run_cohort wrote, with its identities, for the extracts of the same request version."""
    lake = Lake(settings.lake)
    info = storage.read_json(_info_path(lake, request.id, COHORT))
    if info is None:
        raise MissingTable(f"project {request.id}: no cohort yet, identify the cohort first")
    if info.get("request_fingerprint") != request.fingerprint:
        raise MissingTable(f"project {request.id}: the cohort was identified for an earlier version of the request; "
                           "identify the cohort again before extracting")
    cohort = spark.read.parquet(lake.restricted(request.id, COHORT))
    correspondence = spark.read.parquet(lake.restricted(request.id, CORRESPONDENCE))
    counts = {"persons": info["persons"], "identities": info["identities"]}
    return CohortResult(cohort, correspondence, None, counts), info


# --- Extracts ------------------------------------------------------------------------------------------------
def run_extract(spark: SparkSession, settings: Settings, catalog: Catalog, request: ProjectRequest, family: str,
                source: TableSource) -> dict:
    """Extract one family for the project into its space, atomically, and check what was written."""
    lake = Lake(settings.lake)
    if family not in request.tables:
        raise ValueError(f"{family} is not in the perimeter of project {request.id}")
    cohort, cohort_info = load_cohort(spark, settings, request)
    secret = project_secret(settings, request.id)
    target = lake.project(request.id, family)
    table = catalog[family]
    path = domain.patient_path(catalog, family)
    info: dict = {"project": request.id, "family": family, "path": target, "cohort_run": cohort_info["cohort_run"],
                  "extracted_at": _now(), "links": [f"{l.child} -> {l.parent} on {', '.join(l.columns)}" for l in path]}
    selector = Selector(catalog, request, source, cohort)
    try:
        try:
            selection = selector.rows(family)
        except MissingTable as exc:
            info.update(_state_read(source, family, path))  # a delivery bringing it later makes the project lag
            # Missing now but in the state when the cohort was identified (read by it, or in the perimeter then): a
            # reception alongside withdrew its delivery's report meanwhile, or rejected it.
            _same_state_as_cohort(settings, request, cohort_info, info["deliveries_read"], info["receptions"],
                                  perimeter=True)
            storage.remove(target)
            storage.remove(lake.withheld(request.id, family))
            details = f"{exc}{_unfinished(settings)}"
            info.update(status="not delivered", rows=0, deliveries=[], columns=[], column_schema=[], details=details,
                        checks=[CheckOutcome(n, n, WARN, True, evaluated=False, details=details)
                                for n in ("belongs_to_cohort", "in_period", "granted_columns", "no_snds_pseudonym")])
            storage.write_json(_info_path(lake, request.id, family), _jsonable(info))
            return info

        # The deliveries of the tables read, as the selection read them: asked after the write, they could name one
        # accepted since.
        info.update(_state_read(source, family, path))
        _same_state_as_cohort(settings, request, cohort_info, info["deliveries_read"], info["receptions"])
        date_col = domain.care_date_column(table)
        # What the selection's counts need travels beside the granted columns, and is observed above the reordering's
        # exchange: below it, an empty extract's stage was replaced by an empty relation (adaptive execution) and its
        # observation was never reported.
        carried = {_DELIVERY: F.col(DELIVERY_COLUMN)} if DELIVERY_COLUMN in selection.columns else {}
        if date_col and date_col in selection.columns:
            carried[_OUTSIDE] = _outside(selection, date_col, request)
        granted = granted_columns(catalog, request, family, selection.columns)
        withheld = withheld_columns(catalog, family, selection.columns)
        rows_out = pseudonymize(selection.select(*granted, *(c.alias(n) for n, c in carried.items())), secret)
        ordered = in_content_order(rows_out, [c for c in rows_out.columns if c not in carried])
        observation = Observation(f"extract_{family}_{uuid.uuid4().hex[:8]}")
        metrics = [F.count(F.lit(1)).alias("rows")]
        metrics.append(F.collect_set(_DELIVERY).alias("deliveries") if _DELIVERY in carried
                       else F.array().cast("array<string>").alias("deliveries"))
        if _OUTSIDE in carried:
            metrics.append(F.count_if(_OUTSIDE).alias("outside"))
        output = ordered.observe(observation, *metrics).drop(*carried)
        # Checked before it is published: an extract failing an ERROR check never reaches the project's space.
        staging = stage_parquet(output, target)
        try:
            got = observation.get
            rows, deliveries = int(got["rows"]), sorted(got["deliveries"] or [])

            written = spark.read.parquet(staging)
            tally = [F.count(F.lit(1)).alias("rows")]
            dated = bool(date_col) and date_col in written.columns
            if dated:  # what the project receives is checked, whatever the selection did
                tally.append(F.count_if(_outside(written, date_col, request)).alias("outside"))
            counted = written.agg(*tally).first()
            written_rows = int(counted["rows"])
            checks = [
                _belongs_to_cohort(written, cohort.identities, selector, path),
                _in_period_check(counted["outside"] if dated else got.get("outside"), written_rows if dated else rows,
                                 date_col, path, in_extract=dated),
                _granted_check(written, catalog, request, family, withheld),
                _no_snds_pseudonym(written, cohort.identities, source=source),
                CheckOutcome("row_count", "row_count", ERROR, passed=written_rows == rows,
                             failures=abs(written_rows - rows),
                             details=f"{rows} rows selected, {written_rows} rows in the extract"),
            ]
            failed = [c.name for c in checks if c.severity == ERROR and not c.passed]
            if failed:  # a pseudonym CNAM left in a free-text column, or a bug of ours: the operator sees the rows
                storage.remove(target)
                info["path"] = lake.withheld(request.id, family)
                storage.publish_dir(staging, info["path"])
            else:
                storage.publish_dir(staging, target)
                storage.remove(lake.withheld(request.id, family))
        except BaseException:
            storage.remove(staging)  # a run failing or interrupted before publishing it cleans up
            raise
        info.update(status=f"withheld ({', '.join(failed)} failed)" if failed else "extracted",
                    rows=written_rows, deliveries=deliveries,
                    deliveries_linked={l.parent: info["deliveries_read"][l.parent] for l in path},
                    columns=written.columns, columns_withheld=withheld,
                    column_schema=[(f.name, f.dataType.simpleString()) for f in written.schema.fields],
                    checks=checks)
        storage.write_json(_info_path(lake, request.id, family), _jsonable(info))
        return info
    finally:
        selector.release()


def _state_read(source: TableSource, family: str, path) -> dict:
    """The current state an extract is read from (the family and the parents it reaches the patient through)
    and the reception marks of its deliveries: ``snds report`` compares them with the state of the day."""
    read = {f: list(source.deliveries(f)) for f in dict.fromkeys([family, *(l.parent for l in path)])}
    marks = source.receptions()
    return {"deliveries_read": read,
            "receptions": {d: marks[d] for ids in read.values() for d in ids if d in marks}}


class StateChanged(RuntimeError):
    """The current state a project's extract reads is not the one its cohort was identified in."""


def _first_change(settings: Settings, read: dict[str, list[str]], marks: dict[str, str],
                  read_now: dict[str, list[str]], marks_now: dict[str, str]) -> tuple[str, str] | None:
    """(family, what became of it) for the first family of ``read_now`` (family -> its deliveries now) that is in
    ``read`` with other deliveries, or with a delivery whose reception mark is no longer the one of ``marks``
    (received again under its id, the ids as they were); None when none changed. A delivery that left because
    its reception has not finished says so: the operator waits for it, or runs it again, before extracting."""
    from ..reception.report import unfinished_receptions

    for family, now in read_now.items():
        again = received_again(now, marks, marks_now)
        if family in read and (now != list(read[family]) or again):
            return family, state_change(list(read[family]), now, again, unfinished_receptions(settings))
    return None


def _same_state_as_cohort(settings: Settings, request: ProjectRequest, cohort_info: dict,
                          read_now: dict[str, list[str]], marks_now: dict[str, str], perimeter: bool = False) -> None:
    """Refuse to extract from a current state other than the cohort's: a delivery accepted, rejected or
    received again since the cohort was identified (a reception running alongside the extraction, or an extract
    materialised alone later) would make the extract mix two states (the IR_BEN_R extract of a cohort identified
    in an IR_BEN_R since replaced holds none of its persons). Compared on the families both read (``read_now``:
    family -> its deliveries now), and with ``perimeter`` on every family the request named as the cohort found
    them, by the deliveries that make them up and by their reception marks (``marks_now``)."""
    read = dict(cohort_info.get("perimeter") or {}) if perimeter else {}
    read.update(cohort_info.get("deliveries") or {})
    changed = _first_change(settings, read, cohort_info.get("receptions") or {}, read_now, marks_now)
    if changed:
        family, how = changed
        raise StateChanged(  # what to do first: a one-line message is cut after 300 characters
            f"project {request.id}: the current state of {family} changed since the cohort was identified (a "
            "delivery accepted, rejected or received again meanwhile): extract the project again, cohort "
            f"included; {family}: {how}")


def _state_held(settings: Settings, request: ProjectRequest, sources: dict[str, list[str]], marks: dict[str, str],
                source: TableSource) -> None:
    """Refuse a cohort whose reads did not all see one current state. A reception running alongside withdraws its
    delivery's report as it starts and writes it again as it ends: a cohort whose IR_BEN_R was read before the
    withdrawal and whose criteria's tables after it was made of the identified persons alone, the criteria finding
    no table, and called complete. ``sources`` (family -> deliveries, as each was read) must still be the state,
    with the reception marks taken before the first read (``marks``)."""
    marks_now = source.receptions()
    changed = _first_change(settings, sources, marks, {family: list(source.deliveries(family)) for family in sources},
                            marks_now)
    if changed:
        family, how = changed
        raise StateChanged(  # what to do first: a one-line message is cut after 300 characters
            f"project {request.id}: the current state of {family} changed while the cohort was identified (a "
            f"reception running alongside): extract the project again once it has ended; {family}: {how}")


def _belongs_to_cohort(written: DataFrame, correspondence: DataFrame, selector: Selector, path) -> CheckOutcome:
    """Every row of the extract belongs to the cohort, by the way it was selected: a table that reaches the patient
    through a link (an affiliated DCIR table; a PMSI table, even one carrying a NIR of its own, SPEC §3) links to a
    selected row of its parent; another carries a project pseudonym of the cohort. T_MCOaaFASTC's files have no
    NIR_ANO_17 since 2008: its rows were selected through T_MCOaaCSTC and have no pseudonym to check."""
    name = "belongs_to_cohort"
    cols = set(written.columns)
    if path:
        link = path[0]
        on = list(link_columns(link))
        orphans = semi_join(written, selector.rows(link.parent), on, how="left_anti").count()
        return CheckOutcome(name, name, ERROR, passed=orphans == 0, failures=orphans, columns=on,
                            details=f"every row links to a selected {link.parent} row")
    if NUM_ENQ_IDT in cols:
        keys, on = correspondence.select(NUM_ENQ_IDT).distinct(), [NUM_ENQ_IDT]
    elif NUM_ENQ in cols and RNG in cols:
        keys = correspondence.select(NUM_ENQ, F.col(RNG).try_cast("int").alias(RNG)).distinct()
        written, on = written.withColumn(RNG, F.col(RNG).try_cast("int")), [NUM_ENQ, RNG]
    elif NUM_ENQ in cols:
        keys, on = correspondence.where(F.col(NIR_UNIQUE)).select(NUM_ENQ).distinct(), [NUM_ENQ]
    else:
        return CheckOutcome(name, name, ERROR, True, evaluated=False, details="no patient column to check")
    orphans = written.join(F.broadcast(keys), on, "left_anti").count()
    return CheckOutcome(name, name, ERROR, passed=orphans == 0, failures=orphans, columns=on,
                        details="every row carries a project pseudonym of the cohort")


_DELIVERY, _OUTSIDE = "__snds_delivery", "__snds_outside"  # carried to the observed counts, never written


def _outside(df: DataFrame, date_col: str, request: ProjectRequest) -> Column:
    return ~F.coalesce(in_period(df, date_col, request.period_start, request.period_end), F.lit(False))


def _in_period_check(outside, rows: int, date_col: str | None, path, in_extract: bool) -> CheckOutcome:
    """Checked on the written extract when it carries the care date; otherwise (a date column the project is
    not granted) on the selected rows, as they were written."""
    name = "in_period"
    if outside is None:
        via = f" (dated through {path[-1].parent})" if path else ""
        return CheckOutcome(name, name, ERROR, True, evaluated=False, details=f"no care date on this table{via}")
    where = "of the extract" if in_extract else f"selected ({date_col} is not granted: checked before it was dropped)"
    return CheckOutcome(name, name, ERROR, passed=int(outside) == 0, failures=int(outside), columns=[date_col],
                        details=f"{rows} rows {where} checked on {date_col}")


def _granted_check(written: DataFrame, catalog: Catalog, request: ProjectRequest, family: str,
                   withheld: list[str]) -> CheckOutcome:
    name = "granted_columns"
    allowed = allowed_output_columns(catalog, request, family)
    extra = sorted(set(written.columns) - allowed)
    details = "granted: " + ("all columns" if family not in request.columns else ", ".join(request.columns[family]))
    if withheld:
        details += f"; not handed out, unknown to the catalog: {', '.join(withheld)}"
    return CheckOutcome(name, name, ERROR, passed=not extra, failures=len(extra), columns=extra, details=details)


# --- Report --------------------------------------------------------------------------------------------------
def recorded_info(settings: Settings, project_id: str, name: str) -> dict | None:
    """What the last run of the project's cohort (``COHORT``) or of one family's extract recorded, if any."""
    return storage.read_json(_info_path(Lake(settings.lake), project_id, name))


def collect_infos(settings: Settings, request: ProjectRequest) -> tuple[dict | None, dict[str, dict]]:
    """What the last cohort and extract runs of the project recorded (for a report written in another step)."""
    extracts = {}
    for family in request.tables:
        info = recorded_info(settings, request.id, family)
        if info is not None:
            extracts[family] = info
    return recorded_info(settings, request.id, COHORT), extracts


def build_project_report(settings: Settings, catalog: Catalog, request: ProjectRequest) -> dict:
    """Write the project report from the recorded runs (the report asset's body)."""
    cohort, extracts = collect_infos(settings, request)
    return write_project_report(settings, request, cohort, extracts)


def run_project(spark: SparkSession, settings: Settings, catalog: Catalog, request: ProjectRequest,
                source: TableSource) -> dict:
    """The whole chain in one call (cohort, every family of the request, report), for scripts and tests."""
    cohort = run_cohort(spark, settings, catalog, request, source)
    extracts = {family: run_extract(spark, settings, catalog, request, family, source) for family in request.tables}
    return write_project_report(settings, request, cohort, extracts)


__all__ = [
    "build_project_report", "collect_infos", "load_cohort", "recorded_info", "run_cohort", "run_extract", "run_project",
    "write_parquet", "write_project_report",
]
