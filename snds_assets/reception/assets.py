"""Reception: the delivery (landing), the raw archive and curated table of every family, the reception report,
and the sensor that notices complete deliveries.

Raw and curated tables are specs of one subsettable multi-asset built from the catalog: a delivery's run is one
step (one Spark session) that archives, curates and checks the selected families in join-graph order. Heavy
modules are imported inside the steps to keep loading fast.
"""
import json
import os
from datetime import timedelta
from typing import TYPE_CHECKING

from dagster import (
    AssetCheckKey, AssetCheckSpec, AssetExecutionContext, AssetKey, AssetSpec, AssetsDefinition,
    DagsterExecutionInterruptedError, DagsterInstance, DagsterRun, DagsterRunStatus, DefaultSensorStatus,
    FreshnessPolicy, MaterializeResult, MetadataValue, RunRequest, SensorDefinition, SensorEvaluationContext,
    SensorResult, SkipReason, asset, multi_asset, sensor,
)

from .. import domain
from ..catalog import Catalog, Table
from ..checks import (
    CURATED_CHECKS, ERROR, ORPHANS_CHECK, RAW_RULES, RULE_DESCRIPTIONS, CheckOutcome, asset_check_results, combine,
    emitted, not_evaluated, restated,
)
from ..config import FRESHNESS_VARIABLE, freshness_days
from ..lake import Lake
from ..logs import step_progress
from ..metadata import column_schema
from ..partitions import deliveries
from ..problems import told_as_failure
from ..resources import SndsResource
from ..runs import (RECEPTION_POOL, delivery_held_by, end_dead_runs, ensure_reception_pool, holds_project,
                    sensor_run_key, unfinished_runs)
from ..scratch import delivery_scratch, drop_empty_staging, sweep
from ..spark import SparkResource, described, interrupt

if TYPE_CHECKING:
    from .manifest import Manifest

OWNER = "team:snds-reception"
DELIVERY_KEY = AssetKey(["landing", "delivery"])
REPORT_KEY = AssetKey(["reports", "reception"])
# Curated checks that a family in a cycle (T_MCOaaC <-> T_MCOaaB) completes after its materialisation.
DEFERRED_CHECK = "foreign_key"  # a cycle's link, checked once both families are curated


def raw_key(family: str) -> AssetKey:
    return AssetKey(["raw", family])


def curated_key(family: str) -> AssetKey:
    return AssetKey(["curated", family])


def freshness_policy(table: Table) -> FreshnessPolicy:
    """DCIR arrives monthly, PMSI and referentials yearly; SNDS_FRESHNESS_DAYS_<PRODUCT> overrides."""
    product = table.product.split()[0].upper() if table.product else "OTHER"
    default = domain.DELIVERY_PERIOD_DAYS.get(product, domain.DELIVERY_PERIOD_DAYS["OTHER"])
    variable = f"{FRESHNESS_VARIABLE}{product}"
    days = freshness_days(variable, os.environ.get(variable) or str(default))  # empty is unset, as for every setting
    return FreshnessPolicy.time_window(fail_window=timedelta(days=days + days // 4), warn_window=timedelta(days=days))


def curation_order(families: list[str], parents: dict[str, list[str]]) -> list[str]:
    """Parents before children, among the families of one delivery."""
    wanted, done, order = set(families), set(), []

    def visit(family: str) -> None:
        if family in done:
            return
        done.add(family)
        for parent in parents.get(family, []):
            if parent in wanted:
                visit(parent)
        order.append(family)

    for family in families:
        visit(family)
    return order


@asset(
    key=DELIVERY_KEY, partitions_def=deliveries, group_name="landing", kinds={"json"}, owners=[OWNER],
    pool=RECEPTION_POOL,
    description="A CNAM delivery as dropped in the landing zone: its manifest, validated and archived unchanged.",
)
@told_as_failure
def delivery(context: AssetExecutionContext, snds: SndsResource) -> MaterializeResult:
    from ..curation.publish import drop_undelivered
    from .archive import archive_manifest, archive_unknown, archived_manifest, raw_fragment
    from .report import forget_received, save_fragment, save_unlisted, short_list
    from .storage import one_line, read_manifest, unlisted_files

    settings = snds.settings()
    manifest = read_manifest(settings.landing, context.partition_key)
    forget_received(settings, manifest.delivery_id)
    earlier = archived_manifest(settings, manifest.delivery_id)
    archive_manifest(settings, manifest.delivery_id)
    dropped = drop_undelivered(settings, snds.catalog(), manifest, earlier)
    if dropped:
        context.log.info(f"received again without {len(dropped)} earlier partition(s) of families it no longer "
                         f"delivers, removed: {', '.join(dropped)}")
    for item in archive_unknown(settings, snds.catalog(), manifest):
        context.log.warning(f"{item.delivered.table} is not in the catalog: archived and rejected")
        save_fragment(settings, manifest.delivery_id, item.delivered.table, "raw",
                      raw_fragment(item, manifest.format))
    try:
        unlisted = unlisted_files(settings.landing, manifest)
    except OSError as exc:  # a sub-folder the hub may not enter: the listed files were archived all the same
        unlisted = []
        context.log.warning(f"could not look for files the manifest does not list: {one_line(exc)}")
    save_unlisted(settings, manifest.delivery_id, unlisted)
    if unlisted:
        context.log.warning(f"{len(unlisted)} file(s) of the delivery folder that its manifest does not list, not "
                            f"received (ask CNAM whether they belong to the delivery): {short_list(unlisted, 20, 120)}")
    files = [f for t in manifest.tables for f in t.files]
    return MaterializeResult(metadata={
        "delivery_id": manifest.delivery_id,
        "producer": manifest.producer,
        "created_at": manifest.created_at,
        "tables": len(manifest.tables),
        "files": len(files),
        "bytes": sum(f.bytes for f in files),
        "rows announced": sum(f.rows for f in files),
        "files not listed": len(unlisted),
        "table list": MetadataValue.md("\n".join(f"- {t.table}: {sum(f.rows for f in t.files)} rows" for t in manifest.tables)),
    })


def _raw_spec(table: Table) -> AssetSpec:
    return AssetSpec(
        raw_key(table.name), deps=[DELIVERY_KEY], group_name="raw", kinds={"csv"}, owners=[OWNER], skippable=True,
        description=f"{table.title} ({table.name}, {table.product}) as delivered by CNAM: files archived "
                    "byte-identical under `LAKE/raw/DELIVERY_ID/`, guarded by file-level checks.",
        metadata={"family": table.name, "product": table.product},
    )


def _curated_spec(table: Table, parents: list[str]) -> AssetSpec:
    keys = ", ".join(domain.key_columns(table)) or "none"
    return AssetSpec(
        curated_key(table.name), deps=[raw_key(table.name), *(curated_key(p) for p in parents)],
        group_name="curated", kinds={"spark", "parquet"}, owners=[OWNER], skippable=True,
        freshness_policy=freshness_policy(table),
        description=f"{table.title} ({table.name}, {table.product}), typed and validated: "
                    f"`LAKE/curated/{table.name}/delivery_id=DELIVERY_ID/`. Key: {keys}. Rows that cannot be curated go "
                    f"to `LAKE/rejects/{table.name}/` with their original values and the reason.",
        metadata={"family": table.name, "product": table.product, "load mode": domain.default_mode(table)},
    )


def build_reception_assets(catalog: Catalog) -> AssetsDefinition:
    parents = domain.acyclic_parents(catalog)
    specs = [_raw_spec(t) for t in catalog] + [_curated_spec(t, parents[t.name]) for t in catalog]
    specs.append(_report_spec(catalog))
    check_specs = [AssetCheckSpec(rule, asset=raw_key(t.name), description=RULE_DESCRIPTIONS[rule],
                                  partitions_def=deliveries) for t in catalog for rule in RAW_RULES]
    check_specs += [AssetCheckSpec(name, asset=curated_key(t.name), description=RULE_DESCRIPTIONS.get(name, rule),
                                   partitions_def=deliveries) for t in catalog for name, rule in CURATED_CHECKS]
    check_specs.append(AssetCheckSpec("delivery_accepted", asset=REPORT_KEY, partitions_def=deliveries,
                                      description=RULE_DESCRIPTIONS["delivery_accepted"]))

    @multi_asset(
        name="receive", specs=specs, check_specs=check_specs, partitions_def=deliveries, can_subset=True,
        pool=RECEPTION_POOL,
        description="Archive, curate and check the selected families of one delivery, parents before children, "
                    "then write its reception report.",
    )
    @told_as_failure
    def receive(context: AssetExecutionContext, snds: SndsResource, spark: SparkResource):
        from ..families import in_dependency_order
        from .archive import archive_family, families_of, raw_fragment
        from .report import save_fragment

        settings, catalog_ = snds.settings(), snds.catalog()
        selected = context.selected_asset_keys
        manifest = _manifest(settings, context.partition_key, archiving=any(k.path[0] == "raw" for k in selected))
        present = list(families_of(catalog_, manifest))
        wanted = [f for f in present if raw_key(f) in selected or curated_key(f) in selected]
        absent = sorted({k.path[1] for k in selected if k.path[0] in ("raw", "curated")} - set(present))
        if absent:
            context.log.info(f"not in delivery {manifest.delivery_id}, nothing to materialise: {', '.join(absent)}")
        delivery_id = manifest.delivery_id
        others = receptions_in_progress(context.instance, delivery_id, context.run_id)
        recurated = [f for f in wanted if curated_key(f) in selected]
        sweep(delivery_scratch(Lake(settings.lake), delivery_id, recurated), others, context.log,
              f"delivery {delivery_id}")
        session = spark.get_session() if recurated else None
        state = None
        if session is not None:
            from ..curation.curate import check_deferred_links, curate_family, step_description
            from ..curation.orphaned import check_orphaned_children
            from ..curation.state import CurrentState

            state = CurrentState(session, settings, catalog_)

        archived_ahead: dict[str, list] = {}  # families archived while their parents were curated

        def archive(family: str) -> list:
            archived = archive_family(settings, catalog_, manifest, family)
            for item in archived:
                save_fragment(settings, manifest.delivery_id, item.delivered.table, "raw",
                              raw_fragment(item, manifest.format))
            return archived

        def archive_ahead(family: str) -> None:
            if raw_key(family) in selected:
                archived_ahead[family] = archive(family)

        def receive_family(family: str) -> tuple[list, list | None]:
            if family in archived_ahead:
                archived = archived_ahead.pop(family)
            elif raw_key(family) in selected:
                archived = archive(family)
            else:
                archived = _reload_archived(settings, catalog_, manifest, family)
            if curated_key(family) not in selected:
                return archived, None
            return archived, curate_family(session, settings, catalog_, manifest, archived, state)

        def started(family: str, finished: int, total: int, under_way: list[str]) -> None:
            what = "receiving" if curated_key(family) in selected and raw_key(family) in selected else (
                "curating" if curated_key(family) in selected else "archiving")
            beside = f" ({', '.join(under_way)} under way)" if under_way else ""
            step_progress(context.log, finished + 1, total, f"{what} {family}{beside}")

        def archiving_ahead(family: str, under_way: list[str]) -> None:
            if raw_key(family) in selected:
                beside = f" ({', '.join(under_way)} under way)" if under_way else ""
                context.log.debug(f"archiving {family} before its parents are done{beside}")  # one per family

        order = curation_order(wanted, parents)
        curated: list[str] = []
        pending: dict[str, tuple[list, tuple[str, ...]]] = {}  # families with checks held to the end of the run
        stop_spark = None if session is None else (lambda: interrupt(session))
        try:
            ahead = archive_ahead if any(k.path[0] == "raw" for k in selected) else None
            for family, (archived, results) in in_dependency_order(order, parents, receive_family,
                                                                   settings.parallel_families, started, stop_spark,
                                                                   ahead, archiving_ahead):
                if raw_key(family) in selected:
                    yield _raw_result(catalog_, manifest, family, archived)
                if results is not None:
                    curated.append(family)
                    held = _held_checks(results)
                    if held:
                        pending[family] = results, held
                    yield _curated_result(settings, catalog_, manifest, family, results, held)
            for family, (results, held) in pending.items():
                if DEFERRED_CHECK in held:
                    later = sorted({v.link.parent for r in results for v in r.pending})
                    context.log.info(f"checking the links of {family} to {', '.join(later)}, curated after it")
                    check_deferred_links(session, settings, catalog_, manifest, results, state, curated)
                if ORPHANS_CHECK in held:
                    context.log.info(f"checking the rows of other deliveries that {family} of this delivery, "
                                     "delivered full, leaves without their parent")
                    with described(session, step_description(delivery_id, family, "orphaned children")):
                        check_orphaned_children(settings, catalog_, manifest, results, state, curated)
                for name in held:
                    yield from emitted(_combined(name, results), curated_key(family), context.log)
        except (DagsterExecutionInterruptedError, KeyboardInterrupt):
            _tell_interrupted(context, settings, delivery_id)
            raise
        finally:
            if state is not None:
                state.close()
            if not others:
                drop_empty_staging(Lake(settings.lake), delivery_id)
        if REPORT_KEY in selected:
            yield _report_result(settings, catalog_, manifest, context.run_id)
        for key in sorted(k for k in context.selected_asset_check_keys if k.asset_key not in selected):
            yield from emitted(_last_verdict(settings, catalog_, manifest, key), key.asset_key, context.log)

    return receive


def _manifest(settings, delivery_id: str, archiving: bool) -> "Manifest":
    """The manifest a run works from: the landing zone's when it archives (which the landing step archived first),
    else the one archived with the files it curates from (the landing folder may have been cleared since)."""
    from .archive import NotArchived, archived_manifest
    from .manifest import manifest_fingerprint
    from .storage import read_manifest

    archived = archived_manifest(settings, delivery_id)
    if not archiving:
        return archived if archived is not None else read_manifest(settings.landing, delivery_id)
    landing = read_manifest(settings.landing, delivery_id)
    if archived is not None and manifest_fingerprint(archived) != manifest_fingerprint(landing):
        # raw assets selected without landing/delivery after CNAM rewrote the manifest: files of a version of it
        # that the lake would not hold, which the report (read from the archived manifest) would judge against another
        raise NotArchived(f"the manifest of {delivery_id} in the landing zone is not the one archived (CNAM rewrote "
                          f"it since): materialise landing/delivery with the raw assets, or receive the delivery "
                          f"again (snds ingest {delivery_id})")
    return landing


def _last_verdict(settings, catalog: Catalog, manifest, key: AssetCheckKey) -> CheckOutcome:
    """A check selected without its asset, as the delivery's last reception recorded it (``checks.restated``)."""
    from ..provision.storage import read_json
    from .archive import families_of
    from .report import load_fragment, made_for

    asset = key.asset_key.to_user_string()
    if key.asset_key == REPORT_KEY:
        report = read_json(Lake(settings.lake).delivery_report(manifest.delivery_id))
        return restated(key.name, None if report is None else _accepted(report), asset)
    stage, family = key.asset_key.path
    delivered = families_of(catalog, manifest).get(family, [])
    if not delivered:
        return combine(key.name, [])
    fragments = [(d.table, load_fragment(settings, manifest.delivery_id, d.table, stage)) for d in delivered]
    raws = [load_fragment(settings, manifest.delivery_id, d.table, "raw") for d in delivered]
    stale = any(raw is not None and not made_for(raw, d, manifest.format) for d, raw in zip(delivered, raws))
    if stale or any(f is None for _, f in fragments):  # verdicts of another version of the manifest are none
        return restated(key.name, None, asset)
    return restated(key.name, combine(key.name, [(t, CheckOutcome(**c)) for t, f in fragments for c in f["checks"]
                                                 if c["name"] == key.name]), asset)


def _report_spec(catalog: Catalog) -> AssetSpec:
    """The report is an output of the ``receive`` step, not a step of its own: Dagster skips a step whose upstream
    asset was not materialised, so a run of the whole ``reception`` job (the UI's way) on a delivery without some
    families skipped its report, green, with the delivery's earlier report withdrawn."""
    return AssetSpec(
        REPORT_KEY, deps=[*(raw_key(t.name) for t in catalog), *(curated_key(t.name) for t in catalog)],
        group_name="reports", kinds={"json", "html"}, owners=[OWNER],
        description="The reception report of a delivery (`LAKE/reports/deliveries/DELIVERY_ID.json` and `.html`): per "
                    "table status, row counts and every check. A delivery is accepted only when every table is.",
    )


def _held_checks(results: list) -> tuple[str, ...]:
    """The checks of a family's curated asset that wait for the end of the run: a cycle's links
    (``check_deferred_links``), and the rows a full delivery leaves without their parent (``orphaned``)."""
    return ((DEFERRED_CHECK,) * any(r.pending for r in results)
            + (ORPHANS_CHECK,) * any(r.orphans_pending for r in results))


def _reload_archived(settings, catalog: Catalog, manifest, family: str) -> list:
    """Curating without re-archiving: rebuild the archive description from the raw step's saved fragments."""
    from .archive import ArchivedFile, ArchivedTable, NotArchived
    from .report import load_fragment, made_for

    out = []
    for delivered in manifest.tables:
        try:
            table, year = catalog.resolve(delivered.table)
        except KeyError:
            continue
        if table.name != family:
            continue
        fragment = load_fragment(settings, manifest.delivery_id, delivered.table, "raw")
        if fragment is None:
            raise NotArchived(f"{delivered.table} of {manifest.delivery_id} was never archived: materialise "
                              f"{raw_key(family).to_user_string()} first")
        if not made_for(fragment, delivered, manifest.format):
            raise NotArchived(f"{delivered.table} of {manifest.delivery_id} was archived from another version of its "
                              f"manifest: materialise {raw_key(family).to_user_string()} again, or receive the "
                              f"delivery again (snds ingest {manifest.delivery_id})")
        out.append(ArchivedTable(
            delivered=delivered, family=family, year=year, mode=fragment["mode"],
            files=[ArchivedFile(**f) for f in fragment["files"]],
            checks=[CheckOutcome(**c) for c in fragment["checks"]],
        ))
    return out


def _raw_result(catalog: Catalog, manifest, family: str, archived: list) -> MaterializeResult:
    key = raw_key(family)
    # The columns the delivered files' headers name (all of a family's tables, in order), as the text they are.
    header = dict.fromkeys(name for a in archived for f in a.readable_files for name in (f.header or []))
    outcomes = [combine(rule, [(a.name, c) for a in archived for c in a.checks if c.name == rule]) for rule in RAW_RULES]
    return MaterializeResult(
        asset_key=key,
        metadata={
            "delivery_id": manifest.delivery_id,
            "delivered tables": ", ".join(a.delivered.table for a in archived),
            "files": sum(len(a.files) for a in archived),
            "bytes": sum(f.bytes for a in archived for f in a.files),
            "rows counted": sum(f.rows or 0 for a in archived for f in a.files),
            "dagster/row_count": sum(f.rows or 0 for a in archived for f in a.files),
            "dagster/column_schema": column_schema(catalog[family], [(name, "string") for name in header]),
            **not_evaluated(outcomes),
        },
        check_results=asset_check_results(outcomes, key),
    )


def _combined(name: str, results: list) -> CheckOutcome:
    """A curated check of the family from its delivered tables' results."""
    return combine(name, [(r.delivered_name, c) for r in results for c in r.checks if c.name == name])


def _curated_result(settings, catalog: Catalog, manifest, family: str, results: list,
                    held: tuple[str, ...] = ()) -> MaterializeResult:
    """The curated asset's materialisation with its checks, but for those ``held`` to be emitted later."""
    key = curated_key(family)
    schema = results[0].column_schema if results else []
    outcomes = [_combined(name, results) for name, _ in CURATED_CHECKS if name not in held]
    return MaterializeResult(
        asset_key=key,
        metadata={
            "delivery_id": manifest.delivery_id,
            "dagster/row_count": sum(r.rows_curated for r in results),
            "dagster/column_schema": column_schema(catalog[family], schema),
            "rows read": sum(r.rows_read for r in results),
            "rows rejected": sum(r.rows_rejected for r in results),
            "delivered tables": ", ".join(r.delivered_name for r in results),
            "path": MetadataValue.path(Lake(settings.lake).curated(family, manifest.delivery_id)),
            **not_evaluated(outcomes),
        },
        check_results=asset_check_results(outcomes, key),
    )


def _tell_interrupted(context: AssetExecutionContext, settings, delivery_id: str) -> None:
    """A reception terminated from the UI ended with Dagster's bare interruption: the run's log says what it left,
    as `snds ingest` does on Ctrl-C. A delivery received again leaves the state while its report is withdrawn, and
    no sensor requests it again (its manifest was handled)."""
    from ..runs import interruption_left

    left, withdrawn = interruption_left(settings.lake, context.dagster_run.tags)
    context.log.error(f"reception of delivery {delivery_id} interrupted: its staged writes are removed; {left}" + (
        f": the delivery is out of the current state until it is received again (re-execute this run, or run snds "
        f"ingest {delivery_id})" if withdrawn else ""))


def _report_result(settings, catalog: Catalog, manifest, run_id: str | None = None) -> MaterializeResult:
    """The delivery's reception report, from the fragments its tables' archive and curation saved, and the mark
    that it was received (by ``run_id``)."""
    from .report import build_report, mark_received

    report = build_report(settings, catalog, manifest)
    mark_received(settings, manifest, run_id)
    tables = report["tables"]
    rejected = sorted(name for name, t in tables.items() if t["status"] != "accepted")
    outcome = _accepted(report)
    lines = ["| table | status | read | curated | rejected |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {t['status']} | " + " | ".join("" if t.get(k) is None else str(t[k]) for k in
                                                     ("rows_read", "rows_curated", "rows_rejected")) + " |"
              for n, t in sorted(tables.items())]
    lake = Lake(settings.lake)
    return MaterializeResult(
        asset_key=REPORT_KEY,
        metadata={
            "delivery_id": manifest.delivery_id,
            "status": report["status"],
            "tables": list(tables),
            "rejected tables": rejected,
            "report": MetadataValue.path(lake.delivery_report(manifest.delivery_id)),
            "readable report": MetadataValue.path(lake.delivery_report(manifest.delivery_id, "html")),
            "summary": MetadataValue.md("\n".join(lines)),
        },
        check_results=asset_check_results([outcome], REPORT_KEY),
    )


def _accepted(report: dict) -> CheckOutcome:
    """``delivery_accepted`` of a reception report: its failures are the rejected tables."""
    rejected = sorted(name for name, t in report["tables"].items() if t["status"] != "accepted")
    return CheckOutcome(
        "delivery_accepted", "delivery_accepted", ERROR, report["status"] == "accepted", failures=len(rejected),
        sample=rejected[:10], details=f"rejected tables: {', '.join(rejected)}" if rejected else "",
    )


def delivery_selection(catalog: Catalog, manifest: "Manifest") -> list[AssetKey]:
    """The assets one delivery's run materialises: its families' raw and curated tables and the report."""
    from .archive import families_of

    families = list(families_of(catalog, manifest))
    return [DELIVERY_KEY, *(raw_key(f) for f in families), *(curated_key(f) for f in families), REPORT_KEY]


def receptions_in_progress(instance: DagsterInstance, delivery_id: str, run_id: str | None = None) -> list[DagsterRun]:
    """Queued or running runs on one delivery but ``run_id``, whoever started them (the sensor, `snds ingest`, the
    UI: the reception job, or one family materialised alone; a refresh of projects reading it): a second reception
    of the same partition alongside one would write the same folders."""
    runs = unfinished_runs(instance, {"dagster/partition": delivery_id, "snds/delivery": delivery_id,
                                      "snds/source": "refresh"}, run_id)
    # a project's partition may be named like a delivery; a refresh after several deliveries lists them all
    return [r for r in runs if r.tags.get("snds/delivery") == delivery_id
            or delivery_id in r.tags.get("snds/deliveries", "").split(", ")
            or (r.tags.get("dagster/partition") == delivery_id and not holds_project(r))]


def _cursor_entry(value: object) -> tuple[str | None, int, str | None]:
    """(manifest fingerprint, runs requested so far, the manifest file's version then) of one delivery in the
    sensor's cursor. A cursor written before the counter existed holds the bare fingerprint, whose one request had
    the key ``id:fingerprint``; one written before the version, none (the manifest is read once more)."""
    if isinstance(value, str):
        return value, 1, None
    if isinstance(value, dict):
        return value.get("manifest"), int(value.get("requests", 0)), value.get("version")
    return None, 0, None


RECEIVED_ALREADY = "this manifest was already received (by `snds ingest` or an earlier run)"


def _received_notes(delivery_ids: list[str]) -> list[str]:
    """The skip reason's word on manifests received already: one per delivery, or one for them all when many
    are (a first tick over a landing zone that keeps years of deliveries); the log names each."""
    if len(delivery_ids) <= 3:
        return [f"{d} skipped: {RECEIVED_ALREADY}" for d in delivery_ids]
    return [f"{len(delivery_ids)} deliveries skipped ({delivery_ids[0]} to {delivery_ids[-1]}): their manifests "
            "were already received (by `snds ingest` or earlier runs)"]


def listing_deadline() -> float:
    """How long the delivery sensor waits for the landing zone's listing: half the time Dagster gives a sensor's
    tick (``DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS``, else ``DAGSTER_GRPC_TIMEOUT_SECONDS``, else 60 s), the rest left
    for reading the manifests found."""
    for variable in ("DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS", "DAGSTER_GRPC_TIMEOUT_SECONDS"):
        value = os.environ.get(variable, "")
        if value.strip().isdigit() and int(value) > 0:
            return int(value) / 2
    return 30.0


def build_delivery_sensor(job_name: str) -> SensorDefinition:
    @sensor(
        name="cnam_deliveries", job_name=job_name, minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description="Watches SNDS_LANDING: a delivery folder is complete when its manifest.json exists. Adds the "
                    "delivery partition and requests one reception run per new or changed manifest; a manifest "
                    "already received (by `snds ingest`, say) is skipped, and a delivery whose reception is "
                    "queued or running waits for it to end.",
    )
    def cnam_deliveries(context: SensorEvaluationContext, snds: SndsResource):
        """The cursor keeps, per delivery, the fingerprint of the manifest last handled and how many runs were
        requested: the run key ``id:count:fingerprint`` is new at each change, even back to an earlier content
        (Dagster never runs a key twice), and the same for a replayed tick (``sensor_run_key``, which reads the
        instance's runs too: a cursor reset from the UI restarted the count). It also keeps the manifest file's
        version (from the landing's listing): a manifest not rewritten since is not read again."""
        from .manifest import ManifestError, manifest_fingerprint
        from .report import received_mark
        from .storage import answered_within, landing_exists, list_deliveries, read_manifest

        settings, catalog = snds.settings(), snds.catalog()
        end_dead_runs(context.instance, context.log)  # before their partitions are looked at, and for the queue
        ensure_reception_pool(context.instance, context.log)
        seen: dict[str, object] = json.loads(context.cursor) if context.cursor else {}
        known = set(context.instance.get_dynamic_partitions(deliveries.name))
        requests, new_partitions, notes, received_already = [], [], [], []
        try:
            entries = answered_within(listing_deadline(), f"SNDS_LANDING {settings.landing}", list_deliveries,
                                      settings.landing)
        except (OSError, ValueError) as exc:
            context.log.warning(f"cannot list the landing zone: {exc}")
            return SensorResult(skip_reason=SkipReason(f"landing zone unreachable: {exc}"), cursor=context.cursor)
        if not entries and not landing_exists(settings.landing):  # a typo in SNDS_LANDING would look like a quiet day
            notes.append(f"the landing zone {settings.landing} does not exist or is empty: is SNDS_LANDING right?")
            context.log.info(notes[-1])
        for entry in entries:
            delivery_id = entry.delivery_id
            if not entry.complete:
                context.log.info(f"skipping {delivery_id}: {entry.reason}")
                continue
            handled, requested, version = _cursor_entry(seen.get(delivery_id))
            if handled is not None and version is not None and version == entry.manifest_version:
                continue  # the manifest file handled then, not rewritten since: not read again at every tick
            try:
                manifest = read_manifest(settings.landing, delivery_id)
            except (ManifestError, OSError, ValueError) as exc:
                context.log.warning(f"skipping {delivery_id}: unreadable manifest ({exc})")
                continue
            fingerprint = manifest_fingerprint(manifest)
            if handled == fingerprint:
                seen[delivery_id] = {"manifest": fingerprint, "requests": requested, "version": entry.manifest_version}
                continue
            busy = receptions_in_progress(context.instance, delivery_id)
            if busy:
                note = f"{delivery_id} waits: it {delivery_held_by(busy[0])}"
                context.log.info(f"{note}; looked at again at the next tick")
                notes.append(note)
                continue
            try:
                received, marked_by = received_mark(settings, delivery_id)
            except (OSError, ValueError) as exc:
                context.log.warning(f"{delivery_id} waits: cannot read its reception mark in the lake ({exc})")
                continue
            marking = context.instance.get_run_by_id(marked_by) if marked_by and received == fingerprint else None
            if marking is not None and marking.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
                context.log.info(f"{delivery_id}: run {marked_by}, which received this manifest, "
                                 f"{marking.status.value.lower()} before its report was recorded: receiving it again")
            elif received == fingerprint:
                context.log.info(f"{delivery_id} skipped: {RECEIVED_ALREADY}")
                received_already.append(delivery_id)
                seen[delivery_id] = {"manifest": fingerprint, "requests": requested, "version": entry.manifest_version}
                continue
            tags = {"snds/delivery": delivery_id, "snds/source": "sensor"}
            run_key = sensor_run_key(context.instance, tags, delivery_id, fingerprint, requested)
            requested = int(run_key.split(":")[1])
            seen[delivery_id] = {"manifest": fingerprint, "requests": requested, "version": entry.manifest_version}
            if delivery_id not in known:
                new_partitions.append(delivery_id)
            context.log.info(f"delivery {delivery_id}: {len(manifest.tables)} tables, requesting its reception run")
            requests.append(RunRequest(run_key=run_key, partition_key=delivery_id,
                                       asset_selection=delivery_selection(catalog, manifest), tags=tags))
        cursor = json.dumps(seen, sort_keys=True)
        notes[:0] = _received_notes(received_already)
        if not requests:
            reason = "no new complete delivery" + (f" ({'; '.join(notes)})" if notes else "")
            return SensorResult(skip_reason=SkipReason(reason), cursor=cursor)
        return SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[deliveries.build_add_request(new_partitions)] if new_partitions else [],
            cursor=cursor,
        )

    return cnam_deliveries
