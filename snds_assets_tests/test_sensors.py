"""The sensors: deliveries are picked up only when complete, once per manifest; projects when new or changed."""
import hashlib
import json
import time
import uuid
from pathlib import Path

import pytest
from dagster import AddDynamicPartitionsRequest, AssetKey, AssetMaterialization, DagsterInstance, build_sensor_context

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


def test_a_handled_manifest_is_not_read_again_at_every_tick(env, monkeypatch):
    """Each tick read every delivery's manifest, received long ago or not: on Azure a download per delivery every
    30 s. Its file's version (size, ETag or modification time), from the look for its presence, now tells."""
    from snds_assets.reception import storage

    settings, defs, instance = env
    landing = Path(settings.landing)
    _write_delivery(landing, "2026-11-15")
    _write_delivery(landing, "2026-11-16")
    read, real = [], storage.read_manifest
    monkeypatch.setattr(storage, "read_manifest", lambda *a: read.append(a[1]) or real(*a))
    first = _tick(defs, instance, "cnam_deliveries")
    assert sorted(read) == ["2026-11-15", "2026-11-16"] and len(first.run_requests) == 2
    read.clear()
    second = _tick(defs, instance, "cnam_deliveries", first.cursor)
    assert read == [] and not second.run_requests
    path = landing / "2026-11-16" / "manifest.json"
    path.write_text(path.read_text() + " ")  # rewritten, same content: read, not requested
    third = _tick(defs, instance, "cnam_deliveries", second.cursor)
    assert read == ["2026-11-16"] and not third.run_requests
    read.clear()
    assert not _tick(defs, instance, "cnam_deliveries", third.cursor).run_requests and read == []
    manifest = json.loads(path.read_text())
    manifest["tables"] = manifest["tables"][:1]
    path.write_text(json.dumps(manifest))
    fourth = _tick(defs, instance, "cnam_deliveries", third.cursor)
    assert read == ["2026-11-16"] and [r.partition_key for r in fourth.run_requests] == ["2026-11-16"]


def test_a_delivery_folder_the_hub_cannot_enter_holds_back_no_other(env, monkeypatch, capsys):
    """A folder CNAM left without read access to the hub made the landing's listing fail: the tick skipped every
    delivery as "landing zone unreachable". That folder alone is skipped now, saying why."""
    from fsspec.implementations.local import LocalFileSystem

    settings, defs, instance = env
    landing = Path(settings.landing)
    _write_delivery(landing, "2026-11-15")
    _write_delivery(landing, "2026-11-16")
    info = LocalFileSystem.info

    def refused(fs, path, **kwargs):
        if "2026-11-15/" in str(path):  # its entries; the folder itself is listed by its parent
            raise PermissionError(13, "Permission denied", str(path))
        return info(fs, path, **kwargs)

    monkeypatch.setattr(LocalFileSystem, "info", refused)
    result = _tick(defs, instance, "cnam_deliveries")
    assert [r.partition_key for r in result.run_requests] == ["2026-11-16"]
    assert ("INFO - skipping 2026-11-15: cannot look into the folder (Permission denied): give the hub read access "
            "to it") in capsys.readouterr().err
    monkeypatch.setattr(LocalFileSystem, "info", info)
    assert [r.partition_key for r in _tick(defs, instance, "cnam_deliveries", result.cursor).run_requests] == [
        "2026-11-15"]


def test_changed_manifest_is_requested_again(env):
    settings, defs, instance = env
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
    """Nothing to receive is no failure; a landing zone that is not there (a typo in SNDS_LANDING?) is said."""
    settings, defs, instance = env
    result = _tick(defs, instance, "cnam_deliveries")
    assert not result.run_requests
    assert result.skip_reason.skip_message == (f"no new complete delivery (the landing zone {settings.landing} does not exist "
                                       "or is empty: is SNDS_LANDING right?)")
    (Path(settings.landing) / "2026-11-15").mkdir(parents=True)  # a delivery being written
    assert _tick(defs, instance, "cnam_deliveries").skip_reason.skip_message == "no new complete delivery"


@pytest.fixture()
def cli_env(snds_env, monkeypatch):
    """What `snds` gives its runs (the settings in the environment, DAGSTER_HOME), undone after the test."""
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


# Reception marks as a release before marks named their run wrote them (08bc330), for the manifests _write_delivery
# writes: an upgrade must not receive those deliveries again, so these fingerprints are literals, not today's.
EARLIER_MARKS = {"2026-01-05": "e9cf79dea539bf6d", "2026-02-05": "681bfb606761a1ff", "2026-03-05": "0a871afaa48a463b",
                 "2026-04-05": "2caff1594f5fe137", "2026-05-05": "ce3f8653db98f65c"}


def test_many_deliveries_received_already_make_one_note(env, capsys):
    """A first tick over a landing zone holding years of received deliveries named each in its skip reason. They
    were received by an earlier release, whose marks the sensor still reads."""
    settings, defs, instance = env
    ids = list(EARLIER_MARKS)
    for delivery_id in ids:
        _write_delivery(Path(settings.landing), delivery_id)
        mark = Path(settings.lake) / "reports" / "deliveries" / "_parts" / delivery_id / "_received.json"
        mark.parent.mkdir(parents=True)
        mark.write_text(json.dumps({"delivery_id": delivery_id, "manifest": EARLIER_MARKS[delivery_id],
                                    "received_at": "2026-12-02T10:00:00+00:00"}, indent=2) + "\n")
    first = _tick(defs, instance, "cnam_deliveries")
    assert not first.run_requests
    assert first.skip_reason.skip_message == (
        "no new complete delivery (5 deliveries skipped (2026-01-05 to 2026-05-05): their manifests were already "
        "received (by `snds ingest` or earlier runs))")
    assert capsys.readouterr().err.count("skipped: this manifest was already received") == 5  # the log names each


def test_a_reception_stopped_half_way_leaves_the_delivery_to_the_sensor(cli_env):
    """The mark is removed when a reception starts and written by its last step: after A was received, B
    archived by a run that stopped before its report, then A delivered again, the lake no longer holds A."""
    from snds_assets.commands import _run
    from snds_assets.reception.assets import DELIVERY_KEY, REPORT_KEY
    from snds_assets.runs import PROCESS_TAG, process_tags

    settings, defs, instance = cli_env
    landing = Path(settings.landing)
    _write_manifest(landing, "2026-11-15", ["ER_PRS_F", "T_MCO23C"])
    result = _run(settings, "reception", "deliveries", "2026-11-15", [DELIVERY_KEY, REPORT_KEY], "text", {})
    assert instance.get_run_by_id(result.run_id).tags[PROCESS_TAG] == process_tags(result.run_id)[PROCESS_TAG]
    assert not _tick(defs, instance, "cnam_deliveries").run_requests
    _write_manifest(landing, "2026-11-15", ["ER_PRS_F"])
    _run(settings, "reception", "deliveries", "2026-11-15", [DELIVERY_KEY], "text", {})  # no report step
    _write_manifest(landing, "2026-11-15", ["ER_PRS_F", "T_MCO23C"])
    assert [r.partition_key for r in _tick(defs, instance, "cnam_deliveries").run_requests] == ["2026-11-15"]


@pytest.mark.parametrize("source, job", [("cli", "reception"), ("sensor", "reception"), ("ui", "__ASSET_JOB")])
def test_a_reception_in_progress_is_waited_for_by_the_sensor(env, source, job):
    """A queued or running reception of the delivery (`snds ingest` while the UI is up, or one family
    materialised alone from the UI): no second run alongside, and the delivery stays out of the cursor, so the
    next tick after the run looks at it again."""
    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    settings, defs, instance = env
    _write_delivery(Path(settings.landing), "2026-11-15")
    run = create_run_for_test(instance, job_name=job, status=DagsterRunStatus.STARTED,
                              tags={"dagster/partition": "2026-11-15", "snds/source": source})
    result = _tick(defs, instance, "cnam_deliveries")
    assert not result.run_requests
    assert f"2026-11-15 waits: it is already being received by run {run.run_id}" in str(result.skip_reason)
    assert "2026-11-15" not in json.loads(result.cursor)

    instance.report_run_canceled(run)
    assert [r.partition_key for r in _tick(defs, instance, "cnam_deliveries", result.cursor).run_requests] == [
        "2026-11-15"]


def test_a_reception_whose_snds_command_was_killed_is_ended_not_waited_for(cli_env, monkeypatch):
    """`snds ingest` killed: its run would stay STARTED for ever, holding the delivery from the sensor and from
    the next command. The run names its process; that process gone, the run is ended as failed."""
    import subprocess

    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    from snds_assets import commands
    from snds_assets.cli import main
    from snds_assets.runs import PROCESS_TAG, _started, machine

    settings, defs, instance = cli_env
    _write_delivery(Path(settings.landing), "2026-11-15")
    child = subprocess.Popen(["sleep", "60"])
    process = f"{machine()}:{child.pid}:{_started(child.pid)}"

    def started_run(job_name: str, partition: str):
        run_id = str(uuid.uuid4())
        return create_run_for_test(instance, job_name=job_name, status=DagsterRunStatus.STARTED, run_id=run_id,
                                   tags={"dagster/partition": partition, "snds/source": "cli",
                                         PROCESS_TAG: f"{process}:{run_id}"})

    run, project = started_run("reception", "2026-11-15"), started_run("provision", "study")
    assert not _tick(defs, instance, "cnam_deliveries").run_requests  # alive: waited for
    child.kill()
    child.wait()
    assert [r.partition_key for r in _tick(defs, instance, "cnam_deliveries").run_requests] == ["2026-11-15"]
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(project.run_id).status == DagsterRunStatus.FAILURE  # any run, by every tick

    second = started_run("reception", "2026-11-15")
    ran = []
    monkeypatch.setattr(commands, "_run", lambda *a, **k: ran.append(a))
    main(["ingest", "2026-11-15"])  # not refused (then no report: _run did nothing)
    assert ran and instance.get_run_by_id(second.run_id).status == DagsterRunStatus.FAILURE


def test_a_refresh_extraction_reading_the_delivery_is_told_as_such_by_the_sensor(env):
    """A refresh extraction carries its delivery's tag, so that a reception of it waits for the extraction reading
    it: the sensor said "its reception" of a run that was a project's extraction."""
    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    settings, defs, instance = env
    _write_delivery(Path(settings.landing), "2026-11-15")
    run = create_run_for_test(instance, job_name="provision", status=DagsterRunStatus.STARTED,
                              tags={"dagster/partition": "study-a", "snds/project": "study-a",
                                    "snds/source": "refresh", "snds/delivery": "2026-11-15"})
    result = _tick(defs, instance, "cnam_deliveries")
    assert not result.run_requests
    assert (f"2026-11-15 waits: it is being read by the extraction of project study-a, run {run.run_id} (started by "
            "the refresh sensor") in str(result.skip_reason)


def test_a_refresh_after_several_deliveries_holds_each_and_a_project_named_like_a_delivery_none(env):
    """A refresh following two deliveries carried the last one's tag only: a new manifest of the first was received
    while the refresh read it. And the extraction of a project named 2026-11-16 (a valid project id) held the
    delivery 2026-11-16, "being read by the extraction of project 2026-11-16"."""
    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    settings, defs, instance = env
    for delivery_id in ("2026-11-14", "2026-11-15", "2026-11-16"):
        _write_delivery(Path(settings.landing), delivery_id)
    create_run_for_test(instance, job_name="provision", status=DagsterRunStatus.STARTED,
                        tags={"dagster/partition": "study-a", "snds/project": "study-a", "snds/source": "refresh",
                              "snds/delivery": "2026-11-15", "snds/deliveries": "2026-11-14, 2026-11-15"})
    create_run_for_test(instance, job_name="provision", status=DagsterRunStatus.STARTED,
                        tags={"dagster/partition": "2026-11-16", "snds/project": "2026-11-16", "snds/source": "cli"})
    result = _tick(defs, instance, "cnam_deliveries")
    assert [r.partition_key for r in result.run_requests] == ["2026-11-16"]  # 2026-11-14 and 2026-11-15 wait
    assert {"2026-11-14", "2026-11-15"}.isdisjoint(json.loads(result.cursor))  # looked at again at the next tick


@pytest.mark.parametrize("command, job, status, tags, says", [
    ("ingest", "reception", "NOT_STARTED", {"dagster/partition": "2026-11-15", "snds/source": "sensor"},
     ("already being received", "the sensor")),
    ("extract", "provision", "STARTED",
     {"dagster/partition": "study-a", "snds/project": "study-a", "snds/source": "cli"},
     ("already being extracted", "snds extract")),
    ("ingest", "provision", "STARTED",  # a refresh extraction reading the delivery: not told as its reception
     {"dagster/partition": "study-a", "snds/project": "study-a", "snds/source": "refresh", "snds/delivery": "2026-11-15"},
     ("delivery 2026-11-15 is being read by the extraction of project study-a", "the refresh sensor")),
])
def test_a_command_refuses_a_partition_another_run_holds(cli_env, monkeypatch, capsys, command, job, status, tags,
                                                         says):
    """`snds ingest` on a delivery the sensor is receiving, `snds extract` on a project another run extracts (two
    runs would write the same folders): one line naming the run, exit 2, and nothing run until that run ends."""
    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    from snds_assets import commands
    from snds_assets.cli import EXIT_ERROR, main

    settings, _, instance = cli_env
    _write_delivery(Path(settings.landing), "2026-11-15")
    _project(settings, "study-a", ["IR_BEN_R"])
    partition = tags.get("snds/delivery", tags["dagster/partition"])
    run = create_run_for_test(instance, job_name=job, status=DagsterRunStatus[status], tags=tags)
    ran = []
    monkeypatch.setattr(commands, "_run", lambda *a, **k: ran.append(a))
    assert main([command, partition]) == EXIT_ERROR
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and run.run_id in lines[0] and all(w in lines[0] for w in says), lines
    assert not ran

    instance.report_run_canceled(run)
    main([command, partition])  # no longer refused (then no report: _run did nothing)
    assert ran


def test_ingest_is_not_refused_while_another_delivery_is_received(cli_env, monkeypatch, capsys):
    """Receptions run one at a time, but `snds ingest` of one delivery while another's reception runs is not
    refused: its run waits for that one (``runs.take_turn``), and every run of the job carries the tag the queue
    holds the others by."""
    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    from snds_assets import commands
    from snds_assets.cli import main
    from snds_assets.definitions import RECEPTION_JOB
    from snds_assets.runs import RECEPTION_TAG

    settings, defs, instance = cli_env
    _write_delivery(Path(settings.landing), "2026-11-15")
    tags = defs.resolve_job_def(RECEPTION_JOB).run_tags  # what every run of the job carries
    assert tags == {RECEPTION_TAG: "true"}
    create_run_for_test(instance, job_name=RECEPTION_JOB, status=DagsterRunStatus.STARTED,
                        tags={**tags, "dagster/partition": "2026-10-15", "snds/source": "sensor"})
    ran = []
    monkeypatch.setattr(commands, "_run", lambda *a, **k: ran.append(a))
    main(["ingest", "2026-11-15"])  # then no report: _run did nothing
    assert ran and "being received" not in capsys.readouterr().err


def test_deliveries_are_requested_in_delivery_order(env):
    """Receptions run one at a time in the order they were requested: the landing's folders in delivery order, a
    day's suffixes by value (as names, `_10` came before `_9`)."""
    settings, defs, instance = env
    for delivery_id in ("2026-11-15_10", "2026-11-15_9", "2026-11-16", "2026-11-15"):
        _write_delivery(Path(settings.landing), delivery_id)
    result = _tick(defs, instance, "cnam_deliveries")
    assert [r.partition_key for r in result.run_requests] == ["2026-11-15", "2026-11-15_9", "2026-11-15_10",
                                                             "2026-11-16"]


def test_a_manifest_changed_back_is_requested_again_with_a_new_run_key(env):
    """A -> B -> A: Dagster never runs a run key twice, so each change has its own key; a replayed tick (same
    cursor) gives the same keys, so a tick evaluated twice still requests each change once."""
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


# The delivery sensor's cursor as earlier releases wrote it after one tick over _write_manifest(landing,
# "2026-11-15", ["ER_PRS_F"]): {id: fingerprint} (a717d2e), then {id: {manifest, requests}} (5ccb84e).
EARLIER_DELIVERY_CURSORS = ['{"2026-11-15": "8769a87db225ef6a"}',
                            '{"2026-11-15": {"manifest": "8769a87db225ef6a", "requests": 1}}']


@pytest.mark.parametrize("cursor", EARLIER_DELIVERY_CURSORS, ids=["bare-fingerprint", "counted"])
def test_a_cursor_of_the_previous_format_is_read(env, cursor):
    """Deployed sensors keep their cursor: after an upgrade an unchanged delivery is not requested again (a
    changed fingerprint would receive every delivery again), and a change back to an earlier content gets a key
    the first request (``id:fingerprint``, ``id:1:fingerprint``) never had."""
    settings, defs, instance = env
    landing = Path(settings.landing)
    _write_manifest(landing, "2026-11-15", ["ER_PRS_F"])
    kept = _tick(defs, instance, "cnam_deliveries", cursor)
    assert not kept.run_requests
    assert json.loads(kept.cursor)["2026-11-15"]["manifest"] == "8769a87db225ef6a"
    _write_manifest(landing, "2026-11-15", ["ER_PRS_F", "T_MCO23C"])
    changed = _tick(defs, instance, "cnam_deliveries", cursor)
    assert [r.run_key.split(":")[:2] for r in changed.run_requests] == [["2026-11-15", "2"]]
    _write_manifest(landing, "2026-11-15", ["ER_PRS_F"])
    back = _tick(defs, instance, "cnam_deliveries", changed.cursor)
    assert back.run_requests[0].run_key not in ("2026-11-15:8769a87db225ef6a", "2026-11-15:1:8769a87db225ef6a",
                                                changed.run_requests[0].run_key)


def test_the_manifest_fingerprint_is_the_one_earlier_releases_wrote(tmp_path):
    """The fingerprint is what the cursor, the run keys and the reception marks compare: changed by an upgrade (a
    field added to the manifest's serialisation, another hash), every delivery would be received again and every
    project refreshed. Fixed manifests, literal values computed by the release that introduced the function
    (a717d2e). A manifest reformatted, or with the default format spelt out, is the same manifest."""
    from snds_assets.reception.manifest import manifest_fingerprint, parse_manifest
    from snds_assets.reception.storage import read_manifest

    manifest = {
        "delivery_id": "2024-03-01_b", "producer": "CNAM", "created_at": "2024-03-01T08:00:00Z",
        "format": {"delimiter": "|", "encoding": "latin-1", "header": True, "null_value": "NA", "decimal": ",",
                   "date_format": "%d/%m/%Y"},
        "tables": [
            {"table": "IR_BEN_R", "mode": "full",
             "files": [{"path": "IR_BEN_R.csv.gz", "rows": 12, "bytes": 345, "sha256": "ab" * 32}]},
            {"table": "T_MCO23C", "files": [
                {"path": "T_MCO23C/part-1.csv", "rows": 0, "bytes": 40, "sha256": "0" * 64},
                {"path": "T_MCO23C/part-2.csv", "rows": 7, "bytes": 410, "sha256": "f" * 64}]},
        ],
    }
    assert manifest_fingerprint(parse_manifest(json.dumps(manifest))) == "901d07a8214d25af"
    reordered = {"tables": manifest["tables"], "format": dict(reversed(manifest["format"].items())),
                 **{k: manifest[k] for k in ("created_at", "producer", "delivery_id")}}
    assert manifest_fingerprint(parse_manifest(json.dumps(reordered, indent=4))) == "901d07a8214d25af"

    _write_manifest(tmp_path, "2026-11-15", ["ER_PRS_F"])
    assert manifest_fingerprint(read_manifest(str(tmp_path), "2026-11-15")) == "8769a87db225ef6a"
    path = tmp_path / "2026-11-15" / "manifest.json"
    spelt = json.loads(path.read_text())
    spelt.update(producer="CNAM", created_at="", format={"delimiter": ";", "encoding": "utf-8", "header": True})
    path.write_text(json.dumps(spelt))
    assert manifest_fingerprint(read_manifest(str(tmp_path), "2026-11-15")) == "8769a87db225ef6a"


def test_a_changed_manifest_gets_a_new_run_key_after_the_cursor_was_reset(env):
    """A sensor's cursor may be reset (from the UI), which restarts the count of its requests: the run key of a
    changed manifest must differ all the same, since Dagster silently drops a run whose key it has seen."""
    settings, defs, instance = env
    landing = Path(settings.landing)
    _write_manifest(landing, "2026-11-15", ["ER_PRS_F", "T_MCO23C"])
    first = _tick(defs, instance, "cnam_deliveries")
    _write_manifest(landing, "2026-11-15", ["ER_PRS_F"])
    reset = _tick(defs, instance, "cnam_deliveries")  # no cursor: reset
    assert [r.partition_key for r in reset.run_requests] == ["2026-11-15"]
    assert reset.run_requests[0].run_key != first.run_requests[0].run_key


def test_a_manifest_changed_back_after_a_cursor_reset_gets_a_key_no_run_had(env):
    """A received, then B, then the cursor reset and A put back: the count kept in the cursor restarted, so the
    request for A had the key of A's first run, which Dagster dropped (the delivery stayed received as B, the cursor
    saying A was handled). The instance's runs are read too; a replayed tick keeps its key (Dagster's dedup)."""
    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    from snds_assets.definitions import RECEPTION_JOB
    from snds_assets.reception.manifest import manifest_fingerprint
    from snds_assets.reception.report import mark_received
    from snds_assets.reception.storage import read_manifest

    settings, defs, instance = env
    landing = Path(settings.landing)
    keys, cursor = [], None
    for tables in (["ER_PRS_F", "T_MCO23C"], ["ER_PRS_F"], ["ER_PRS_F", "T_MCO23C"]):  # A, B, A
        _write_manifest(landing, "2026-11-15", tables)
        if len(keys) == 2:
            cursor = None  # reset from the UI
        result = _tick(defs, instance, "cnam_deliveries", cursor)
        (request,) = result.run_requests
        replayed = _tick(defs, instance, "cnam_deliveries", cursor)  # before the daemon stored the cursor
        assert [r.run_key for r in replayed.run_requests] == [request.run_key]
        create_run_for_test(instance, job_name=RECEPTION_JOB, status=DagsterRunStatus.SUCCESS,
                            tags={**request.tags, "dagster/run_key": request.run_key})
        replayed = _tick(defs, instance, "cnam_deliveries", cursor)  # the run made, the cursor not stored yet
        assert [r.run_key for r in replayed.run_requests] == [request.run_key]
        mark_received(settings, read_manifest(settings.landing, "2026-11-15"))
        keys.append(request.run_key)
        cursor = result.cursor
    fingerprints = [k.split(":")[2] for k in keys]
    assert fingerprints[0] == fingerprints[2] != fingerprints[1]
    assert len(set(keys)) == 3, keys
    assert keys[2] == f"2026-11-15:3:{fingerprints[0]}"
    assert manifest_fingerprint(read_manifest(settings.landing, "2026-11-15")) == fingerprints[0]


def test_a_delivery_whose_receiving_run_failed_after_its_mark_is_received_again(env):
    """`snds ingest` killed in the instant after its report and reception mark were written, before Dagster recorded
    the report: the lake said received, the sensor skipped the manifest and, with no report materialised, no refresh
    of the projects reading it followed. The mark names its run: a failed or canceled one is received again; a
    successful one, or a mark without a run (written before runs were named), is skipped as before."""
    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    from snds_assets.definitions import RECEPTION_JOB
    from snds_assets.reception.report import mark_received
    from snds_assets.reception.storage import read_manifest

    settings, defs, instance = env
    _write_manifest(Path(settings.landing), "2026-11-15", ["ER_PRS_F"])
    manifest = read_manifest(settings.landing, "2026-11-15")
    for status, requested in ((DagsterRunStatus.SUCCESS, False), (DagsterRunStatus.FAILURE, True),
                              (DagsterRunStatus.CANCELED, True), (None, False)):
        run = create_run_for_test(instance, job_name=RECEPTION_JOB, status=status or DagsterRunStatus.SUCCESS,
                                  tags={"dagster/partition": "2026-11-15", "snds/source": "cli"})
        mark_received(settings, manifest, run.run_id if status else None)
        result = _tick(defs, instance, "cnam_deliveries")
        assert [r.partition_key for r in result.run_requests] == (["2026-11-15"] if requested else []), status


def test_a_reception_mark_that_cannot_be_read_leaves_the_delivery_waiting(env, monkeypatch):
    """Whether the manifest was already received is not known: the delivery is neither requested (it may have been,
    by `snds ingest`) nor put in the cursor (it is looked at again at the next tick); the others go on."""
    from snds_assets.reception import report

    settings, defs, instance = env
    landing = Path(settings.landing)
    _write_manifest(landing, "2026-11-15", ["ER_PRS_F"])
    _write_manifest(landing, "2026-11-16", ["ER_PRS_F"])
    readable = report.received_mark

    def flaky(settings_, delivery_id):
        if delivery_id == "2026-11-15":
            raise OSError("connection reset by peer")
        return readable(settings_, delivery_id)

    monkeypatch.setattr(report, "received_mark", flaky)
    result = _tick(defs, instance, "cnam_deliveries")
    assert [r.partition_key for r in result.run_requests] == ["2026-11-16"]
    assert "2026-11-15" not in json.loads(result.cursor)
    monkeypatch.setattr(report, "received_mark", readable)
    assert [r.partition_key for r in _tick(defs, instance, "cnam_deliveries", result.cursor).run_requests] == [
        "2026-11-15"]


def _project(settings, project_id, tables, criterion='drug: {cip13: ["3400930000001"]}'):
    folder = Path(settings.projects)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{project_id}.yaml").write_text(
        f"id: {project_id}\nperiod: {{start: 2022-01-01, end: 2023-12-31}}\ntables: [{', '.join(tables)}]\n"
        f"cohort:\n  criteria:\n    any_of:\n      - {criterion}\n")


def _report(instance, delivery_id, tables, status="accepted"):
    """A reception report as the report asset writes it (runless: no reception run is needed)."""
    instance.add_dynamic_partitions("deliveries", [delivery_id])
    instance.report_runless_asset_event(AssetMaterialization(
        asset_key=AssetKey(["reports", "reception"]), partition=delivery_id,
        metadata={"delivery_id": delivery_id, "status": status, "tables": list(tables)}))


def _refreshed(result) -> set[tuple[str, str]]:
    return {(r.partition_key, r.tags["snds/deliveries"]) for r in result.run_requests}


@pytest.fixture()
def two_projects(env):
    """proj-a extracts ER_PRS_F and targets a drug (ER_PHA_F); proj-b extracts KI_CCI_R and targets an ALD."""
    settings, defs, instance = env
    _project(settings, "proj-a", ["ER_PRS_F"])
    _project(settings, "proj-b", ["KI_CCI_R"], criterion='ald: {icd10: ["E11"]}')
    instance.add_dynamic_partitions("projects", ["proj-a", "proj-b"])
    return settings, defs, instance


def test_refresh_handles_every_delivery_accepted_between_two_ticks(two_projects):
    _, defs, instance = two_projects
    start = _tick(defs, instance, "refresh_extracts")
    assert not start.run_requests
    _report(instance, "2024-01-15", ["ER_PRS_F"])
    _report(instance, "2024-02-15", ["KI_CCI_R"])
    _report(instance, "2024-03-15", ["ER_PRS_F"], status="rejected")
    result = _tick(defs, instance, "refresh_extracts", start.cursor)
    assert _refreshed(result) == {("proj-a", "2024-01-15"), ("proj-b", "2024-02-15")}
    assert not _tick(defs, instance, "refresh_extracts", result.cursor).run_requests


def test_refresh_takes_a_bounded_batch_and_resumes_after_it(two_projects, monkeypatch):
    from snds_assets.provision import assets

    _, defs, instance = two_projects
    monkeypatch.setattr(assets, "REFRESH_EVENTS_PER_TICK", 1)
    start = _tick(defs, instance, "refresh_extracts")
    _report(instance, "2024-01-15", ["ER_PRS_F"])
    _report(instance, "2024-02-15", ["KI_CCI_R"])
    first = _tick(defs, instance, "refresh_extracts", start.cursor)
    second = _tick(defs, instance, "refresh_extracts", first.cursor)
    assert _refreshed(first) == {("proj-a", "2024-01-15")} and _refreshed(second) == {("proj-b", "2024-02-15")}
    assert not _tick(defs, instance, "refresh_extracts", second.cursor).run_requests


def test_refresh_switched_on_over_a_history_handles_the_latest_report_only(two_projects):
    """Past deliveries are in the current state already: a sensor with no cursor does not refresh for each."""
    _, defs, instance = two_projects
    _report(instance, "2024-01-15", ["ER_PRS_F"])
    _report(instance, "2024-02-15", ["KI_CCI_R"])
    first = _tick(defs, instance, "refresh_extracts")
    assert _refreshed(first) == {("proj-b", "2024-02-15")}
    _report(instance, "2024-03-15", ["ER_PRS_F"])
    assert _refreshed(_tick(defs, instance, "refresh_extracts", first.cursor)) == {("proj-a", "2024-03-15")}


def test_refresh_replayed_tick_asks_for_the_same_runs(two_projects):
    _, defs, instance = two_projects
    start = _tick(defs, instance, "refresh_extracts")
    _report(instance, "2024-01-15", ["ER_PRS_F"])
    _report(instance, "2024-02-15", ["KI_CCI_R"])
    first = _tick(defs, instance, "refresh_extracts", start.cursor)
    replay = _tick(defs, instance, "refresh_extracts", start.cursor)
    keys = [r.run_key for r in first.run_requests]
    assert len(set(keys)) == 2 and [r.run_key for r in replay.run_requests] == keys
    assert replay.cursor == first.cursor


def test_refresh_reaccepted_delivery_gets_a_new_run_key(two_projects):
    _, defs, instance = two_projects
    _report(instance, "2024-01-15", ["ER_PRS_F"])
    first = _tick(defs, instance, "refresh_extracts")
    _report(instance, "2024-01-15", ["ER_PRS_F"])
    again = _tick(defs, instance, "refresh_extracts", first.cursor)
    assert _refreshed(first) == _refreshed(again) == {("proj-a", "2024-01-15")}
    assert again.run_requests[0].run_key != first.run_requests[0].run_key


def test_refresh_names_a_delivery_received_twice_between_two_ticks_once(two_projects):
    """The run's `snds/deliveries` tag (and the log line) said "2024-01-15, 2024-02-15, 2024-01-15"."""
    _, defs, instance = two_projects
    start = _tick(defs, instance, "refresh_extracts")
    for delivery_id in ("2024-01-15", "2024-02-15", "2024-01-15"):
        _report(instance, delivery_id, ["ER_PRS_F"])
    result = _tick(defs, instance, "refresh_extracts", start.cursor)
    assert _refreshed(result) == {("proj-a", "2024-02-15, 2024-01-15")}
    assert result.run_requests[0].tags["snds/delivery"] == "2024-01-15"


def test_refresh_when_a_delivery_accepted_before_is_rejected(two_projects):
    """A delivery received again and rejected leaves the current state: the extracts that read its families (as
    its accepted report listed them) are refreshed; a delivery never accepted changes nothing."""
    _, defs, instance = two_projects
    _report(instance, "2024-01-15", ["ER_PRS_F", "KI_CCI_R"])
    start = _tick(defs, instance, "refresh_extracts")
    _report(instance, "2024-01-15", ["ER_PRS_F"], status="rejected")
    _report(instance, "2024-02-15", ["KI_CCI_R"], status="rejected")
    result = _tick(defs, instance, "refresh_extracts", start.cursor)
    assert _refreshed(result) == {("proj-a", "2024-01-15"), ("proj-b", "2024-01-15")}
    _report(instance, "2024-01-15", ["ER_PRS_F"], status="rejected")  # rejected twice: no change the second time
    assert not _tick(defs, instance, "refresh_extracts", result.cursor).run_requests


def test_refresh_when_a_delivery_received_again_no_longer_brings_a_family(two_projects):
    """The families of a delivery's earlier accepted report leave the current state when it is accepted again
    without them: the projects that read them are refreshed too."""
    _, defs, instance = two_projects
    _report(instance, "2024-01-15", ["ER_PRS_F", "KI_CCI_R"])
    start = _tick(defs, instance, "refresh_extracts")
    _report(instance, "2024-01-15", ["ER_PRS_F"])
    assert _refreshed(_tick(defs, instance, "refresh_extracts", start.cursor)) == {
        ("proj-a", "2024-01-15"), ("proj-b", "2024-01-15")}


def test_refresh_follows_the_cohort_sources(two_projects):
    """ER_PHA_F is not extracted by proj-a but its drug criterion reads it, IR_IMB_R is read by proj-b's ALD
    criterion, and IR_BEN_R_ARC feeds every cohort."""
    _, defs, instance = two_projects
    start = _tick(defs, instance, "refresh_extracts")
    _report(instance, "2024-01-15", ["ER_PHA_F"])
    _report(instance, "2024-02-15", ["IR_IMB_R"])
    _report(instance, "2024-03-15", ["IR_BEN_R_ARC"])
    result = _tick(defs, instance, "refresh_extracts", start.cursor)
    # one refresh per project, after every delivery of the tick that concerns it
    assert _refreshed(result) == {("proj-a", "2024-01-15, 2024-03-15"), ("proj-b", "2024-02-15, 2024-03-15")}
    assert len(result.run_requests) == 2
    # A refresh holds the latest delivery it reads from being received again meanwhile (the queue's limit and
    # `snds ingest` look for one id in the tag, which holds one value): it was "2024-01-15, 2024-03-15", no id.
    from dagster._core.test_utils import create_run_for_test

    from snds_assets.reception.assets import receptions_in_progress

    run = create_run_for_test(instance, job_name="provision", tags=result.run_requests[0].tags)
    assert [r.run_id for r in receptions_in_progress(instance, "2024-03-15")] == [run.run_id]
    selection = next(r.asset_selection for r in result.run_requests if r.partition_key == "proj-a")
    assert AssetKey(["projects", "cohort"]) in selection


def test_refresh_owes_a_project_whose_request_cannot_be_read_the_reports_it_missed(two_projects):
    """A request saved half-written when a delivery is accepted: the cursor moved past the report, so the project
    was never refreshed for it. It is owed the reports (the cursor says so) and refreshed once its request reads,
    for every delivery it missed that concerns it; a request removed meanwhile is owed nothing."""
    settings, defs, instance = two_projects
    request = Path(settings.projects) / "proj-a.yaml"
    written = request.read_text()
    start = _tick(defs, instance, "refresh_extracts")
    request.write_text("id: proj-a\nperiod: [2022-01-01\n")  # half-written
    _report(instance, "2024-01-15", ["ER_PRS_F"])
    first = _tick(defs, instance, "refresh_extracts", start.cursor)
    assert not first.run_requests and json.loads(first.cursor)["owed"] == {"proj-a": int(start.cursor)}
    _report(instance, "2024-02-15", ["KI_CCI_R", "ER_PRS_F"])
    _report(instance, "2024-03-15", ["KI_CCI_R"])
    second = _tick(defs, instance, "refresh_extracts", first.cursor)
    assert _refreshed(second) == {("proj-b", "2024-02-15, 2024-03-15")}
    assert json.loads(second.cursor)["owed"] == {"proj-a": int(start.cursor)}
    assert not _tick(defs, instance, "refresh_extracts", second.cursor).run_requests  # still unreadable

    request.write_text(written)
    third = _tick(defs, instance, "refresh_extracts", second.cursor)
    assert _refreshed(third) == {("proj-a", "2024-01-15, 2024-02-15")}  # not 2024-03-15: KI_CCI_R only
    assert third.cursor == str(json.loads(second.cursor)["after"])  # owed nothing more
    assert not _tick(defs, instance, "refresh_extracts", third.cursor).run_requests

    request.write_text("id: proj-a\nperiod: [2022-01-01\n")
    _report(instance, "2024-04-15", ["ER_PRS_F"])
    fourth = _tick(defs, instance, "refresh_extracts", third.cursor)
    assert list(json.loads(fourth.cursor)["owed"]) == ["proj-a"]
    request.unlink()
    assert _tick(defs, instance, "refresh_extracts", fourth.cursor).cursor.isdigit()


def test_refresh_registers_a_project_not_yet_a_partition(env):
    settings, defs, instance = env
    _project(settings, "proj-a", ["ER_PRS_F"])
    _project(settings, "proj-b", ["ER_PRS_F"])
    instance.add_dynamic_partitions("projects", ["proj-a"])
    _report(instance, "2024-01-15", ["ER_PRS_F"])
    result = _tick(defs, instance, "refresh_extracts")
    assert {r.partition_key for r in result.run_requests} == {"proj-a", "proj-b"}
    adds = [r for r in result.dynamic_partitions_requests if isinstance(r, AddDynamicPartitionsRequest)]
    assert [(a.partitions_def_name, list(a.partition_keys)) for a in adds] == [("projects", ["proj-b"])]
    # The daemon adds the partitions before it checks the runs' keys: an unknown one would fail the whole tick.
    for add in adds:
        instance.add_dynamic_partitions(add.partitions_def_name, add.partition_keys)
    assert {r.partition_key for r in result.run_requests} <= set(instance.get_dynamic_partitions("projects"))
    assert result.cursor


def test_refresh_follows_the_tables_on_the_way_to_the_patient(env):
    """An extract of T_MCOaaB keeps the stays whose T_MCOaaC row links to the cohort (SPEC §3): a delivery of
    T_MCOaaC alone changes it, as one of ER_PRS_F changes an extract of ER_PHA_F."""
    settings, defs, instance = env
    _project(settings, "pmsi", ["T_MCOaaB"], criterion='ald: {icd10: ["E11"]}')
    _project(settings, "drugs", ["ER_PHA_F"], criterion='ald: {icd10: ["E11"]}')
    instance.add_dynamic_partitions("projects", ["pmsi", "drugs"])
    start = _tick(defs, instance, "refresh_extracts")
    _report(instance, "2024-01-15", ["T_MCO23C"])
    _report(instance, "2024-02-15", ["ER_PRS_F"])
    assert _refreshed(_tick(defs, instance, "refresh_extracts", start.cursor)) == {
        ("pmsi", "2024-01-15"), ("drugs", "2024-02-15")}


def test_an_invalid_project_request_holds_back_no_other_project(env):
    """An invalid request is logged and skipped by both sensors: the projects after it are extracted and refreshed,
    and it is extracted once corrected."""
    settings, defs, instance = env
    folder = Path(settings.projects)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a-broken.yaml").write_text("id: a-broken\ntables: [ER_PRS_F]\n")  # no period, no cohort
    _project(settings, "b-fine", ["ER_PRS_F"])
    result = _tick(defs, instance, "project_requests")
    assert [r.partition_key for r in result.run_requests] == ["b-fine"]
    assert "a-broken" not in json.loads(result.cursor)

    instance.add_dynamic_partitions("projects", ["b-fine"])
    _report(instance, "2024-01-15", ["ER_PRS_F"])
    assert _refreshed(_tick(defs, instance, "refresh_extracts")) == {("b-fine", "2024-01-15")}

    _project(settings, "a-broken", ["ER_PRS_F"])
    assert [r.partition_key for r in _tick(defs, instance, "project_requests", result.cursor).run_requests] == [
        "a-broken"]


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied"),
                                   FileNotFoundError(2, "No such file or directory")])
def test_a_request_file_that_cannot_be_read_holds_back_no_other_project(env, monkeypatch, error):
    """A request file unreadable to the hub, or removed between the folder's listing and its read, failed both
    sensors' ticks for every project (the fingerprint read it unguarded): it is now skipped, saying why."""
    settings, defs, instance = env
    _project(settings, "a-locked", ["ER_PRS_F"])
    _project(settings, "b-fine", ["ER_PRS_F"])
    locked = Path(settings.projects) / "a-locked.yaml"
    read_bytes, read_text = Path.read_bytes, Path.read_text

    def refuse(read):
        def reading(path, *args, **kwargs):
            if path == locked:
                raise type(error)(*error.args)
            return read(path, *args, **kwargs)
        return reading

    monkeypatch.setattr(Path, "read_bytes", refuse(read_bytes))
    monkeypatch.setattr(Path, "read_text", refuse(read_text))
    result = _tick(defs, instance, "project_requests")
    assert [r.partition_key for r in result.run_requests] == ["b-fine"]
    assert "a-locked" not in json.loads(result.cursor)
    instance.add_dynamic_partitions("projects", ["b-fine"])
    _report(instance, "2024-01-15", ["ER_PRS_F"])
    assert _refreshed(_tick(defs, instance, "refresh_extracts")) == {("b-fine", "2024-01-15")}
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    monkeypatch.setattr(Path, "read_text", read_text)
    assert [r.partition_key for r in _tick(defs, instance, "project_requests", result.cursor).run_requests] == [
        "a-locked"]


def test_project_edited_back_to_earlier_content_runs_again(env):
    settings, defs, instance = env
    keys, cursor = [], None
    for code in ("3400930000001", "3400930000002", "3400930000001"):
        _project(settings, "p", ["ER_PRS_F"], criterion=f'drug: {{cip13: ["{code}"]}}')
        result = _tick(defs, instance, "project_requests", cursor)
        replay = _tick(defs, instance, "project_requests", cursor)
        assert [r.run_key for r in replay.run_requests] == [r.run_key for r in result.run_requests]
        keys += [r.run_key for r in result.run_requests]
        cursor = result.cursor
    assert len(keys) == 3 and len(set(keys)) == 3
    assert not _tick(defs, instance, "project_requests", cursor).run_requests


def test_project_edited_back_after_a_cursor_reset_runs_again(env):
    """Requests A, B, C run, the cursor reset, the request edited back to A: its key was A's first one (the count
    restarted with the cursor), so Dagster dropped it and the project stayed extracted for C."""
    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    settings, defs, instance = env
    keys, cursor = [], None
    for code in ("3400930000001", "3400930000002", "3400930000003", "3400930000001"):
        _project(settings, "p", ["ER_PRS_F"], criterion=f'drug: {{cip13: ["{code}"]}}')
        if len(keys) == 3:
            cursor = None  # reset from the UI
        (request,) = _tick(defs, instance, "project_requests", cursor).run_requests
        create_run_for_test(instance, job_name="provision", status=DagsterRunStatus.SUCCESS,
                            tags={**request.tags, "dagster/run_key": request.run_key})
        keys.append(request.run_key)
        cursor = _tick(defs, instance, "project_requests", cursor).cursor
    assert len(set(keys)) == 4 and keys[3].startswith("p:4:"), keys


def test_project_sensor_reads_the_older_cursor(env):
    """A cursor of fingerprints alone (before changes were counted) still says which requests already ran. It is
    the one a release of then (326d3b2) wrote for this request: a changed request fingerprint would extract every
    project again after an upgrade."""
    settings, defs, instance = env
    _project(settings, "p", ["ER_PRS_F"])
    older = '{"p": "12b4f0c5980d47ae"}'
    assert not _tick(defs, instance, "project_requests", older).run_requests
    _project(settings, "p", ["ER_PRS_F"], criterion='drug: {cip13: ["3400930000002"]}')
    assert [r.partition_key for r in _tick(defs, instance, "project_requests", older).run_requests] == ["p"]


def _extracted(instance, project_id, fingerprint):
    """A project report as the report asset records it (runless), for the request of ``fingerprint``."""
    from snds_assets.provision.assets import FINGERPRINT, PROJECT_REPORT_KEY

    instance.report_runless_asset_event(AssetMaterialization(
        asset_key=PROJECT_REPORT_KEY, partition=project_id, metadata={FINGERPRINT: fingerprint}))


def test_sensors_starting_over_a_demo_home_do_not_extract_again(env):
    """`snds demo` (or `snds extract`) extracted the project after ingesting the delivery: `snds ui`'s first
    ticks asked for the same extraction twice, from both sensors at once, and one run failed on the other's files."""
    from snds_assets.provision.request import list_requests

    settings, defs, instance = env
    _project(settings, "p", ["ER_PRS_F"])
    instance.add_dynamic_partitions("projects", ["p"])
    _report(instance, "2024-01-15", ["ER_PRS_F"])
    _extracted(instance, "p", dict(list_requests(settings))["p"])
    first = _tick(defs, instance, "project_requests")
    assert not first.run_requests
    assert not _tick(defs, instance, "refresh_extracts").run_requests
    # What comes after the extraction still runs: a changed request, a newly accepted delivery.
    _project(settings, "p", ["ER_PRS_F"], criterion='drug: {cip13: ["3400930000002"]}')
    assert [r.partition_key for r in _tick(defs, instance, "project_requests", first.cursor).run_requests] == ["p"]
    _report(instance, "2024-02-15", ["ER_PRS_F"])
    assert _refreshed(_tick(defs, instance, "refresh_extracts")) == {("p", "2024-02-15")}
    _extracted(instance, "p", "")  # an incomplete extraction (its report alone, from the UI) is no refresh
    assert _refreshed(_tick(defs, instance, "refresh_extracts")) == {("p", "2024-02-15")}
    _extracted(instance, "p", "an older request")
    assert not _tick(defs, instance, "refresh_extracts").run_requests


def _extraction_run(instance, project_id):
    """An extraction run (as `snds extract` or a sensor's run), started now: its project report comes later."""
    from dagster._core.events import DagsterEvent, DagsterEventType
    from dagster._core.test_utils import create_run_for_test

    run = create_run_for_test(instance, job_name="provision", tags={"snds/project": project_id})
    instance.report_dagster_event(DagsterEvent(DagsterEventType.RUN_START.value, job_name="provision"), run.run_id)
    return run


def _extracted_by(instance, run, project_id, fingerprint):
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData

    from snds_assets.provision.assets import FINGERPRINT, PROJECT_REPORT_KEY

    instance.report_dagster_event(DagsterEvent(
        DagsterEventType.ASSET_MATERIALIZATION.value, job_name="provision",
        event_specific_data=StepMaterializationData(AssetMaterialization(
            asset_key=PROJECT_REPORT_KEY, partition=project_id, metadata={FINGERPRINT: fingerprint}))), run.run_id)


def test_refresh_after_an_extraction_that_read_the_state_before_the_delivery(env):
    """`snds extract p` started while a reception of a delivery p reads was running: it read the state without
    that delivery (its cohort did; its extracts, read later, may hold it), then wrote its report after the
    delivery's. The report's place is no proof that it read the delivery: the project is refreshed all the same,
    unless its extraction run started after the delivery's report."""
    from snds_assets.provision.request import list_requests

    settings, defs, instance = env
    _project(settings, "p", ["ER_PRS_F"])
    instance.add_dynamic_partitions("projects", ["p"])
    fingerprint = dict(list_requests(settings))["p"]
    start = _tick(defs, instance, "refresh_extracts")
    early = _extraction_run(instance, "p")
    time.sleep(0.01)
    _report(instance, "2024-02-15", ["ER_PRS_F"])
    _extracted_by(instance, early, "p", fingerprint)
    assert _refreshed(_tick(defs, instance, "refresh_extracts", start.cursor)) == {("p", "2024-02-15")}
    time.sleep(0.01)
    late = _extraction_run(instance, "p")  # started after the report: it read the delivery
    _extracted_by(instance, late, "p", fingerprint)
    assert not _tick(defs, instance, "refresh_extracts", start.cursor).run_requests


def test_refresh_after_an_extraction_between_two_deliveries_of_one_tick(env):
    """Two deliveries p reads, accepted between two ticks, and an extraction of p started between their reports:
    it read the first, not the second. p is refreshed, its latest delivery deciding, not the first."""
    from snds_assets.provision.request import list_requests

    settings, defs, instance = env
    _project(settings, "p", ["ER_PRS_F"])
    instance.add_dynamic_partitions("projects", ["p"])
    fingerprint = dict(list_requests(settings))["p"]
    start = _tick(defs, instance, "refresh_extracts")
    _report(instance, "2024-01-15", ["ER_PRS_F"])
    time.sleep(0.01)
    between = _extraction_run(instance, "p")
    time.sleep(0.01)
    _report(instance, "2024-02-15", ["ER_PRS_F"])
    _extracted_by(instance, between, "p", fingerprint)
    assert _refreshed(_tick(defs, instance, "refresh_extracts", start.cursor)) == {("p", "2024-01-15, 2024-02-15")}
