"""The sensors: deliveries are picked up only when complete, once per manifest; projects when new or changed."""
import hashlib
import json

import pytest
from dagster import AddDynamicPartitionsRequest, AssetKey, DagsterInstance, build_sensor_context

from snds_assets.config import Settings
from snds_assets.definitions import build_definitions


def _write_delivery(landing, delivery_id, manifest=True, tables=("ER_PRS_F", "T_MCO23C")):
    folder = landing / delivery_id
    folder.mkdir(parents=True)
    entries = []
    for table in tables:
        data = b"A;B\n1;2\n"
        (folder / f"{table}.csv").write_bytes(data)
        entries.append({"table": table, "files": [{"path": f"{table}.csv", "rows": 1, "bytes": len(data),
                                                    "sha256": hashlib.sha256(data).hexdigest()}]})
    if manifest is True:
        (folder / "manifest.json").write_text(json.dumps({"delivery_id": delivery_id, "tables": entries}))
    elif manifest:
        (folder / "manifest.json").write_text(manifest)


@pytest.fixture()
def env(snds_env):
    settings = Settings.from_env()
    defs = build_definitions(settings)
    instance = DagsterInstance.ephemeral()
    return settings, defs, instance


def _tick(defs, instance, name, cursor=None):
    sensor = next(s for s in defs.sensors if s.name == name)
    context = build_sensor_context(instance=instance, cursor=cursor, resources={"snds": defs.resources["snds"]})
    return sensor(context)


def test_complete_delivery_requested_once(env, tmp_path):
    settings, defs, instance = env
    from pathlib import Path

    landing = Path(settings.landing)
    _write_delivery(landing, "2026-11-15")
    _write_delivery(landing, "2026-11-16", manifest=False)
    _write_delivery(landing, "2026-11-17", manifest="{not json")
    bad_format = {"delivery_id": "2026-11-18", "format": {"header": "false"}, "tables": [{"table": "ER_PRS_F"}]}
    _write_delivery(landing, "2026-11-18", manifest=json.dumps(bad_format))  # skipped: the manifest is unreadable
    (landing / "notes").mkdir()

    result = _tick(defs, instance, "cnam_deliveries")
    assert [r.partition_key for r in result.run_requests] == ["2026-11-15"]
    request = result.run_requests[0]
    assert set(request.asset_selection) >= {
        AssetKey(["raw", "ER_PRS_F"]), AssetKey(["curated", "ER_PRS_F"]),
        AssetKey(["raw", "T_MCOaaC"]), AssetKey(["curated", "T_MCOaaC"]), AssetKey(["reports", "reception"]),
    }
    assert AssetKey(["raw", "IR_BEN_R"]) not in request.asset_selection
    adds = [r for r in result.dynamic_partitions_requests if isinstance(r, AddDynamicPartitionsRequest)]
    assert adds and adds[0].partition_keys == ["2026-11-15"] and adds[0].partitions_def_name == "deliveries"

    again = _tick(defs, instance, "cnam_deliveries", cursor=result.cursor)
    assert not again.run_requests

    _write_delivery(landing, "2026-12-01")
    third = _tick(defs, instance, "cnam_deliveries", cursor=result.cursor)
    assert [r.partition_key for r in third.run_requests] == ["2026-12-01"]
    assert third.run_requests[0].run_key != request.run_key


def test_changed_manifest_is_requested_again(env):
    settings, defs, instance = env
    from pathlib import Path

    landing = Path(settings.landing)
    _write_delivery(landing, "2026-11-15")
    first = _tick(defs, instance, "cnam_deliveries")
    manifest = json.loads((landing / "2026-11-15" / "manifest.json").read_text())
    manifest["tables"] = manifest["tables"][:1]
    (landing / "2026-11-15" / "manifest.json").write_text(json.dumps(manifest))
    second = _tick(defs, instance, "cnam_deliveries", cursor=first.cursor)
    assert [r.partition_key for r in second.run_requests] == ["2026-11-15"]
    assert AssetKey(["raw", "T_MCOaaC"]) not in second.run_requests[0].asset_selection


def test_empty_landing_skips_without_failing(env):
    _, defs, instance = env
    result = _tick(defs, instance, "cnam_deliveries")
    assert not result.run_requests
    assert "no new complete delivery" in str(result.skip_reason)


@pytest.fixture()
def cli_env(snds_env, monkeypatch):
    """What `snds` gives its runs (the settings in the environment, DAGSTER_HOME), undone after the test."""
    from pathlib import Path

    settings = Settings.from_env()
    for key, value in settings.as_env().items():
        monkeypatch.setenv(key, value)
    Path(settings.dagster_home).mkdir(parents=True)
    (Path(settings.dagster_home) / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    instance = DagsterInstance.get()
    yield settings, build_definitions(settings), instance
    instance.dispose()


def _drop_a_table(landing, delivery_id):
    path = landing / delivery_id / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["tables"] = manifest["tables"][:1]
    path.write_text(json.dumps(manifest))


def _write_manifest(landing, delivery_id, tables):
    folder = landing / delivery_id
    folder.mkdir(parents=True, exist_ok=True)
    entries = [{"table": t, "files": [{"path": f"{t}.csv", "rows": 1, "bytes": 8, "sha256": "0" * 64}]} for t in tables]
    (folder / "manifest.json").write_text(json.dumps({"delivery_id": delivery_id, "tables": entries}))


def test_a_delivery_received_by_snds_ingest_is_not_received_again(cli_env, capsys):
    """`make demo` then `make ui`: the sensor skips, saying why, what the command line already received (its
    run carries no run key), and still requests the delivery once its manifest changes."""
    from pathlib import Path

    from snds_assets.commands import _run
    from snds_assets.reception.assets import DELIVERY_KEY, REPORT_KEY

    settings, defs, instance = cli_env
    landing = Path(settings.landing)
    _write_delivery(landing, "2026-11-15")
    # The command's path, without Spark: the delivery step and the report step of the reception job.
    _run(settings, "reception", "deliveries", "2026-11-15", [DELIVERY_KEY, REPORT_KEY], "text",
         {"snds/delivery": "2026-11-15"})

    capsys.readouterr()
    first = _tick(defs, instance, "cnam_deliveries")
    assert not first.run_requests
    assert "2026-11-15 skipped: this manifest was already received" in str(first.skip_reason)
    assert "INFO - 2026-11-15 skipped: this manifest was already received" in capsys.readouterr().err
    assert not _tick(defs, instance, "cnam_deliveries", cursor=first.cursor).run_requests

    _drop_a_table(landing, "2026-11-15")
    changed = _tick(defs, instance, "cnam_deliveries", cursor=first.cursor)
    assert [r.partition_key for r in changed.run_requests] == ["2026-11-15"]


def test_a_reception_stopped_half_way_leaves_the_delivery_to_the_sensor(cli_env):
    """The mark is removed when a reception starts and written by its last step: after A was received, B
    archived by a run that stopped before its report, then A delivered again, the lake no longer holds A."""
    from pathlib import Path

    from snds_assets.commands import _run
    from snds_assets.reception.assets import DELIVERY_KEY, REPORT_KEY

    settings, defs, instance = cli_env
    landing = Path(settings.landing)
    _write_manifest(landing, "2026-11-15", ["ER_PRS_F", "T_MCO23C"])
    _run(settings, "reception", "deliveries", "2026-11-15", [DELIVERY_KEY, REPORT_KEY], "text", {})
    assert not _tick(defs, instance, "cnam_deliveries").run_requests
    _write_manifest(landing, "2026-11-15", ["ER_PRS_F"])
    _run(settings, "reception", "deliveries", "2026-11-15", [DELIVERY_KEY], "text", {})  # no report step
    _write_manifest(landing, "2026-11-15", ["ER_PRS_F", "T_MCO23C"])
    assert [r.partition_key for r in _tick(defs, instance, "cnam_deliveries").run_requests] == ["2026-11-15"]


@pytest.mark.parametrize("source", ["cli", "sensor"])
def test_a_reception_in_progress_is_waited_for_by_the_sensor(env, source):
    """A queued or running reception of the delivery (`snds ingest` while the UI is up): no second run alongside,
    and the delivery stays out of the cursor, so the next tick after the run looks at it again."""
    from pathlib import Path

    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    settings, defs, instance = env
    _write_delivery(Path(settings.landing), "2026-11-15")
    run = create_run_for_test(instance, job_name="reception", status=DagsterRunStatus.STARTED,
                              tags={"dagster/partition": "2026-11-15", "snds/source": source})
    result = _tick(defs, instance, "cnam_deliveries")
    assert not result.run_requests
    assert f"2026-11-15 waits: its reception run {run.run_id}" in str(result.skip_reason)
    assert "2026-11-15" not in json.loads(result.cursor)

    instance.report_run_canceled(run)
    assert [r.partition_key for r in _tick(defs, instance, "cnam_deliveries", result.cursor).run_requests] == [
        "2026-11-15"]


def test_snds_ingest_refuses_a_delivery_the_sensor_is_receiving(cli_env, monkeypatch, capsys):
    """The other direction: one line naming the run, exit 2, and nothing run."""
    from pathlib import Path

    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    from snds_assets import commands
    from snds_assets.cli import EXIT_ERROR, main

    settings, _, instance = cli_env
    _write_delivery(Path(settings.landing), "2026-11-15")
    run = create_run_for_test(instance, job_name="reception", status=DagsterRunStatus.NOT_STARTED,
                              tags={"dagster/partition": "2026-11-15", "snds/source": "sensor"})
    ran = []
    monkeypatch.setattr(commands, "_run", lambda *a, **k: ran.append(a))
    assert main(["ingest", "2026-11-15"]) == EXIT_ERROR
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and run.run_id in lines[0] and "already being received" in lines[0], lines
    assert "the sensor" in lines[0] and not ran


def test_a_manifest_changed_back_is_requested_again_with_a_new_run_key(env):
    """A -> B -> A: Dagster never runs a run key twice, so each change has its own key; a replayed tick (same
    cursor) gives the same keys, so a tick evaluated twice still requests each change once."""
    from pathlib import Path

    settings, defs, instance = env
    landing = Path(settings.landing)
    keys, cursors = [], [None]
    for tables in (["ER_PRS_F", "T_MCO23C"], ["ER_PRS_F"], ["ER_PRS_F", "T_MCO23C"]):
        _write_manifest(landing, "2026-11-15", tables)
        result = _tick(defs, instance, "cnam_deliveries", cursors[-1])
        assert [r.partition_key for r in result.run_requests] == ["2026-11-15"]
        keys.append(result.run_requests[0].run_key)
        replay = _tick(defs, instance, "cnam_deliveries", cursors[-1])
        assert [r.run_key for r in replay.run_requests] == [keys[-1]] and replay.cursor == result.cursor
        cursors.append(result.cursor)
    assert len(set(keys)) == 3
    assert not _tick(defs, instance, "cnam_deliveries", cursors[-1]).run_requests


def test_a_cursor_of_the_previous_format_is_read(env):
    """Deployed sensors keep their cursor ({id: fingerprint}): an unchanged delivery is not requested again, and
    a change back to an earlier content gets a key the first request (``id:fingerprint``) never had."""
    from pathlib import Path

    from snds_assets.reception.manifest import manifest_fingerprint
    from snds_assets.reception.storage import read_manifest

    settings, defs, instance = env
    landing = Path(settings.landing)
    _write_manifest(landing, "2026-11-15", ["ER_PRS_F"])
    first = manifest_fingerprint(read_manifest(settings.landing, "2026-11-15"))
    assert not _tick(defs, instance, "cnam_deliveries", json.dumps({"2026-11-15": first})).run_requests
    _write_manifest(landing, "2026-11-15", ["ER_PRS_F", "T_MCO23C"])
    changed = _tick(defs, instance, "cnam_deliveries", json.dumps({"2026-11-15": first}))
    _write_manifest(landing, "2026-11-15", ["ER_PRS_F"])
    back = _tick(defs, instance, "cnam_deliveries", changed.cursor)
    assert back.run_requests[0].run_key not in (f"2026-11-15:{first}", changed.run_requests[0].run_key)
