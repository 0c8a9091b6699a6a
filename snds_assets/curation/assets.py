"""Curation: one typed, checked Parquet table per family and delivery, from the raw archive."""

import os
from datetime import timedelta

from dagster import (
    AssetCheckSpec, AssetExecutionContext, AssetIn, AssetKey, AssetsDefinition, FreshnessPolicy, MaterializeResult,
    MetadataValue, TableColumn, TableSchema, asset,
)

from .. import domain
from ..catalog import Catalog, Table
from ..checks import CURATED_CHECKS, RULE_DESCRIPTIONS, asset_check_result, combine
from ..partitions import deliveries
from ..resources import SndsResource
from ..spark import SparkResource

OWNER = "team:snds-reception"


def curated_key(family: str) -> AssetKey:
    return AssetKey(["curated", family])


def freshness_policy(table: Table) -> FreshnessPolicy:
    """DCIR arrives monthly, PMSI and referentials yearly; SNDS_FRESHNESS_DAYS_<PRODUCT> overrides."""
    product = table.product.split()[0].upper() if table.product else "OTHER"
    default = domain.DELIVERY_PERIOD_DAYS.get(product, domain.DELIVERY_PERIOD_DAYS["OTHER"])
    days = int(os.environ.get(f"SNDS_FRESHNESS_DAYS_{product}", default))
    return FreshnessPolicy.time_window(fail_window=timedelta(days=days + days // 4), warn_window=timedelta(days=days))


def fk_parents(catalog: Catalog, table: Table) -> list[str]:
    """Families whose same-delivery partition must be curated first (foreign-key checks read it)."""
    parents = []
    for link in domain.check_links(catalog, table):
        if link.parent in catalog and link.parent != table.name and link.parent not in parents:
            parents.append(link.parent)
    return parents


def acyclic_parents(catalog: Catalog) -> dict[str, list[str]]:
    """The FK graph as step order; an edge that would close a cycle is dropped (its check then reads the state)."""
    graph: dict[str, list[str]] = {}
    for table in catalog:
        graph[table.name] = []
        for parent in fk_parents(catalog, table):
            if not _reaches(graph, parent, table.name):
                graph[table.name].append(parent)
    return graph


def _reaches(graph: dict[str, list[str]], start: str, target: str) -> bool:
    stack, seen = [start], set()
    while stack:
        node = stack.pop()
        if node == target:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, []))
    return False


def build_curated_asset(catalog: Catalog, table: Table, parents: list[str], raw_key: AssetKey) -> AssetsDefinition:
    key = curated_key(table.name)
    keys = ", ".join(domain.key_columns(table)) or "none"

    @asset(
        key=key, partitions_def=deliveries, group_name="curated", kinds={"spark", "parquet"}, owners=[OWNER],
        ins={"archived": AssetIn(key=raw_key)},
        deps=[curated_key(p) for p in parents],
        description=f"{table.title} ({table.name}, {table.product}), typed and validated: "
                    f"<lake>/curated/{table.name}/delivery_id=<id>/. Key: {keys}. Rows that cannot be curated go to "
                    f"<lake>/rejects/{table.name}/ with their original values and the reason.",
        metadata={"family": table.name, "product": table.product, "load mode": domain.default_mode(table)},
        check_specs=[AssetCheckSpec(name, asset=key, description=RULE_DESCRIPTIONS.get(name, rule))
                     for name, rule in CURATED_CHECKS],
        freshness_policy=freshness_policy(table),
    )
    def _curated(context: AssetExecutionContext, archived: list, snds: SndsResource, spark: SparkResource):
        from ..lake import Lake
        from ..reception.storage import read_manifest
        from .curate import curate_family
        from .state import CurrentState

        settings = snds.settings()
        catalog_ = snds.catalog()
        manifest = read_manifest(settings.landing, context.partition_key)
        session = spark.get_session()
        results = curate_family(session, settings, catalog_, manifest, archived, CurrentState(session, settings, catalog_))
        schema = results[0].column_schema if results else []
        curated = sum(r.rows_curated for r in results)
        yield MaterializeResult(
            metadata={
                "delivery_id": manifest.delivery_id,
                "dagster/row_count": curated,
                "dagster/column_schema": TableSchema(columns=[TableColumn(n, t) for n, t in schema]),
                "rows read": sum(r.rows_read for r in results),
                "rows rejected": sum(r.rows_rejected for r in results),
                "delivered tables": ", ".join(r.delivered_name for r in results) or "none",
                "path": MetadataValue.path(Lake(settings.lake).curated(table.name, manifest.delivery_id)),
            },
            check_results=[
                asset_check_result(combine(name, [c for r in results for c in r.checks if c.name == name]), key)
                for name, _ in CURATED_CHECKS
            ],
        )

    return _curated
