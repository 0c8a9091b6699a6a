"""The snds_assets code location: assets built by factories over the SNDS catalog, their checks, jobs, sensors."""

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor
from dagster._core.definitions.logger_definition import LoggerDefinition
from dagster import colored_console_logger

from .config import Settings
from .logs import json_logger, progress_logger
from .partitions import deliveries, projects
from .provision.assets import (
    COHORT_KEY, PROJECT_REPORT_KEY, build_cohort_asset, build_extract_assets, build_project_sensor,
    build_refresh_sensor,
)
from .reception.assets import (
    DELIVERY_KEY, REPORT_KEY, build_delivery_sensor, build_reception_assets, curated_key, delivery,
)
from .resources import SndsResource, load_catalog
from .runs import RECEPTION_TAG
from .spark import SparkResource

RECEPTION_JOB = "reception"
PROVISION_JOB = "provision"
LOGGERS: dict[str, LoggerDefinition] = {"console": colored_console_logger, "json": json_logger, "progress": progress_logger}


def build_definitions(settings: Settings | None = None) -> Definitions:
    """Everything is derived from the catalog at SNDS_SCHEMAS: one raw, curated and extract asset per family."""
    settings = settings or Settings.from_env()
    catalog = load_catalog(settings.schemas)
    assets = [
        delivery, build_reception_assets(catalog),
        build_cohort_asset(catalog, curated_key), build_extract_assets(catalog, curated_key),
    ]
    reception = define_asset_job(
        RECEPTION_JOB, partitions_def=deliveries,
        selection=AssetSelection.assets(DELIVERY_KEY, REPORT_KEY) | AssetSelection.groups("raw", "curated"),
        description="Receive, verify and curate one CNAM delivery (one Spark session for the whole run).",
        tags={RECEPTION_TAG: "true"},
    )
    provision = define_asset_job(
        PROVISION_JOB, partitions_def=projects,
        selection=AssetSelection.assets(COHORT_KEY, PROJECT_REPORT_KEY) | AssetSelection.groups("projects"),
        description="Identify a project's cohort and extract its authorised tables under project pseudonyms.",
    )
    return Definitions(
        assets=assets,
        jobs=[reception, provision],
        sensors=[
            build_delivery_sensor(RECEPTION_JOB),
            build_project_sensor(PROVISION_JOB),
            build_refresh_sensor(PROVISION_JOB, REPORT_KEY),
        ],
        resources={"snds": SndsResource(), "spark": SparkResource()},
        executor=in_process_executor,
        loggers=LOGGERS,
    )


defs = build_definitions()
