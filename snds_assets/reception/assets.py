"""Reception: the delivery (landing), the byte-identical raw archive per family, the reception report, and the
sensor that notices complete deliveries. Heavy modules are imported inside the steps to keep loading fast."""

import hashlib
import json

from dagster import (
    AssetCheckSpec, AssetExecutionContext, AssetKey, AssetsDefinition, DefaultSensorStatus, MaterializeResult,
    MetadataValue, Output, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, asset, sensor,
)

from ..catalog import Catalog, Table
from ..checks import ERROR, RAW_RULES, RULE_DESCRIPTIONS, CheckOutcome, asset_check_result, combine
from ..partitions import deliveries
from ..resources import SndsResource

OWNER = "team:snds-reception"
DELIVERY_KEY = AssetKey(["landing", "delivery"])
REPORT_KEY = AssetKey(["reports", "reception"])


def raw_key(family: str) -> AssetKey:
    return AssetKey(["raw", family])


@asset(
    key=DELIVERY_KEY, partitions_def=deliveries, group_name="landing", kinds={"json"}, owners=[OWNER],
    description="A CNAM delivery as dropped in the landing zone: its manifest, validated and archived unchanged.",
)
def delivery(context: AssetExecutionContext, snds: SndsResource) -> MaterializeResult:
    from .archive import archive_manifest
    from .storage import read_manifest

    settings = snds.settings()
    manifest = read_manifest(settings.landing, context.partition_key)
    archive_manifest(settings, manifest.delivery_id)
    files = [f for t in manifest.tables for f in t.files]
    return MaterializeResult(metadata={
        "delivery_id": manifest.delivery_id,
        "producer": manifest.producer,
        "created_at": manifest.created_at,
        "tables": len(manifest.tables),
        "files": len(files),
        "bytes": sum(f.bytes for f in files),
        "rows announced": sum(f.rows for f in files),
        "table list": MetadataValue.md("\n".join(f"- {t.table} ({sum(f.rows for f in t.files)} rows)" for t in manifest.tables)),
    })


def build_raw_asset(table: Table) -> AssetsDefinition:
    key = raw_key(table.name)

    @asset(
        key=key, partitions_def=deliveries, group_name="raw", kinds={"csv"}, owners=[OWNER],
        deps=[DELIVERY_KEY],
        description=f"{table.title} ({table.name}, {table.product}) as delivered by CNAM: files archived "
                    "byte-identical under <lake>/raw/<delivery>/, guarded by file-level checks.",
        metadata={"family": table.name, "product": table.product},
        check_specs=[AssetCheckSpec(rule, asset=key, description=RULE_DESCRIPTIONS[rule]) for rule in RAW_RULES],
    )
    def _raw(context: AssetExecutionContext, snds: SndsResource):
        from .archive import archive_family
        from .report import save_fragment
        from .storage import read_manifest

        settings = snds.settings()
        manifest = read_manifest(settings.landing, context.partition_key)
        archived = archive_family(settings, snds.catalog(), manifest, table.name)
        for item in archived:
            save_fragment(settings, manifest.delivery_id, item.delivered.table, "raw", {
                "family": item.family, "year": item.year, "mode": item.mode,
                "rows_manifest": sum(f.rows for f in item.delivered.files),
                "checks": [c.to_report() for c in item.checks],
            })
        yield Output(archived, metadata={
            "delivery_id": manifest.delivery_id,
            "delivered tables": ", ".join(a.delivered.table for a in archived) or "none",
            "files": sum(len(a.files) for a in archived),
            "bytes": sum(f.bytes for a in archived for f in a.files),
            "rows counted": sum(f.rows or 0 for a in archived for f in a.files),
        })
        for rule in RAW_RULES:
            outcome = combine(rule, [c for a in archived for c in a.checks if c.name == rule])
            yield asset_check_result(outcome, key)

    return _raw


def build_report_asset(curated_keys: list[AssetKey]) -> AssetsDefinition:
    @asset(
        key=REPORT_KEY, partitions_def=deliveries, group_name="reports", kinds={"json", "html"}, owners=[OWNER],
        deps=curated_keys,
        description="The reception report of a delivery (<lake>/reports/deliveries/<id>.json and .html): per table "
                    "status, row counts and every check. A delivery is accepted only when every table is.",
        check_specs=[AssetCheckSpec("delivery_accepted", asset=REPORT_KEY,
                                    description="Every table of the delivery passed its ERROR checks.")],
    )
    def reception_report(context: AssetExecutionContext, snds: SndsResource) -> MaterializeResult:
        from ..lake import Lake
        from .report import build_report
        from .storage import read_manifest

        settings = snds.settings()
        manifest = read_manifest(settings.landing, context.partition_key)
        report = build_report(settings, snds.catalog(), manifest)
        tables = report["tables"]
        rejected = sorted(name for name, t in tables.items() if t["status"] != "accepted")
        outcome = CheckOutcome(
            "delivery_accepted", "rows_reconciled", ERROR, report["status"] == "accepted", failures=len(rejected),
            sample=rejected[:10], details=f"rejected tables: {', '.join(rejected)}" if rejected else "",
        )
        lines = [f"| table | status | read | curated | rejected |", "|---|---|---|---|---|"]
        lines += [f"| {n} | {t['status']} | {t.get('rows_read')} | {t.get('rows_curated')} | {t.get('rows_rejected')} |"
                  for n, t in sorted(tables.items())]
        lake = Lake(settings.lake)
        return MaterializeResult(
            metadata={
                "delivery_id": manifest.delivery_id,
                "status": report["status"],
                "tables": list(tables),
                "rejected tables": rejected,
                "report": MetadataValue.path(lake.delivery_report(manifest.delivery_id)),
                "readable report": MetadataValue.path(lake.delivery_report(manifest.delivery_id, "html")),
                "summary": MetadataValue.md("\n".join(lines)),
            },
            check_results=[asset_check_result(outcome, REPORT_KEY)],
        )

    return reception_report


def delivery_selection(catalog: Catalog, manifest, curated_key) -> list[AssetKey]:
    """The assets one delivery's run materialises: its families' raw and curated tables and the report."""
    families = []
    for delivered in manifest.tables:
        try:
            family = catalog.resolve(delivered.table)[0].name
        except KeyError:
            continue
        if family not in families:
            families.append(family)
    return [DELIVERY_KEY, *(raw_key(f) for f in families), *(curated_key(f) for f in families), REPORT_KEY]


def build_delivery_sensor(job_name: str, curated_key) -> object:
    @sensor(
        name="cnam_deliveries", job_name=job_name, minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description="Watches SNDS_LANDING: a delivery folder is complete when its manifest.json exists. Adds the "
                    "delivery partition and requests one reception run per delivery (run key = id + manifest hash).",
    )
    def cnam_deliveries(context: SensorEvaluationContext, snds: SndsResource):
        from .manifest import ManifestError
        from .storage import list_deliveries, read_manifest

        settings = snds.settings()
        catalog = snds.catalog()
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        requests, new_partitions = [], []
        known = set(context.instance.get_dynamic_partitions(deliveries.name))
        for entry in list_deliveries(settings.landing):
            if not entry.complete:
                context.log.info(f"skipping {entry.delivery_id}: {entry.reason}")
                continue
            try:
                manifest = read_manifest(settings.landing, entry.delivery_id)
                fingerprint = hashlib.sha256(manifest.to_json().encode()).hexdigest()[:16]
            except (ManifestError, OSError) as exc:
                context.log.warning(f"skipping {entry.delivery_id}: unreadable manifest ({exc})")
                continue
            if seen.get(entry.delivery_id) == fingerprint:
                continue
            seen[entry.delivery_id] = fingerprint
            if entry.delivery_id not in known:
                new_partitions.append(entry.delivery_id)
            context.log.info(f"delivery {entry.delivery_id}: {len(manifest.tables)} tables, requesting its reception run")
            requests.append(RunRequest(
                run_key=f"{entry.delivery_id}:{fingerprint}", partition_key=entry.delivery_id,
                asset_selection=delivery_selection(catalog, manifest, curated_key),
                tags={"snds/delivery": entry.delivery_id, "snds/source": "sensor"},
            ))
        if not requests:
            return SensorResult(skip_reason=SkipReason("no new complete delivery"), cursor=json.dumps(seen, sort_keys=True))
        return SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[deliveries.build_add_request(new_partitions)] if new_partitions else [],
            cursor=json.dumps(seen, sort_keys=True),
        )

    return cnam_deliveries
