"""What each `snds` subcommand does; the argument parsing and exit-code contract live in cli.py."""
from __future__ import annotations

import argparse
import csv
import errno
import gzip
import io
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .cli import EXIT_OK, EXIT_REJECTED, UsageError, setting_name, unusable_folder
from .config import Settings, resolve_path

if TYPE_CHECKING:
    from dagster import DagsterInstance, ExecuteInProcessResult

DEMO_PROJECT = "demo-covid"


def add_partition(instance: DagsterInstance, partitions: str, key: str) -> None:
    """Add a delivery's or a project's partition unless it exists. Two commands on one new delivery started at once
    both saw it missing, and the second's insert failed with SQLite's "UNIQUE constraint failed" instead of being
    refused as a second run of the delivery (``runs.take_turn``)."""
    if instance.has_dynamic_partition(partitions, key):
        return
    try:
        instance.add_dynamic_partitions(partitions, [key])
    except Exception:
        if not instance.has_dynamic_partition(partitions, key):
            raise


def _run(settings: Settings, job_name: str, partitions: str, key: str, selection, log_format: str, tags: dict):
    """Run one partition of a job in this process, through the shared Dagster instance."""
    from dagster import DagsterInstance

    from .definitions import build_definitions
    from .runs import process_tags

    instance = DagsterInstance.get()
    add_partition(instance, partitions, key)
    defs = build_definitions(settings)
    job = defs.resolve_job_def(job_name)
    logger = "json" if log_format == "json" else "progress"
    config = {"log_level": "DEBUG"}  # Dagster events are DEBUG records
    run_id = str(uuid.uuid4())  # known before the run exists, so that the run names this process from its start
    result = job.execute_in_process(
        instance=instance, partition_key=key, asset_selection=selection, raise_on_error=False,
        run_config={"loggers": {logger: {"config": config}}}, run_id=run_id,
        tags={**tags, "snds/source": "cli", **process_tags(run_id)},
    )
    if not result.success:
        raise run_error(result, settings.lake, settings.landing)
    return result


class RunInterrupted(Exception):
    """A run stopped by Ctrl-C: no error to trace, a run to start again."""


def _interrupted(result: ExecuteInProcessResult, lake: str | None = None) -> RunInterrupted:
    """What Ctrl-C left: every write is staged, and a run that fails removes its staged writes (``interruption_left``
    says the rest)."""
    from .runs import interruption_left

    left, _ = interruption_left(lake, result.dagster_run.tags)
    return RunInterrupted(f"run {result.run_id} interrupted (Ctrl-C or SIGTERM): its staged writes are removed; "
                          f"{left}: run {_again(result)} to finish it")


# What a failed run's cause says when a disk is full, or when Spark's JVM ran out of memory.
NO_SPACE = "No space left on device"
OUT_OF_MEMORY = "java.lang.OutOfMemoryError"
FILE_GONE = "FAILED_READ_FILE.FILE_NOT_EXIST"
# What Py4J raises once the Spark JVM of a local session has ended: the query under way loses its answer, every
# later call its connection.
JVM_GONE = ("ConnectionRefusedError", "Py4JNetworkError")


def _again(result: ExecuteInProcessResult) -> str:
    """The command that runs the failed run's delivery or project again."""
    tags = result.dagster_run.tags
    if "snds/project" in tags:
        return f"snds extract {tags['snds/project']}"
    return f"snds ingest {tags.get('snds/delivery', tags.get('dagster/partition', 'DELIVERY_ID'))}"


def _full_disk(result: ExecuteInProcessResult, lake: str | None) -> str:
    """What to do when a disk filled up during a run: where to look, and that nothing is left half-written."""
    where = f"where the lake is ({lake}), " if lake else ""
    return (f"a disk is full: free space {where}in Spark's scratch folder (spark.local.dir, /tmp by default) or "
            f"DAGSTER_HOME, then run {_again(result)} again (its staged writes are removed; what it had published "
            "stays)")


def _out_of_memory(result: ExecuteInProcessResult) -> str:
    """What to do when Spark's JVM ran out of memory (a local session has 4 GiB unless told otherwise)."""
    return ("Spark ran out of memory: give it more (spark.driver.memory, 4g by default, in the spark-defaults.conf of "
            f"SPARK_CONF_DIR; on a cluster, its executors' memory), then run {_again(result)} again (its staged "
            "writes are removed)")


def _file_gone(result: ExecuteInProcessResult) -> str:
    """What to do when a file Spark had listed was gone when it came to read it (Spark's own line says only that the
    file does not exist, its message goes on to a SQL REFRESH TABLE, of no use here)."""
    return (f"a file of the lake was removed while the run read it (a reception running alongside replaced its "
            f"partition, or the lake was changed by hand): run {_again(result)} again, once that reception has ended")


def _jvm_gone(result: ExecuteInProcessResult) -> str:
    """What to do when the Spark JVM ended under the run (``kill -9``, or the kernel's out-of-memory killer, which
    leaves no Java error): Py4J says only that its connection was refused."""
    return (f"Spark's JVM ended during the run (killed: by the kernel when the machine ran short of memory, see "
            f"dmesg, or by hand): run {_again(result)} again (its staged writes are removed)")


def run_error(result: ExecuteInProcessResult, lake: str | None = None, landing: str | None = None) -> Exception:
    """What a failed run raises: its first failure's cause, as one line. A Spark Connect server that stopped
    answering (after the command's own check) stays a user error, told without the class's module path; a full
    disk says where to look."""
    from dagster import DagsterEventType

    from .logs import INTERRUPTIONS, _failure_message, failure_cause
    from .reception.storage import azure_refusal

    # A run failure's value is "PIPELINE_FAILURE": a run failing before any step (a resource refusing it) is told too
    failures = [e for e in result.all_events if e.event_type_value == DagsterEventType.STEP_FAILURE.value
                or (e.event_type_value == DagsterEventType.RUN_FAILURE.value
                    and getattr(e.event_specific_data, "error", None) is not None)]
    detail = _failure_message(failures[0]) if failures else "the run failed"
    cause = failure_cause(failures[0]) if failures else None
    if cause is not None and cause.cls_name in INTERRUPTIONS:
        return _interrupted(result, lake)
    if cause is not None and cause.cls_name == "SparkConnectUnreachable":
        from .spark import SparkConnectUnreachable

        return SparkConnectUnreachable(f"run {result.run_id} failed: {detail}")
    said = f"{detail}\n{cause.message if cause is not None else ''}"
    refused = azure_refusal(cause.cls_name if cause is not None else "", said,
                            {"SNDS_LANDING": landing or "", "SNDS_LAKE": lake or ""})
    if refused:
        detail = f"{refused}; {detail}"
    elif NO_SPACE in said:
        detail = f"{_full_disk(result, lake)}; {detail}"  # first: the one line is cut after 400 characters
    elif OUT_OF_MEMORY in said:
        detail = f"{_out_of_memory(result)}; {detail}"
    elif FILE_GONE in said:
        detail = f"{_file_gone(result)}; {detail}"
    elif cause is not None and cause.cls_name in JVM_GONE:
        detail = f"{_jvm_gone(result)}; {detail}"
    error = RuntimeError(f"run {result.run_id} failed: {detail}")
    if failures and getattr(failures[0].event_specific_data, "error", None) is not None:
        # The details log (cli._write_traceback) held this function's traceback only, not the step's: where it
        # failed, and a Spark failure's Java stack trace (no longer printed on stderr).
        error.add_note(f"The run's failure, as Dagster recorded it:\n{failures[0].event_specific_data.error.to_string()}")
    return error


def cmd_generate(settings: Settings, args: argparse.Namespace, log_format: str) -> int:
    from .generator import GenerateOptions, generate
    from .lake import join
    from .reception.manifest import DELIVERY_ID_FORM, valid_delivery_id
    from .reception.storage import (azure_errors_told, delivery_folder_used, filesystem, is_local,
                                     upload_delivery)
    from .resources import load_catalog

    if not valid_delivery_id(args.delivery_id):
        raise UsageError(f"--delivery-id {args.delivery_id!r} is not {DELIVERY_ID_FORM}")
    if args.patients < 1:
        raise UsageError("--patients must be at least 1")
    if args.rows_per_file is not None and args.rows_per_file < 1:  # the generator named its field, not the option
        raise UsageError("--rows-per-file must be at least 1")
    landing = resolve_path(args.out, "--out") if args.out else settings.landing
    remote = not is_local(filesystem(landing)[0])
    setting = "--out" if args.out else setting_name(args, "landing")
    with azure_errors_told(landing, setting):
        used = remote and delivery_folder_used(landing, args.delivery_id)
    if used:
        raise UsageError(f"{join(landing, args.delivery_id)} already exists: choose another delivery id")
    blocked = None if remote else unusable_folder(setting, landing)
    if blocked:
        raise blocked
    # A landing zone on object storage (az://) gets the delivery written locally first (in TMPDIR), then uploaded.
    out = Path(tempfile.mkdtemp(prefix="snds-generate-")) if remote else Path(landing)
    tables = [t.strip() for t in args.tables.split(",") if t.strip()] if args.tables else None
    progress = _progress_printer(log_format)
    try:
        result = generate(
            GenerateOptions(
                out=out, delivery_id=args.delivery_id, patients=args.patients, seed=args.seed, defects=args.defects,
                start=args.start, end=args.end, tables=tables, catalog=load_catalog(settings.schemas),
                nomenclatures=settings.nomenclatures, gzip=args.gzip, rows_per_file=args.rows_per_file,
                delimiter=args.delimiter, encoding=args.encoding, date_format=args.date_format,
            ),
            progress=progress,
        )
        where = str(result.delivery_dir)
        truth = str(result.ground_truth) if result.ground_truth else None
        if remote:
            try:
                with azure_errors_told(landing, setting):
                    where = upload_delivery(str(out), landing, args.delivery_id, progress)
            except FileExistsError as exc:
                raise UsageError(str(exc)) from exc
            truth = join(landing, f"{args.delivery_id}.defects.json") if truth else None
    finally:
        if remote:
            shutil.rmtree(out, ignore_errors=True)
    total = sum(result.rows.values())
    print(f"delivery {args.delivery_id}: {len(result.rows)} tables, {total} rows in {where}")
    if truth:
        print(f"defects ground truth: {truth}")
    return EXIT_OK


def _progress_printer(log_format: str):
    from .logs import ProgressBar

    bar = ProgressBar()

    def progress(table: str, done: int, total: int) -> None:
        if log_format == "json":
            print(json.dumps({"event": "generate_progress", "table": table, "done": done, "total": total}), file=sys.stderr)
            return
        bar.update(f"  {table:<12}", done, total)

    return progress


def cmd_ingest(settings: Settings, args: argparse.Namespace, log_format: str) -> int:
    """Receive one delivery now; refused (exit 2) while a reception of the same delivery is queued or running,
    e.g. one the sensor of `snds ui` requested: both would write the same folders of the lake. While another
    delivery's reception runs, the run waits for it, saying so (``runs.take_turn``)."""
    from dagster import DagsterInstance

    from .definitions import RECEPTION_JOB
    from .reception.assets import delivery_selection, receptions_in_progress
    from .reception.manifest import DELIVERY_ID_FORM, ManifestError, valid_delivery_id
    from .reception.report import load_report
    from .reception.storage import read_manifest
    from .runs import delivery_held_by
    from .resources import load_catalog

    delivery_id = args.delivery_id
    if not valid_delivery_id(delivery_id):
        raise UsageError(f"delivery id {delivery_id!r} is not {DELIVERY_ID_FORM}")
    try:
        manifest = read_manifest(settings.landing, delivery_id)
    except ManifestError as exc:  # "manifest.json is not valid JSON (…)": of which delivery?
        if delivery_id in str(exc):
            raise
        raise ManifestError(f"delivery {delivery_id}: {exc}") from exc
    busy = receptions_in_progress(DagsterInstance.get(), delivery_id)
    if busy:
        raise UsageError(f"delivery {delivery_id} {delivery_held_by(busy[0])}: wait for it to end, or terminate it "
                         "in the UI")
    catalog = load_catalog(settings.schemas)
    selection = delivery_selection(catalog, manifest)
    _run(settings, RECEPTION_JOB, "deliveries", delivery_id, selection, log_format, {"snds/delivery": delivery_id})
    report = load_report(settings, delivery_id)
    if report is None:
        raise RuntimeError(f"the reception report of {delivery_id} was not written")
    print(_delivery_summary(settings, report))
    return EXIT_OK if report["status"] == "accepted" else EXIT_REJECTED


def cmd_extract(settings: Settings, args: argparse.Namespace, log_format: str) -> int:
    from dagster import DagsterInstance

    from .provision.assets import extractions_in_progress, project_selection
    from .provision.request import load_request
    from .resources import load_catalog
    from .runs import describe_run

    catalog = load_catalog(settings.schemas)
    request = load_request(settings, catalog, args.project_id)
    busy = extractions_in_progress(DagsterInstance.get(), request.id)
    if busy:  # a second extraction alongside would write the same project folders
        raise UsageError(f"project {request.id} is already being extracted by {describe_run(busy[0])}: wait for "
                         "it to end, or terminate it in the UI")
    _run(settings, "provision", "projects", request.id, project_selection(request, catalog), log_format,
         {"snds/project": request.id})
    report = _project_report(settings, request.id)
    if report is None:
        raise RuntimeError(f"the extraction report of {request.id} was not written")
    print(_project_summary(settings, request.id, report))
    return _project_status(report)


def _project_report(settings: Settings, project_id: str) -> dict | None:
    from .lake import Lake
    from .provision.storage import read_json

    return read_json(Lake(settings.lake).project_report(project_id))


def _project_status(report: dict) -> int:
    """SPEC §4: 1 when an ERROR check of the extraction failed (the report's status is then ``failed``)."""
    return EXIT_REJECTED if report.get("status") == "failed" else EXIT_OK


def cmd_report(settings: Settings, args: argparse.Namespace, log_format: str) -> int:
    from .provision.report import state_read
    from .provision.request import PROJECT_ID
    from .reception.manifest import valid_delivery_id
    from .reception.report import load_report, previous_report_path, reception_started
    from .lake import join
    from .reception.storage import StorageError, lake_exists, read_lake_bytes

    if not (valid_delivery_id(args.target) or PROJECT_ID.fullmatch(args.target)):
        raise UsageError(f"{args.target!r} is neither a delivery id (YYYY-MM-DD[_suffix]) nor a project id "
                         "([a-z0-9_-]+)")
    from .lake import Lake

    lake = Lake(settings.lake)
    path = lake.delivery_report(args.target)
    project, unfinished = None, False
    try:
        report = load_report(settings, args.target)
        if report is not None:
            print(_delivery_summary(settings, report))
            return EXIT_OK if report["status"] == "accepted" else EXIT_REJECTED
        path = lake.project_report(args.target)
        project = _project_report(settings, args.target)
        if project is not None:
            summary = _project_summary(settings, args.target, project)
            unfinished = project.get("status") == "incomplete"
            read = state_read(project)  # read here: a delivery report unreadable below is named as itself
    except StorageError as exc:  # the lake not reached (credentials): the report may be right, not to build again
        raise UsageError(str(exc)) from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # A truncated or hand-edited file said only "Expecting property name…" or "'delivery_id'".
        raise UsageError(f"{path} is not a readable report ({type(exc).__name__}: {exc}): build it again with "
                         "snds ingest or snds extract") from exc
    lagging: list[str] = []
    if project is not None:
        try:
            lagging = [] if unfinished else _lagging(settings, args.target, project, read)
        finally:  # its first line says so: stdout alone read "COMPLETE" of extracts out of date
            print(_project_summary(settings, args.target, project, out_of_date=True) if lagging else summary)
    if project is not None and not unfinished and not lagging:
        return _project_status(project)
    if lagging:
        # A COMPLETE report read after a later delivery, or a request narrowed since, let `snds report P &&
        # hand-over` hand out what the project no longer is.
        raise UsageError(f"project {args.target}: its extracts are out of date (its request changed, or a delivery "
                         f"was accepted, rejected or received again since): run snds extract {args.target}, or let "
                         f"snds ui's sensors do it; {'; '.join(lagging)}")
    if unfinished:
        # Exit 0 ("done and accepted") let `snds report P && hand-over` hand out a killed extraction's stale extracts.
        raise UsageError(f"project {args.target}: its extraction has not finished (still running, or interrupted: "
                         f"then run snds extract {args.target}); its extracts not marked extracted are not to be "
                         "handed over")
    if valid_delivery_id(args.target) and read_lake_bytes(previous_report_path(settings, args.target)) is not None:
        raise UsageError(f"delivery {args.target}: its reception started again and has not finished (still running, or "
                         f"interrupted: then run snds ingest {args.target}); the earlier report, withdrawn meanwhile, "
                         f"is {previous_report_path(settings, args.target)}")
    # A first reception killed half-way was told as "no report named …", as if the delivery had never been ingested.
    if valid_delivery_id(args.target) and reception_started(settings, args.target):
        raise UsageError(f"delivery {args.target}: its reception started and has not finished (still running, or "
                         f"interrupted: then run snds ingest {args.target}); it has no report yet")
    if not valid_delivery_id(args.target):
        from .provision.request import request_path

        if request_path(settings, args.target).is_file():
            raise UsageError(f"project {args.target} has no report yet: its extraction has not completed (never "
                             f"run, still running, or failed: the failure said why); run snds extract {args.target}")
    if not lake_exists(join(settings.lake, "reports")):
        # From a folder without the home, the default lake (./.snds/lake) is not the one the user meant.
        given = setting_name(args, "lake")
        given = f"under {given}" if given in ("SNDS_HOME", "--home") else given
        raise UsageError(f"no delivery or project report named {args.target!r}: the lake {settings.lake} ({given}) "
                         "holds no report at all (no delivery was ingested into it): is it the lake you meant?")
    raise UsageError(f"no delivery or project report named {args.target!r} in {settings.lake}/reports")


def _lagging(settings: Settings, project_id: str, report: dict, read: tuple) -> list[str]:
    """What changed since the project's cohort and extracts were made (``read``, from ``state_read``): its
    request (as the project sensor compares it), then, per family, the current state (as the refresh sensor
    would)."""
    from .catalog import Catalog
    from .curation.state import CurrentState
    from .provision.report import changes_since
    from .provision.request import request_fingerprint, request_path

    changes = []
    made_for = (report.get("cohort") or {}).get("request_fingerprint")
    path = request_path(settings, project_id)
    if made_for and not path.is_file():
        raise UsageError(f"project {project_id}: its request {path} was removed since its extraction: its extracts "
                         "are no longer requested and not to be handed over")
    if made_for and request_fingerprint(path) != made_for:
        changes.append(f"its request {path} (or its identifiers file) changed")
    if read[0]:  # none in a report with no cohort, or written before reports named their state
        changes += changes_since(read, CurrentState(None, settings, Catalog.load(settings.schemas)), settings)
    return changes


def _delivery_summary(settings: Settings, report: dict) -> str:
    from .lake import Lake
    from .reception.report import short_list

    lake = Lake(settings.lake)
    lines = [f"delivery {report['delivery_id']}: {report['status'].upper()}"]
    width = max((len(n) for n in report["tables"]), default=5)
    for name, table in sorted(report["tables"].items()):
        counts = ("not curated" if table.get("rows_read") is None  # not in the catalog, or its curation failed
                  else f"read {table['rows_read']}  curated {table['rows_curated']}  rejected {table['rows_rejected']}")
        lines.append(f"  {name:<{width}}  {table['status']:<8}  {counts}" + _failed_checks(table))
    unlisted = report.get("unlisted_files") or []
    if unlisted:
        lines.append(f"  not received: {len(unlisted)} file(s) of the delivery folder that its manifest does not list: "
                     + short_list(unlisted, 5, 120))
    lines.append(f"report: {lake.delivery_report(report['delivery_id'])} (readable: "
                 f"{lake.delivery_report(report['delivery_id'], 'html')})")
    return "\n".join(lines)


def _failed_checks(part: dict) -> str:
    """The failed checks of a table or cohort, WARN ones included and marked, as the summaries end its line."""
    failed = [c["name"] + (" (WARN)" if c.get("severity") == "WARN" else "") for c in part.get("checks", [])
              if not c.get("passed", True)]
    return f"  failed: {', '.join(failed)}" if failed else ""


def _project_summary(settings: Settings, project_id: str, report: dict, out_of_date: bool = False) -> str:
    """Its status, the cohort's size, its unresolved identifiers and every failed check, WARN ones included: a
    COMPLETE project may have left identifiers of its CSV unresolved."""
    from .lake import Lake
    from .provision.report import archive_not_requested

    lake = Lake(settings.lake)
    cohort = report.get("cohort")
    head = f"project {project_id}: {report.get('status', '').upper()}, " + ("OUT OF DATE, " if out_of_date else "")
    if cohort is None:
        head += "no cohort"
    else:
        size = cohort.get("size")
        head += f"cohort of {size} {'person' if size == 1 else 'persons'}"
    ids = report.get("identifiers") or {}
    unresolved = (ids.get("ambiguous") or 0) + (ids.get("unknown") or 0)
    if unresolved:
        head += (f", {unresolved} of {ids.get('rows')} identifiers unresolved ({ids.get('ambiguous') or 0} ambiguous, "
                 f"{ids.get('unknown') or 0} unknown)")
    lines = [head + _failed_checks(cohort or {})]
    note = archive_not_requested(report)
    if note:
        lines.append(f"  {note}")
    for name, table in sorted(report.get("tables", {}).items()):
        status = table.get("status")
        told = f"  {status}" if status not in (None, "extracted") else ""
        lines.append(f"  {name:<14} {table.get('rows')} rows{told}" + _failed_checks(table))
    lines.append(f"extracts: {lake.project(project_id)}")
    lines.append(f"report: {lake.project_report(project_id)} (readable: {lake.project_report(project_id, 'html')})")
    return "\n".join(lines)


def cmd_demo(settings: Settings, args: argparse.Namespace, log_format: str) -> int:
    """The whole chain on synthetic data: generate, ingest, write a demo project request, extract."""
    delivery_id = "2024-01-15"
    # Named as the demo's own settings in generate's messages (its --home or --landing, else SNDS_HOME).
    ns = argparse.Namespace(command="demo", home=getattr(args, "home", None), landing=getattr(args, "landing", None),
                            environ=getattr(args, "environ", {}),
                            out=None, delivery_id=delivery_id, patients=2000, seed=42, defects=False,
                            start=__import__("datetime").date(2022, 1, 1), end=__import__("datetime").date(2023, 12, 31),
                            tables=None, gzip=False, rows_per_file=None, delimiter=";", encoding="utf-8",
                            date_format="default")
    from .lake import join
    from .reception.storage import delivery_folder_used

    if delivery_folder_used(settings.landing, delivery_id):
        # The demo's delivery id is fixed: "choose another delivery id", generate's advice, cannot be followed.
        raise UsageError(f"{join(settings.landing, delivery_id)} already holds a delivery (a previous demo?): remove "
                         f"that folder, or the demo's home {settings.home}, or give the demo another --home")
    print(f"1/3 generating a synthetic delivery (a population of 2000 persons) in {settings.landing}/{delivery_id}")
    cmd_generate(settings, ns, log_format)
    print(f"2/3 receiving delivery {delivery_id}")
    status = cmd_ingest(settings, argparse.Namespace(delivery_id=delivery_id), log_format)
    write_demo_project(settings, delivery_id)
    print(f"3/3 extracting project {DEMO_PROJECT} ({settings.projects}/{DEMO_PROJECT}.yaml)")
    extracted = cmd_extract(settings, argparse.Namespace(project_id=DEMO_PROJECT), log_format)
    from .lake import Lake

    lake = Lake(settings.lake)
    print("\noutputs:")
    print(f"  curated tables   {lake.root}/curated/")
    print(f"  reception report {lake.delivery_report(delivery_id, 'html')}")
    print(f"  project extracts {lake.project(DEMO_PROJECT)}")
    print(f"  project report   {lake.project_report(DEMO_PROJECT, 'html')}")
    command = ui_command(settings, getattr(args, "environ", os.environ))
    plain = command == shlex.join([_program(), "ui"])
    print(f"  the UI           {f'make ui (or: {command})' if plain else command}, then http://127.0.0.1:3000")
    return max(status, extracted)


def ui_command(settings: Settings, environ: Mapping[str, str]) -> str:
    """The `snds ui` command that opens these settings' instance and lake from the shell of ``environ``. The demo
    ignores the shell's DAGSTER_HOME, SNDS_LAKE… (cli.DEMO_IGNORES), which `snds ui` takes (option > variable >
    default): the options it needs are given, and DAGSTER_HOME, which has none, is set on the command."""
    options: dict[str, str] = {}
    if Settings.from_env(env=dict(environ)).home != settings.home:
        options["home"] = settings.home
    ui = Settings.from_env(env=dict(environ), **options)
    for name in ("landing", "lake", "projects", "schemas", "nomenclatures"):
        if getattr(settings, name) is not None and getattr(ui, name) != getattr(settings, name):
            options[name] = getattr(settings, name)
    command = shlex.join([_program(), *(word for name, value in options.items() for word in (f"--{name}", value)),
                          "ui"])
    if ui.dagster_home != settings.dagster_home:
        command = f"DAGSTER_HOME={shlex.quote(settings.dagster_home)} {command}"
    return command


def _program() -> str:
    """How the shell reaches this `snds`: by name when PATH finds it, else by the path it was started by
    (`make demo` runs .venv/bin/snds, which PATH lacks until the virtual environment is activated)."""
    started = sys.argv[0]
    if os.path.basename(started) != "snds":
        return "snds"
    found = shutil.which("snds")
    return "snds" if found and os.path.realpath(found) == os.path.realpath(started) else started


def write_demo_project(settings: Settings, delivery_id: str) -> Path:
    """A request with both identifiers (some of them twins' or unknown) and medical criteria."""
    projects = Path(settings.projects)
    projects.mkdir(parents=True, exist_ok=True)
    rows = _landing_rows(settings, delivery_id, "IR_BEN_R")
    picked = rows[:: max(1, len(rows) // 8)][:8]
    with (projects / f"{DEMO_PROJECT}-ids.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=";")
        writer.writerow(["BEN_IDT_ANO", "BEN_NIR_PSA", "BEN_RNG_GEM", "NIR_ANO_17"])
        for i, row in enumerate(picked):
            if i % 3 == 0:
                writer.writerow([row.get("BEN_IDT_ANO", ""), "", "", ""])
            elif i % 3 == 1:
                writer.writerow(["", row.get("BEN_NIR_PSA", ""), row.get("BEN_RNG_GEM", ""), ""])
            else:
                writer.writerow(["", "", "", row.get("BEN_NIR_PSA", "")])
        writer.writerow(["", "", "", "ZZZZZZZZZZZZZZZZZ"])
    (projects / f"{DEMO_PROJECT}.yaml").write_text(
        f"""id: {DEMO_PROJECT}
title: Démo — patients hospitalisés pour Covid-19 ou diabétiques
period: {{start: 2022-01-01, end: 2023-12-31}}
tables: [IR_BEN_R, IR_IMB_R, ER_PRS_F, ER_PHA_F, ER_CAM_F, T_MCOaaB, T_MCOaaC, T_MCOaaD, T_MCOaaA, KI_CCI_R]
columns:
  ER_PRS_F: [EXE_SOI_DTD, EXE_SOI_DTF, PRS_NAT_REF, PRS_ACT_QTE, DPN_QLF]
cohort:
  identifiers: {DEMO_PROJECT}-ids.csv
  criteria:
    any_of:
      - diagnosis: {{icd10: [U071, U072]}}
      - ald: {{icd10: [E10, E11]}}
    age: {{min: 18, max: 120}}
""", encoding="utf-8")
    return projects / f"{DEMO_PROJECT}.yaml"


def _landing_rows(settings: Settings, delivery_id: str, table: str) -> list[dict]:
    from .reception.storage import open_landing_file, read_manifest

    manifest = read_manifest(settings.landing, delivery_id)
    fmt = manifest.format
    rows: list[dict] = []
    for delivered in manifest.tables:
        if delivered.table != table:
            continue
        for f in delivered.files:
            with open_landing_file(settings.landing, delivery_id, f.path) as stored:
                raw = gzip.open(stored, "rb") if f.gzip else stored
                with io.TextIOWrapper(raw, encoding=fmt.encoding) as text:
                    rows += list(csv.DictReader(text, delimiter=fmt.delimiter))
    return rows


# The code location under the name the repository's workspace.yaml and the deployment guide use.
WORKSPACE = """load_from:
  - python_module:
      module_name: snds_assets.definitions
      location_name: snds_assets
"""


def _check_port_free(host: str, port: int) -> None:
    """Refuse, in one line, a port the webserver could not listen on: `dagster dev` then printed "Serving
    dagster-webserver on http://…", the webserver's bind error, and ran on with its daemon alone (sensors and all),
    never exiting, while whatever held the port answered at the address announced."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise UsageError(f"--host {host}: {exc.strerror or exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the webserver (uvicorn) binds
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} of {host} is already in use (another snds ui, or another program, "
                                 "listens there): stop it, or choose another --port") from None
            raise UsageError(f"port {port} of {host} cannot be listened on ({(exc.strerror or str(exc)).lower()}): "
                             "choose another --host or --port") from None


UI_QUIET_WARNING = "ignore:Function `dev_command` is superseded"


def cmd_ui(settings: Settings, args: argparse.Namespace, log_format: str) -> int:
    """`dagster dev` (webserver + daemon) on this code location, with the settings in its environment."""
    if log_format == "json":  # accepted and ignored before: the runs' JSON lines are in their files
        from .logs import RUN_LOGS

        raise UsageError("snds ui prints Dagster's own log, not JSON: every run's events are written as JSON lines "
                         f"to {Path(settings.home, *RUN_LOGS)}/<RUN_ID>.jsonl")
    env = {**os.environ, **settings.as_env()}
    # Dagster warns on every start that `dagster dev` is superseded by `dg dev` (not installed here): noise on the
    # terminal of a command that works as documented.
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), UI_QUIET_WARNING]))
    _check_port_free(args.host, args.port)
    workspace = Path(settings.dagster_home) / "workspace.yaml"
    workspace.write_text(WORKSPACE)
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(workspace), "--host", args.host, "--port", str(args.port)]
    print(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={settings.dagster_home}); Ctrl-C to stop",
          flush=True)
    # Replace this process, so that signals sent to `snds ui` reach `dagster dev` and its children. An ignored
    # SIGINT (`snds ui &` from a script, nohup) survives exec, and `dagster dev` maps SIGTERM to its SIGINT handler:
    # it then ignored both and could not be stopped but by SIGKILL, which leaves its children running.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execvpe(cmd[0], cmd, env)
    return EXIT_OK
