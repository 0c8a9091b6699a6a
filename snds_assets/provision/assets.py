"""Provision: per project, the cohort, one extract per authorised family, and the extraction report."""
import json
import logging
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from dagster import (
    AllPartitionMapping, AssetCheckKey, AssetCheckResult, AssetCheckSpec, AssetDep, AssetExecutionContext, AssetKey,
    AssetRecordsFilter, AssetSpec, AssetsDefinition, DagsterInstance, DagsterRun, DefaultSensorStatus,
    MaterializeResult, MetadataValue, RunRequest, SensorDefinition, SensorEvaluationContext, SensorResult, SkipReason,
    multi_asset, sensor,
)

from .. import domain
from ..catalog import Catalog, Table
from ..checks import (
    COHORT_CHECKS, EXTRACT_CHECKS, CheckOutcome, asset_check_results, emitted, not_evaluated, restated,
)
from ..lake import Lake
from ..logs import step_progress
from ..metadata import column_schema
from ..partitions import projects
from ..problems import told_as_failure
from ..resources import SndsResource
from ..runs import end_dead_runs, holds_project, sensor_run_key, unfinished_runs
from ..scratch import project_scratch, sweep
from ..spark import SparkResource, described, interrupt

if TYPE_CHECKING:
    from .request import ProjectRequest

OWNER = "team:snds-provision"
COHORT_KEY = AssetKey(["projects", "cohort"])
PROJECT_REPORT_KEY = AssetKey(["reports", "project"])


def extract_key(family: str) -> AssetKey:
    return AssetKey(["projects", family])


def extractable(catalog: Catalog, table: Table) -> bool:
    """Families that reach a patient: only those can be cut per cohort."""
    try:
        domain.patient_path(catalog, table.name)
    except LookupError:
        return False
    return True


def _outcomes(result: dict, names) -> list[CheckOutcome]:
    by_name = {c.name: c for c in result.get("checks", [])}
    return [by_name.get(n) or CheckOutcome(n, n, "WARN", True, evaluated=False, details="not applicable") for n in names]


def _restated_checks(settings, project_id: str, keys: Iterable[AssetCheckKey], log: logging.Logger
                     ) -> Iterator[AssetCheckResult]:
    """Cohort or extract checks executed without their asset: each gives again the verdict its asset's last run
    recorded (``checks.restated``), read from that run's record alone."""
    from .run import COHORT, recorded_info

    records: dict[AssetKey, dict] = {}
    for key in sorted(keys):
        if key.asset_key not in records:
            name = COHORT if key.asset_key == COHORT_KEY else key.asset_key.path[1]
            records[key.asset_key] = recorded_info(settings, project_id, name) or {}
        verdicts = {c["name"]: CheckOutcome(**c) for c in records[key.asset_key].get("checks", [])}
        yield from emitted(restated(key.name, verdicts.get(key.name), key.asset_key.to_user_string()),
                           key.asset_key, log)


def _with_patient_paths(catalog: Catalog, families: list[str]) -> list[str]:
    """``families`` the catalog has and the tables on their way to the patient, in order, once each."""
    out: list[str] = []
    for family in families:
        if family in catalog:
            out += [family] + [link.parent for link in domain.patient_path(catalog, family)]
    return [f for f in dict.fromkeys(out) if f in catalog]


# Where identifiers are resolved and every cohort's persons are read: the referential and its archives.
BENEFICIARY_SOURCES: tuple[str, ...] = (domain.BENEFICIARY_TABLE, *domain.archives_of(domain.BENEFICIARY_TABLE))


def cohort_sources(catalog: Catalog) -> list[str]:
    """The families identification reads: IR_BEN_R and its archive (identifiers), each criterion's tables and
    the tables on their way to the patient (domain.CRITERIA, domain.patient_path), those the catalog has."""
    criteria = [s.family for _, sources in domain.CRITERIA.values() for s in sources]
    return _with_patient_paths(catalog, [*BENEFICIARY_SOURCES, *criteria])


def project_sources(catalog: Catalog, request: "ProjectRequest") -> set[str]:
    """The curated families one project's cohort and extracts read, so that a delivery of any of them is known
    to leave the project stale: the beneficiaries, its criteria's tables, its extractable tables, each with the
    tables on their way to the patient."""
    criteria = [s.family for _, item in (request.criteria.items if request.criteria else [])
                for s in domain.CRITERIA[item.kind][1]]
    extracted = [f for f in request.tables if f in catalog and extractable(catalog, catalog[f])]
    return set(_with_patient_paths(catalog, [*BENEFICIARY_SOURCES, *criteria, *extracted]))


def extractions_in_progress(instance: DagsterInstance, project_id: str, run_id: str | None = None) -> list[DagsterRun]:
    """Queued or running runs on one project but ``run_id``, whoever started them (the sensors, `snds extract`,
    the UI): a second extraction alongside one would write the same folders."""
    runs = unfinished_runs(instance, {"dagster/partition": project_id, "snds/project": project_id}, run_id)
    return [r for r in runs if r.tags.get("snds/project") == project_id or holds_project(r)]  # not a delivery's


def _sweep_project(context: AssetExecutionContext, settings, project_id: str, rewritten) -> None:
    """Before a cohort or an extract is written, the scratch of this project's killed runs (``scratch``), with
    the folders they had moved aside among those ``rewritten`` now."""
    sweep(project_scratch(Lake(settings.lake), project_id, rewritten),
          extractions_in_progress(context.instance, project_id, context.run_id), context.log, f"project {project_id}")


def build_cohort_asset(catalog: Catalog, curated_key: Callable[[str], AssetKey]) -> AssetsDefinition:
    """A one-asset multi-asset, subsettable, so that a check not evaluated (``unresolved_identifiers`` of a project
    that brought none) can be left out, which Dagster shows *Skipped*, and a check can be executed alone."""
    spec = AssetSpec(
        COHORT_KEY, group_name="projects", kinds={"spark", "parquet"}, owners=[OWNER],
        deps=[AssetDep(curated_key(f), partition_mapping=AllPartitionMapping()) for f in cohort_sources(catalog)],
        description="The project's cohort: one row per person in project pseudonyms, found from the identifiers "
                    "the project brought (appariement) and/or its medical criteria (ciblage).",
    )

    @multi_asset(
        name="projects__cohort", specs=[spec], partitions_def=projects, can_subset=True,
        check_specs=[AssetCheckSpec(n, asset=COHORT_KEY, description=d, partitions_def=projects)
                     for n, d in COHORT_CHECKS.items()],
    )
    @told_as_failure
    def cohort(context: AssetExecutionContext, snds: SndsResource, spark: SparkResource):
        from ..curation.state import CurrentState
        from .request import load_request
        from .run import COHORT_FOLDERS, run_cohort

        settings, catalog = snds.settings(), snds.catalog()
        if COHORT_KEY not in context.selected_asset_keys:
            yield from _restated_checks(settings, context.partition_key, context.selected_asset_check_keys, context.log)
            return
        request = load_request(settings, catalog, context.partition_key)
        session = spark.get_session()
        _sweep_project(context, settings, context.partition_key, COHORT_FOLDERS)
        with described(session, f"project {context.partition_key}: cohort"):
            result = run_cohort(session, settings, catalog, request, CurrentState(session, settings, catalog))
        outcomes = _outcomes(result, COHORT_CHECKS)
        yield MaterializeResult(
            asset_key=COHORT_KEY,
            metadata={**{k: v for k, v in result.items() if isinstance(v, (int, str, float))},
                      "dagster/row_count": int(result.get("persons", 0)), **not_evaluated(outcomes)},
            check_results=asset_check_results(outcomes, COHORT_KEY),
        )

    return cohort


def _extract_spec(catalog: Catalog, table: Table, curated_key) -> AssetSpec:
    sources = [table.name] + [link.parent for link in domain.patient_path(catalog, table.name)]
    return AssetSpec(
        extract_key(table.name), group_name="projects", kinds={"spark", "parquet"}, owners=[OWNER], skippable=True,
        deps=[COHORT_KEY, *(AssetDep(curated_key(f), partition_mapping=AllPartitionMapping()) for f in sources if f in catalog)],
        description=f"{table.title} ({table.name}) for one project: the cohort's rows in the project's period and "
                    "granted columns, SNDS pseudonyms replaced by project pseudonyms (NUM_ENQ...).",
        metadata={"family": table.name},
    )


def _project_report_spec(extract_keys: list[AssetKey]) -> AssetSpec:
    """The report is an output of the ``extract`` step, not a step of its own: Dagster skips a step whose upstream
    asset was not materialised, so the whole ``provision`` job (the UI's way) skipped the report of every project
    not granted all the families, green, with the report its cohort step had marked incomplete left so."""
    return AssetSpec(
        PROJECT_REPORT_KEY, deps=[COHORT_KEY, *extract_keys], group_name="reports", kinds={"json", "html"},
        owners=[OWNER],
        description="The extraction report of a project (`LAKE/reports/projects/PROJECT_ID.json` and `.html`): cohort "
                    "size and how it was found, identifiers resolved / ambiguous / unknown, rows per table, deliveries "
                    "used.",
    )


def build_extract_assets(catalog: Catalog, curated_key: Callable[[str], AssetKey]) -> AssetsDefinition:
    tables = [t for t in catalog if extractable(catalog, t)]
    specs = [_extract_spec(catalog, t, curated_key) for t in tables]
    specs.append(_project_report_spec([s.key for s in specs]))
    check_specs = [AssetCheckSpec(n, asset=extract_key(t.name), description=d, partitions_def=projects)
                   for t in tables for n, d in EXTRACT_CHECKS.items()]

    @multi_asset(
        name="extract", specs=specs, check_specs=check_specs, partitions_def=projects, can_subset=True,
        description="Cut the selected families of the project's perimeter for its cohort, under project pseudonyms, "
                    "then write the project's report.",
    )
    @told_as_failure
    def extract(context: AssetExecutionContext, snds: SndsResource, spark: SparkResource):
        from ..curation.state import CurrentState
        from ..families import in_dependency_order
        from .request import load_request
        from .run import run_extract

        settings, catalog_ = snds.settings(), snds.catalog()
        request = load_request(settings, catalog_, context.partition_key)
        selected = [k.path[1] for k in context.selected_asset_keys if k != PROJECT_REPORT_KEY]
        outside = sorted(set(selected) - set(request.tables))
        if outside:
            context.log.info(f"not in the perimeter of project {request.id}, nothing extracted: {', '.join(outside)}")
        wanted = [f for f in request.tables if f in selected]
        _sweep_project(context, settings, context.partition_key, wanted)
        if wanted:
            session = spark.get_session()
            state = CurrentState(session, settings, catalog_)

            def extract_family(family: str) -> dict:
                with described(session, f"project {context.partition_key}: extract of {family}"):
                    return run_extract(session, settings, catalog_, request, family, state)

            def started(family: str, finished: int, total: int, under_way: list[str]) -> None:
                beside = f" ({', '.join(under_way)} under way)" if under_way else ""
                step_progress(context.log, finished + 1, total, f"extracting {family}{beside}")

            for family, result in in_dependency_order(wanted, {}, extract_family, settings.parallel_families, started,
                                                      on_interrupt=lambda: interrupt(session)):
                key = extract_key(family)
                schema = result.get("column_schema") or []
                outcomes = _outcomes(result, EXTRACT_CHECKS)
                yield MaterializeResult(
                    asset_key=key,
                    metadata={
                        "dagster/row_count": int(result.get("rows", 0)),
                        "dagster/column_schema": column_schema(catalog_[family], schema),
                        "deliveries used": ", ".join(result.get("deliveries", [])),
                        "path": MetadataValue.path(str(result.get("path", ""))),
                        **({"columns withheld (unknown to the catalog)": ", ".join(result["columns_withheld"])}
                           if result.get("columns_withheld") else {}),
                        **not_evaluated(outcomes),
                    },
                    check_results=asset_check_results(outcomes, key),
                )
        if PROJECT_REPORT_KEY in context.selected_asset_keys:
            yield _project_report_result(settings, catalog_, request)
        alone = [k for k in context.selected_asset_check_keys if k.asset_key not in context.selected_asset_keys]
        yield from _restated_checks(settings, request.id, alone, context.log)

    return extract


def _project_report_result(settings, catalog: Catalog, request: "ProjectRequest") -> MaterializeResult:
    """The project's extraction report, from what its cohort and extracts recorded, and the request it was made for."""
    from ..curation.state import CurrentState
    from .report import changes_since, state_read
    from .run import build_project_report

    report = build_project_report(settings, catalog, request)
    lake = Lake(settings.lake)
    # The request the extraction was made for; none while it is incomplete, nor when the state its cohort and
    # extracts read has changed since (the report materialised alone after a delivery): the refresh sensor takes a
    # fingerprint for an extraction of the current state, and would never extract the project again.
    cohort = report.get("cohort") or {}
    made_for = str(cohort.get("request_fingerprint") or "") if report.get("status") != "incomplete" else ""
    if made_for and changes_since(state_read(report), CurrentState(None, settings, catalog)):
        made_for = ""
    return MaterializeResult(asset_key=PROJECT_REPORT_KEY, metadata={
        "project": request.id,
        FINGERPRINT: made_for,
        "cohort size": int(cohort.get("size", 0)),
        "report": MetadataValue.path(lake.project_report(request.id)),
        "readable report": MetadataValue.path(lake.project_report(request.id, "html")),
    })


def project_selection(request: "ProjectRequest", catalog: Catalog) -> list[AssetKey]:
    families = [f for f in request.tables if f in catalog and extractable(catalog, catalog[f])]
    return [COHORT_KEY, *(extract_key(f) for f in families), PROJECT_REPORT_KEY]


FINGERPRINT = "request fingerprint"  # of the request the reported extraction was made for


def _last_extraction(instance, project_id: str) -> tuple[int, str] | None:
    """(storage id, request fingerprint) of the project's latest extraction report, whoever ran it (the UI, a
    sensor, ``snds extract`` or ``snds demo``, all through this instance)."""
    record = _last_extraction_record(instance, project_id)
    return None if record is None else (record.storage_id, _made_for(record))


def _made_for(record) -> str:
    """The request fingerprint a report materialisation was made for ("" while the extraction is incomplete)."""
    meta = record.asset_materialization.metadata if record.asset_materialization else {}
    return str(getattr(meta.get(FINGERPRINT), "value", "") or "")


def _last_extraction_record(instance, project_id: str):
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=PROJECT_REPORT_KEY, asset_partitions=[project_id]), limit=1, ascending=False,
    ).records
    return records[0] if records else None


def _extracted_after(instance, project_id: str, delivery) -> bool:
    """Whether the project's latest complete extraction read a current state the delivery's report ``delivery``
    (an event record) was part of: its run started after that report was recorded. The report's own time is no
    proof: a run that read the state before the report, then wrote its report after (a reception and an
    extraction at once), holds extracts without the delivery, or mixing the states before and after it. A report
    recorded without a run is compared by its place in the event log."""
    record = _last_extraction_record(instance, project_id)
    if record is None or not _made_for(record):
        return False  # none, or incomplete: no extraction to compare
    run = instance.get_run_record_by_id(record.run_id) if record.run_id else None
    if run is None or run.start_time is None:
        return record.storage_id > delivery.storage_id
    return run.start_time > delivery.timestamp


def _project_cursor(text: str | None) -> dict[str, list]:
    """The project sensor's cursor: ``{project id: [fingerprint, changes]}``, ``changes`` counting the versions
    run so far. An older cursor held the fingerprint alone: no change counted yet."""
    seen = json.loads(text) if text else {}
    return {pid: value if isinstance(value, list) else [value, 0] for pid, value in seen.items()}


def build_project_sensor(job_name: str) -> SensorDefinition:
    @sensor(
        name="project_requests", job_name=job_name, minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description="Watches SNDS_PROJECTS: registers each <project>.yaml as a project partition and requests an "
                    "extraction run when a request is new or has changed. Invalid requests are logged and skipped.",
    )
    def project_requests(context: SensorEvaluationContext, snds: SndsResource) -> SensorResult:
        """The run key counts the project's changes (kept in the cursor, and read from the instance's runs after
        a cursor reset: ``sensor_run_key``) besides its fingerprint: a request edited back to earlier content runs
        again, while a replayed tick asks for the same run."""
        from .request import RequestError, list_requests, load_request

        settings, catalog = snds.settings(), snds.catalog()
        end_dead_runs(context.instance, context.log)  # a project's dead run would hold it from the queue
        seen = _project_cursor(context.cursor)
        known = set(context.instance.get_dynamic_partitions(projects.name))
        requests, new = [], []
        for project_id, fingerprint in list_requests(settings):
            last, changes = seen.get(project_id, [None, 0])
            if last == fingerprint:
                continue
            done = _last_extraction(context.instance, project_id)
            if done and done[1] == fingerprint:  # a sensor starting over a home `snds demo` or `extract` filled
                seen[project_id] = [fingerprint, changes]
                context.log.info(f"project {project_id}: already extracted for this request")
                continue
            try:
                request = load_request(settings, catalog, project_id)
            except RequestError as exc:
                context.log.warning(f"skipping project {project_id}: {exc}")
                continue
            tags = {"snds/project": project_id, "snds/source": "sensor"}
            run_key = sensor_run_key(context.instance, tags, project_id, fingerprint, changes)
            seen[project_id] = [fingerprint, int(run_key.split(":")[1])]
            if project_id not in known:
                new.append(project_id)
            context.log.info(f"project {project_id}: request new or changed, requesting its extraction")
            requests.append(RunRequest(run_key=run_key, partition_key=project_id,
                                       asset_selection=project_selection(request, catalog), tags=tags))
        if not requests:
            return SensorResult(skip_reason=SkipReason("no new or changed project request"), cursor=json.dumps(seen, sort_keys=True))
        return SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[projects.build_add_request(new)] if new else [],
            cursor=json.dumps(seen, sort_keys=True),
        )

    return project_requests


# Reception reports read per tick: the cursor moves over these only, the next tick takes the rest.
REFRESH_EVENTS_PER_TICK = 20


def _delivered_families(catalog: Catalog, tables: object) -> set[str]:
    """The catalog families of a report's delivered table names (``T_MCO23B`` -> ``T_MCOaaB``); unknown names
    are left out."""
    families = set()
    for name in tables if isinstance(tables, (list, tuple)) else []:
        try:
            families.add(catalog.resolve(str(name))[0].name)
        except KeyError:
            continue
    return families


def _earlier_accepted_tables(instance, report_key: AssetKey, delivery_id: str, storage_id: int) -> list | None:
    """The delivered tables of the delivery's previous reception report when that report was accepted (the
    delivery then counted in the current state), else None."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=report_key, asset_partitions=[delivery_id], before_storage_id=storage_id),
        limit=1, ascending=False,
    ).records
    meta = records[0].asset_materialization.metadata if records and records[0].asset_materialization else {}
    if getattr(meta.get("status"), "value", None) != "accepted":
        return None
    tables = getattr(meta.get("tables"), "value", None)
    return list(tables) if isinstance(tables, (list, tuple)) else []


def _refresh_cursor(text: str | None) -> tuple[int | None, dict[str, int]]:
    """The refresh sensor's cursor: the storage id of the last reception report handled (None: no cursor yet),
    and the projects owed the reports after a storage id, their request unreadable when those passed. It is that
    id alone while nothing is owed, as it always was."""
    if text and text.isdigit():
        return int(text), {}
    data = json.loads(text) if text else {}
    after = data.get("after")
    return (int(after) if after is not None else None), {str(k): int(v) for k, v in data.get("owed", {}).items()}


def _refresh_cursor_text(after: int | None, owed: dict[str, int]) -> str:
    if not owed:
        return str(after if after is not None else 0)
    return json.dumps({"after": after, "owed": dict(sorted(owed.items()))})


def _reports_between(instance, report_key: AssetKey, since: int, until: int) -> list:
    """The reception reports after storage id ``since`` up to ``until`` included, in order, page by page."""
    out = []
    while since < until:
        page = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=report_key, after_storage_id=since, before_storage_id=until + 1),
            limit=REFRESH_EVENTS_PER_TICK, ascending=True,
        ).records
        if not page:
            break
        out += page
        since = page[-1].storage_id
    return out


def _changed_families(context: SensorEvaluationContext, catalog: Catalog, report_key: AssetKey, record,
                      told: bool = False) -> tuple[str, set[str]]:
    """The delivery a reception report is of, and the families whose current state it changes: those it
    delivered, accepted; those its earlier accepted report listed, received again (rejected now, or without
    them, their data leave the current state); none for a delivery not accepted and never accepted before.
    ``told``: log what the report changes (once per report)."""
    materialization = record.asset_materialization
    meta = materialization.metadata if materialization else {}
    delivery_id = str(getattr(meta.get("delivery_id"), "value", None) or record.partition_key)
    status = getattr(meta.get("status"), "value", None)
    families = _delivered_families(catalog, getattr(meta.get("tables"), "value", None))
    earlier = _earlier_accepted_tables(context.instance, report_key, delivery_id, record.storage_id)
    if status != "accepted":
        if earlier is None:
            if told:
                context.log.info(f"delivery {delivery_id} not accepted ({status}): extracts keep the current state")
            return delivery_id, set()
        if told:
            context.log.info(f"delivery {delivery_id} not accepted ({status}) after being accepted: its data "
                             "leave the current state")
    return delivery_id, families | _delivered_families(catalog, earlier or [])


def build_refresh_sensor(job_name: str, report_key: AssetKey) -> SensorDefinition:
    @sensor(
        name="refresh_extracts", job_name=job_name, minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description="When a delivery is accepted, or one accepted before is received again, re-extracts every "
                    "project whose cohort or extracts read one of its families (then or before), so extracts never "
                    "lag behind the current state. Every reception report is handled, in order, even several "
                    "between two ticks. Switch it off to refresh by hand.",
    )
    def refresh_extracts(context: SensorEvaluationContext, snds: SndsResource) -> SensorResult:
        """The cursor is the storage id of the last reception report handled; the run key holds the storage id
        of the last report that concerns the project, so a replayed tick asks for the same runs and a delivery
        accepted again refreshes again. With no cursor (a sensor switched on over an instance's history), only the
        latest report is handled, as an asset sensor would: the past deliveries are in the current state already.
        A project whose request cannot be read when reports pass is owed them (``_refresh_cursor``): once its
        request reads again, those reports are handled for it."""
        from .request import RequestError, list_requests, load_request

        after, owed = _refresh_cursor(context.cursor)
        if after is not None:
            records = context.instance.fetch_materializations(
                AssetRecordsFilter(asset_key=report_key, after_storage_id=after),
                limit=REFRESH_EVENTS_PER_TICK, ascending=True,
            ).records
        else:
            records = context.instance.fetch_materializations(report_key, limit=1, ascending=False).records
        if not records and not owed:
            return SensorResult(skip_reason=SkipReason("no new reception report"), cursor=context.cursor or "0")
        handled = records[-1].storage_id if records else after
        settings, catalog = snds.settings(), snds.catalog()
        requests, listed = [], set()
        for project_id, _ in list_requests(settings):
            listed.add(project_id)
            try:
                requests.append(load_request(settings, catalog, project_id))
            except RequestError as exc:
                if records:
                    owed.setdefault(project_id, records[0].storage_id - 1)
                    context.log.warning(f"not refreshing project {project_id}, owed the reception reports after "
                                        f"storage id {owed[project_id]} until its request reads: {exc}")
        readable = {r.id for r in requests}
        late = {pid: _reports_between(context.instance, report_key, since, after)
                for pid, since in owed.items() if pid in readable and after is not None}
        # a request read again is owed nothing more; one removed neither
        cursor = _refresh_cursor_text(handled, {p: s for p, s in owed.items() if p in listed and p not in readable})
        sources = {r.id: project_sources(catalog, r) for r in requests}
        changed = []
        for record in records:
            delivery_id, families = _changed_families(context, catalog, report_key, record, told=True)
            if families and not any(families & sources[r.id] for r in requests):
                context.log.info(f"delivery {delivery_id}: no project reads its families")
            changed.append((record, delivery_id, families))
        # One run per project per tick, after every delivery of the batch that concerns it: each run
        # re-extracts from the current state, so one refresh covers several deliveries.
        stale: dict[str, tuple["ProjectRequest", list[str], int]] = {}
        for request in requests:
            owed_to_it = [(r, *_changed_families(context, catalog, report_key, r)) for r in late.get(request.id, [])]
            if request.id in late:
                context.log.info(f"project {request.id}: its request reads again; handling the "
                                 f"{len(owed_to_it)} reception report(s) it was owed")
            for record, delivery_id, families in [*owed_to_it, *changed]:
                if families & sources[request.id]:
                    # a delivery received twice in the batch is named once, where it came last
                    deliveries = [d for d in stale.get(request.id, (request, [], None))[1] if d != delivery_id]
                    stale[request.id] = (request, [*deliveries, delivery_id], record)
        if not stale:
            why = "no project reads the families of the accepted deliveries" if records else "no new reception report"
            return SensorResult(skip_reason=SkipReason(why), cursor=cursor)
        for project_id, (_, deliveries, latest) in list(stale.items()):
            # extracted since (`snds demo` extracts right after its ingest): by a run started after the report
            if _extracted_after(context.instance, project_id, latest):
                context.log.info(f"project {project_id}: extracted after delivery {deliveries[-1]} already")
                del stale[project_id]
        if not stale:
            return SensorResult(skip_reason=SkipReason("every project concerned was extracted since"), cursor=cursor)
        known = set(context.instance.get_dynamic_partitions(projects.name))
        runs = []
        for project_id, (request, deliveries, latest) in stale.items():
            context.log.info(f"refreshing project {project_id} after delivery {', '.join(deliveries)}")
            runs.append(RunRequest(
                run_key=f"{project_id}:after:{deliveries[-1]}:{latest.storage_id}", partition_key=project_id,
                asset_selection=project_selection(request, catalog),
                # the latest delivery as the reception holds key on it (a tag holds one value), every one listed
                tags={"snds/project": project_id, "snds/source": "refresh", "snds/delivery": deliveries[-1],
                      "snds/deliveries": ", ".join(deliveries)},
            ))
        new = sorted(stale.keys() - known)
        return SensorResult(
            run_requests=runs,
            dynamic_partitions_requests=[projects.build_add_request(new)] if new else [],
            cursor=cursor,
        )

    return refresh_extracts
