"""Dagster as a service: the production instance (deploy/dagster.yaml) on a real PostgreSQL, its run queue limits,
and a delivery ingested through it.

The instance is deploy/dagster.yaml as shipped, with one change: compute logs stay local, because
dagster-azure's AzureBlobComputeLogManager only builds ``https://<account>.blob.core.windows.net`` URLs and cannot
reach an emulator (its configuration is validated here instead).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterInstance, DagsterRunStatus

from .services import (
    DELIVERY_ID, REPO, curated_summary, ingest_in_process, load_report, planned_run, queue_decision, queued_run,
)

DEPLOY = REPO / "deploy"


def production_config() -> dict:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text(encoding="utf-8"))


@pytest.fixture()
def pg_home(postgres, tmp_path, monkeypatch) -> Path:
    """A DAGSTER_HOME holding the production dagster.yaml (compute logs local), the database emptied first."""
    config = production_config()
    config["compute_logs"] = {
        "module": "dagster.core.storage.local_compute_log_manager", "class": "LocalComputeLogManager",
        "config": {"base_dir": str(tmp_path / "compute-logs")},
    }
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    for name, value in postgres.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    tables = [r[0] for r in postgres.query("select tablename from pg_tables where schemaname = 'public'")]
    if tables:
        postgres.query("truncate " + ", ".join(f'"{t}"' for t in tables) + " cascade")
    return home


def test_production_instance_runs_on_postgres(pg_home, postgres):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    with DagsterInstance.from_config(str(pg_home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        instance.add_dynamic_partitions("deliveries", ["2026-11-15"])
        assert instance.get_dynamic_partitions("deliveries") == ["2026-11-15"]
    tables = {r[0] for r in postgres.query("select tablename from pg_tables where schemaname = 'public'")}
    assert {"runs", "event_logs", "dynamic_partitions", "jobs", "job_ticks", "concurrency_slots"} <= tables
    assert postgres.query("select partition from dynamic_partitions where partitions_def_name = %s",
                          "deliveries") == [("2026-11-15",)]


def test_production_compute_logs_go_to_azure_blob(monkeypatch):
    """The shipped compute-log section is valid for dagster-azure's manager and holds no secret."""
    from dagster._config import process_config
    from dagster_azure.blob.compute_log_manager import AzureBlobComputeLogManager

    from snds_assets.compute_logs import MirrorsSpareCtrlC
    from snds_assets.compute_logs_azure import InterruptSafeAzureBlobComputeLogManager

    section = production_config()["compute_logs"]
    assert (section["module"], section["class"]) == ("snds_assets.compute_logs_azure",
                                                     "InterruptSafeAzureBlobComputeLogManager")
    manager = InterruptSafeAzureBlobComputeLogManager
    assert issubclass(manager, AzureBlobComputeLogManager)  # dagster-azure's, its capture begun with SIGINT held
    assert manager.capture_logs is MirrorsSpareCtrlC.capture_logs
    monkeypatch.setenv("DAGSTER_LOGS_STORAGE_ACCOUNT", "sndslogs")
    monkeypatch.setenv("DAGSTER_LOGS_CONTAINER", "dagster")
    result = process_config(manager.config_type(), section["config"])
    assert result.success, result.errors
    assert result.value["storage_account"] == "sndslogs" and "access_key_or_sas_token" not in section["config"]
    assert "default_azure_credential" in result.value


def test_workspace_points_at_the_code_location():
    from dagster._core.workspace.config_schema import ensure_workspace_config

    config = yaml.safe_load((DEPLOY / "workspace.yaml").read_text(encoding="utf-8"))
    ensure_workspace_config(config, str(DEPLOY / "workspace.yaml"))
    (entry,) = config["load_from"]
    assert entry["grpc_server"]["location_name"] == "snds_assets"


def test_same_partition_never_runs_twice_at_once(pg_home):
    """The daemon's own dequeue logic, on runs stored in PostgreSQL: a second run of a delivery (or project)
    waits while the first is in progress; so does any other reception (one at a time, in the order they were
    queued, each checking its keys against the deliveries received before it), a delivery's assets materialised
    from the asset graph included, while other projects go ahead."""
    from snds_assets.definitions import RECEPTION_JOB, build_definitions
    from snds_assets.reception.assets import curated_key
    from snds_assets.runs import ensure_reception_pool

    job_tags = {"reception": build_definitions().resolve_job_def(RECEPTION_JOB).run_tags}

    def run(job, status, **tags):
        if job == "provision":  # no pool
            return queued_run(instance, job, status, tags).run_id
        # one family: the run's pools as the whole job's, without Dagster storing a planned event per asset
        return planned_run(instance, job, status, {**job_tags[job], **tags}, {curated_key("IR_BEN_R")})

    with DagsterInstance.from_config(str(pg_home)) as instance:
        ensure_reception_pool(instance)  # as the delivery sensor's tick does
        receiving = run("reception", DagsterRunStatus.STARTED,
                        **{"dagster/partition": "2026-11-15", "snds/delivery": "2026-11-15"})
        run("provision", DagsterRunStatus.STARTED, **{"dagster/partition": "covid", "snds/project": "covid"})
        same_delivery = run("reception", DagsterRunStatus.QUEUED, **{"dagster/partition": "2026-11-15"})
        same_by_tag = run("reception", DagsterRunStatus.QUEUED, **{"snds/delivery": "2026-11-15"})
        same_project = run("provision", DagsterRunStatus.QUEUED, **{"snds/project": "covid"})
        other = run("reception", DagsterRunStatus.QUEUED,
                    **{"dagster/partition": "2026-12-01", "snds/delivery": "2026-12-01"})
        other_too = run("reception", DagsterRunStatus.QUEUED,
                        **{"dagster/partition": "2026-12-02", "snds/delivery": "2026-12-02"})
        graph = planned_run(instance, None, DagsterRunStatus.QUEUED, {"dagster/partition": "2026-12-03"},
                            {curated_key("IR_BEN_R")})
        other_project = run("provision", DagsterRunStatus.QUEUED,
                            **{"dagster/partition": "asthma", "snds/project": "asthma"})
        assert queue_decision(instance) == {other_project}

        instance.report_run_canceled(instance.get_run_by_id(receiving))
        dequeued = queue_decision(instance)
        assert dequeued == {other_project, same_delivery}  # the first reception queued, alone
        assert not dequeued & {same_by_tag, same_project, other, other_too, graph}


@pytest.mark.slow
def test_delivery_ingested_through_the_postgres_instance(pg_home, postgres, reference, tmp_path):
    home = tmp_path / "snds"
    code = ingest_in_process(home, DELIVERY_ID, SNDS_LANDING=str(reference.delivery.parent),
                             DAGSTER_HOME=str(pg_home), **postgres.env)
    assert code == reference.exit_code
    lake = home / "lake"
    assert load_report(lake, DELIVERY_ID) == reference.report
    assert curated_summary(lake, DELIVERY_ID) == reference.curated

    runs = postgres.query("select run_id, status from runs")
    assert len(runs) == 1 and runs[0][1] == "SUCCESS"
    run_id = runs[0][0]
    tags = dict(postgres.query("select key, value from run_tags where run_id = %s", run_id))
    assert tags["snds/delivery"] == DELIVERY_ID and tags["dagster/partition"] == DELIVERY_ID
    assert tags["snds/reception"] == "true"  # the queue's limit holds the sensor's runs while this one runs
    materialized = {r[0] for r in postgres.query(
        "select distinct asset_key from event_logs where run_id = %s and dagster_event_type = 'ASSET_MATERIALIZATION'",
        run_id)}
    families = set(reference.report["tables"][t]["family"] for t in reference.report["tables"])
    expected = {AssetKey(["landing", "delivery"]), AssetKey(["reports", "reception"])}
    expected |= {AssetKey([stage, f]) for f in families for stage in ("raw", "curated")}
    assert {k.to_string() for k in expected} <= materialized
    checks = postgres.query("select count(*) from asset_check_executions where run_id = %s", run_id)[0][0]
    assert checks > 0

    with DagsterInstance.from_config(str(pg_home)) as instance:
        record = instance.get_latest_materialization_event(AssetKey(["reports", "reception"]))
        assert record is not None and record.run_id == run_id
        assert instance.get_dynamic_partitions("deliveries") == [DELIVERY_ID]
