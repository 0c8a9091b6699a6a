"""A run whose process was killed is ended, not waited for; a run that only inherited a dead process's tag is not."""
from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from dagster import DagsterEvent, DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.test_utils import create_run_for_test

from snds_assets.resources import SndsResource
from snds_assets.runs import (
    PROCESS_TAG, RECEPTION_TAG, _started, claim, end_dead_runs, end_if_gone, machine, process_gone, process_tags,
    unfinished_runs,
)

from .services import queued_run

HOST = machine()


def run_of(instance, host: str, pid: int, started, status=DagsterRunStatus.STARTED, partition="2026-11-15",
           run_id: str | None = None, named_run: str | None = None):
    """A run naming process (host, pid, started) as its own (or, with ``named_run``, as another run's)."""
    run_id = run_id or str(uuid.uuid4())
    return create_run_for_test(instance, job_name="reception", status=status, run_id=run_id,
                               tags={"dagster/partition": partition,
                                     PROCESS_TAG: f"{host}:{pid}:{started}:{named_run or run_id}"})


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_this_process_is_named_with_its_start_time_and_the_run():
    [(key, value)] = process_tags("r1").items()
    host, pid, started, run_id = value.split(":")
    assert key == PROCESS_TAG and host == HOST and pid == str(os.getpid()) and run_id == "r1"
    assert HOST.startswith(f"{socket.gethostname()}/")
    assert started == _started(os.getpid()) and started.isdigit()


def test_a_run_is_gone_with_its_process_not_before_and_not_for_a_reused_pid_or_another_host():
    instance = DagsterInstance.ephemeral()
    child = subprocess.Popen(["sleep", "60"])
    started = _started(child.pid)
    try:
        alive = run_of(instance, HOST, child.pid, started)
        reused = run_of(instance, HOST, child.pid, int(started) - 1)
        elsewhere = run_of(instance, "another-host", child.pid, int(started) - 1)
        host, installed, namespace, boot = HOST.split("/")
        other_container = run_of(instance, f"{host}/{installed}/{namespace}1/{boot}", child.pid, int(started) - 1)
        same_name = run_of(instance, f"{host}/another-machine-id/{namespace}/another-boot", child.pid, started)
        before_reboot = run_of(instance, HOST.rpartition("/")[0] + "/an-earlier-boot", child.pid, started)
        untagged = create_run_for_test(instance, job_name="reception", status=DagsterRunStatus.STARTED)
        assert not process_gone(alive) and process_gone(reused)
        assert not process_gone(elsewhere) and not process_gone(other_container) and not process_gone(untagged)
        assert not process_gone(same_name)  # another machine under the same host name, both in their first namespace
        assert process_gone(before_reboot)  # the same pid and start ticks, but in an earlier boot
    finally:
        child.kill()
        child.wait()
    assert process_gone(alive)


def test_a_re_executed_or_queued_run_is_not_ended_for_a_process_it_did_not_run_in():
    """A re-execution inherits its parent's tags, its dead process included; a queued run has no process yet."""
    instance = DagsterInstance.ephemeral()
    pid = dead_pid()
    parent = run_of(instance, HOST, pid, 0, status=DagsterRunStatus.FAILURE)
    retry = run_of(instance, HOST, pid, 0, named_run=parent.run_id)
    not_started = run_of(instance, HOST, pid, 0, status=DagsterRunStatus.NOT_STARTED, named_run=parent.run_id)
    queued_id = str(uuid.uuid4())
    queued = queued_run(instance, "reception", DagsterRunStatus.QUEUED,
                        {"dagster/partition": "2026-11-15", PROCESS_TAG: f"{HOST}:{pid}:0:{queued_id}"}, queued_id)
    assert not process_gone(retry) and not process_gone(not_started) and not process_gone(queued)
    assert end_if_gone(instance, [retry, not_started, queued]) == [retry, not_started, queued]

    claim(instance, retry)  # its own process names itself when it starts executing it
    retry = instance.get_run_by_id(retry.run_id)
    assert retry.tags[PROCESS_TAG] == process_tags(retry.run_id)[PROCESS_TAG] and not process_gone(retry)


def test_a_killed_runs_run_is_ended_as_failed_and_no_longer_holds_its_partition():
    instance = DagsterInstance.ephemeral()
    pid = dead_pid()
    killed = run_of(instance, HOST, pid, 0)
    running = run_of(instance, HOST, os.getpid(), _started(os.getpid()))
    assert [r.run_id for r in unfinished_runs(instance, {"dagster/partition": "2026-11-15"})] == [running.run_id]
    assert instance.get_run_by_id(killed.run_id).status == DagsterRunStatus.FAILURE
    [failure] = [e for e in instance.all_logs(killed.run_id) if e.dagster_event and e.dagster_event.is_run_failure]
    assert f"the process that ran it (pid {pid}) has ended without ending the run" in failure.message
    assert end_if_gone(instance, [running]) == [running]


def test_a_run_whose_command_was_killed_before_it_started_is_ended():
    """`snds ingest` killed while Dagster stored its new run's planned materialisations (a second or two before the
    run starts) left the run NOT_STARTED, naming the dead command: every later `snds ingest` of the delivery was
    refused ("already being received") and the sensor waited for it, for ever."""
    instance = DagsterInstance.ephemeral()
    pid = dead_pid()
    killed = run_of(instance, HOST, pid, 0, status=DagsterRunStatus.NOT_STARTED)
    starting = run_of(instance, HOST, pid, 0, status=DagsterRunStatus.STARTING, partition="b")
    alive = run_of(instance, HOST, os.getpid(), _started(os.getpid()), status=DagsterRunStatus.NOT_STARTED)
    assert process_gone(killed) and process_gone(starting) and not process_gone(alive)
    assert [r.run_id for r in unfinished_runs(instance, {"dagster/partition": "2026-11-15"})] == [alive.run_id]
    assert instance.get_run_by_id(killed.run_id).status == DagsterRunStatus.FAILURE
    assert [r.run_id for r in end_dead_runs(instance)] == [starting.run_id]
    assert instance.get_run_by_id(starting.run_id).status == DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(alive.run_id).status == DagsterRunStatus.NOT_STARTED


def test_every_started_run_whose_process_is_gone_is_ended_and_only_those():
    instance = DagsterInstance.ephemeral()
    pid = dead_pid()
    dead = [run_of(instance, HOST, pid, 0, partition="a"),
            run_of(instance, HOST, pid, 0, status=DagsterRunStatus.CANCELING)]
    kept = [run_of(instance, HOST, os.getpid(), _started(os.getpid())), run_of(instance, "another-host", pid, 0),
            create_run_for_test(instance, job_name="reception", status=DagsterRunStatus.STARTED),
            run_of(instance, HOST, pid, 0, status=DagsterRunStatus.SUCCESS)]
    warned = []

    class Log:
        def warning(self, message):
            warned.append(message)

    assert sorted(r.run_id for r in end_dead_runs(instance, Log())) == sorted(r.run_id for r in dead)
    assert {instance.get_run_by_id(r.run_id).status for r in dead} == {DagsterRunStatus.FAILURE}
    assert [instance.get_run_by_id(r.run_id).status for r in kept] == [
        DagsterRunStatus.STARTED, DagsterRunStatus.STARTED, DagsterRunStatus.STARTED, DagsterRunStatus.SUCCESS]
    assert len(warned) == 2 and "the process that ran it is gone" in warned[0]


def test_a_process_hidden_by_hidepid_is_not_taken_for_a_dead_one(monkeypatch):
    """/proc mounted with ``hidepid`` (a hardening setting) hides other users' processes: their /proc/<pid> is
    absent as a dead one's. A `snds ingest` of an operator, seen from the code server's user, is alive all the same."""
    import snds_assets.runs as runs

    instance = DagsterInstance.ephemeral()
    child = subprocess.Popen(["sleep", "60"])
    started = _started(child.pid)
    monkeypatch.setattr(runs, "_started", lambda pid: None)  # what another user reads under hidepid=2
    try:
        alive = run_of(instance, HOST, child.pid, started)
        assert not process_gone(alive)
        assert end_dead_runs(instance) == [] and instance.get_run_by_id(alive.run_id).status == DagsterRunStatus.STARTED
    finally:
        child.kill()
        child.wait()
    assert process_gone(alive)  # once it has really ended


def test_a_killed_process_not_yet_reaped_is_gone():
    """A killed process whose parent has not waited for it (a zombie: a run worker orphaned to a container's PID 1
    that reaps nobody, a command started by a script that never waits) keeps its /proc entry and start time."""
    instance = DagsterInstance.ephemeral()
    child = subprocess.Popen(["sleep", "60"])
    killed = run_of(instance, HOST, child.pid, _started(child.pid))
    assert not process_gone(killed)
    child.kill()
    try:
        for _ in range(100):  # until the kernel has made it a zombie
            if Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
                break
            time.sleep(0.01)
        assert process_gone(killed)
    finally:
        child.wait()


def test_a_run_that_ended_meanwhile_is_not_failed_from_an_older_listing():
    """Runs are listed, then their processes looked at: a run that succeeded and whose process exited in between
    keeps its success (Dagster's run storage takes the last status event reported, whatever the run's state)."""
    instance = DagsterInstance.ephemeral()
    pid = dead_pid()
    listed = run_of(instance, HOST, pid, 0)  # as a sensor tick or `snds ingest` listed it, still started
    instance.handle_run_event(listed.run_id, DagsterEvent(DagsterEventType.RUN_SUCCESS.value, job_name="reception"))
    assert instance.get_run_by_id(listed.run_id).status == DagsterRunStatus.SUCCESS
    assert end_if_gone(instance, [listed]) == []
    assert instance.get_run_by_id(listed.run_id).status == DagsterRunStatus.SUCCESS


def _partition_job_run(instance, tags: dict, resource: SndsResource | None = None):
    """A run of a job whose asset needs the snds resource (as every asset does), on one partition."""
    from dagster import Definitions, asset, define_asset_job

    @asset
    def step(snds: SndsResource):
        return 1

    defs = Definitions(assets=[step], jobs=[define_asset_job("reception")],
                       resources={"snds": resource or SndsResource()})
    return defs.resolve_job_def("reception").execute_in_process(instance=instance, raise_on_error=False,
                                                               tags=tags)


def test_two_runs_of_one_delivery_started_at_once_the_second_created_is_refused(tmp_path):
    """`snds ingest D` twice at the same moment: both looked for a run of D before either created its own, both
    ran, and one report said rejected (each run discarded the other's verdicts). The run created second now fails
    before any step, with one line naming the first; a finished or a queued one does not refuse it."""
    from snds_assets.commands import run_error

    tags = {"dagster/partition": "2026-11-15", "snds/delivery": "2026-11-15"}
    with DagsterInstance.ephemeral(tempdir=str(tmp_path)) as instance:
        first = create_run_for_test(instance, job_name="reception", status=DagsterRunStatus.STARTED, tags=tags)
        result = _partition_job_run(instance, tags)
        assert not result.success
        line = str(run_error(result))
        assert f"delivery 2026-11-15 is already being received by run {first.run_id}" in line, line
        instance.report_run_canceled(first)
        queued_run(instance, "reception", DagsterRunStatus.QUEUED, tags)  # waits in the queue for this one
        assert _partition_job_run(instance, tags).success
        project = {"dagster/partition": "p", "snds/project": "p"}
        other = create_run_for_test(instance, job_name="provision", status=DagsterRunStatus.NOT_STARTED, tags=project)
        assert f"project p is already being extracted by run {other.run_id}" in str(
            run_error(_partition_job_run(instance, project)))


def test_a_run_on_an_az_lake_is_refused_before_anything_is_written(tmp_path):
    """Spark has no az:// file system: a reception on SNDS_LAKE=az://… archived the delivery, then failed in Spark
    with "No FileSystem for scheme az". It fails at its start, saying how Spark names that lake."""
    from snds_assets.commands import run_error

    with DagsterInstance.ephemeral(tempdir=str(tmp_path)) as instance:
        result = _partition_job_run(instance, {"dagster/partition": "2026-11-15"},
                                    SndsResource(home=str(tmp_path / "home"), lake="az://lake/snds"))
        assert not result.success
        assert "SNDS_LAKE az://lake/snds: Spark writes a lake on Azure at abfss://<container>@<account>.dfs" in str(
            run_error(result))
        assert not (tmp_path / "home").exists() or not any((tmp_path / "home").rglob("*.csv*"))


def test_a_reception_started_while_another_deliverys_runs_waits_for_it(tmp_path, monkeypatch):
    """Receptions run one at a time, whatever their delivery (each checks its keys against the deliveries received
    before it): a run on a delivery created while another delivery's reception has started (two commands at the
    same moment, or assets materialised from the asset graph, which the queue does not hold) waits for it to end,
    saying so once, before any step. A queued one is not waited for; an extraction does not wait."""
    from dagster import Definitions, asset, define_asset_job

    seen = []

    @asset
    def step(snds: SndsResource):
        seen.append(instance.get_run_by_id(first.run_id).status)  # the other reception's, as this step runs

    job = Definitions(assets=[step], jobs=[define_asset_job("reception")],
                      resources={"snds": SndsResource()}).resolve_job_def("reception")

    def waiting(run_id: str) -> list[str]:
        return [e.user_message for e in instance.all_logs(run_id) if "waiting for" in (e.user_message or "")]

    def end_first() -> None:  # while the second reception waits for it
        instance.report_run_canceled(instance.get_run_by_id(first.run_id))

    _wait_briefly(monkeypatch, meanwhile=end_first)
    with DagsterInstance.ephemeral(tempdir=str(tmp_path)) as instance:
        first = create_run_for_test(instance, job_name="reception", status=DagsterRunStatus.STARTED,
                                    tags={RECEPTION_TAG: "true", "dagster/partition": "2026-10-15"})
        assert job.execute_in_process(instance=instance, tags={"dagster/partition": "p", "snds/project": "p"}).success
        assert seen == [DagsterRunStatus.STARTED]  # an extraction went ahead

        run_id = str(uuid.uuid4())
        assert job.execute_in_process(instance=instance, run_id=run_id,
                                      tags={RECEPTION_TAG: "true", "dagster/partition": "2026-11-15"}).success
        assert seen[-1] == DagsterRunStatus.CANCELED  # its step ran once the other reception had ended
        (line,) = waiting(run_id)
        assert f"waiting for the reception of delivery 2026-10-15 by run {first.run_id}" in line, line
        assert "one at a time" in line, line

        queued_run(instance, "reception", DagsterRunStatus.QUEUED,
                   {RECEPTION_TAG: "true", "dagster/partition": "2026-09-15"})
        alone = str(uuid.uuid4())
        assert job.execute_in_process(instance=instance, run_id=alone, tags={"dagster/partition": "2026-12-15"}).success
        assert not waiting(alone)


def _start(instance, run):
    """The run's RUN_START, as its process reports it (which sets the run's start time)."""
    instance.handle_run_event(run.run_id, DagsterEvent(DagsterEventType.RUN_START.value, job_name=run.job_name))
    return instance.get_run_by_id(run.run_id)


def _wait_briefly(monkeypatch, meanwhile=None) -> None:
    """A reception waiting its turn looks again every 0.05 s, and fails the test after 10 s instead of hanging.
    ``meanwhile`` runs at each of its waits, in its own thread (the ephemeral instance's in-memory SQLite refuses a
    write from another thread while this one reads: 'database table is locked')."""
    from types import SimpleNamespace

    from snds_assets import runs

    calls = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) > 200:
            raise AssertionError("still waiting for its turn after 10 s")
        if meanwhile is not None and seconds == runs.WAIT_SECONDS:
            meanwhile()
        time.sleep(seconds)

    monkeypatch.setattr(runs, "WAIT_SECONDS", 0.05)
    monkeypatch.setattr(runs, "time", SimpleNamespace(sleep=sleep))  # this module's sleep only


def test_receptions_take_their_turn_in_the_order_they_started(tmp_path, monkeypatch):
    """A reception the queue held (created early, started late) waits for a delivery's assets materialised from
    the asset graph meanwhile (no tag of the job: the queue let it through); by creation order neither waited, and
    both ran at once (review). A run not started yet makes no one wait."""
    from dagster import AssetKey

    from snds_assets import runs

    told = []

    class Log:
        def info(self, message: str) -> None:
            told.append(message)

    def end_graph() -> None:  # while the queued reception waits for it
        instance.report_run_canceled(instance.get_run_by_id(graph.run_id))

    _wait_briefly(monkeypatch, meanwhile=end_graph)

    with DagsterInstance.ephemeral(tempdir=str(tmp_path)) as instance:
        queued = create_run_for_test(instance, job_name="reception", status=DagsterRunStatus.NOT_STARTED,
                                     tags={RECEPTION_TAG: "true", "dagster/partition": "2026-12-01"})
        graph = create_run_for_test(instance, job_name="__ASSET_JOB", status=DagsterRunStatus.NOT_STARTED,
                                    tags={"dagster/partition": "2026-12-15"},
                                    asset_selection={AssetKey(["curated", "ER_PRS_F"])})
        runs.take_turn(instance, _start(instance, graph), Log())  # nothing started before it: it goes on
        assert not told
        runs.take_turn(instance, _start(instance, queued), Log())
        assert instance.get_run_by_id(graph.run_id).status == DagsterRunStatus.CANCELED
        (line,) = told
        assert f"waiting for the reception of delivery 2026-12-15 by run {graph.run_id}" in line, line


def test_a_reception_from_the_ui_waits_for_a_refresh_reading_its_delivery(tmp_path, monkeypatch):
    """The queue holds the sensor's receptions behind a refresh extraction reading their delivery (their tag
    snds/delivery), not a reception started from the UI (the reception job, a family alone: no such tag), which
    started beside the refresh and failed, saying the delivery was "already being received". It waits for the
    extraction to end, saying so once; a reception of the delivery refuses it as before."""
    from dagster import AssetKey

    from snds_assets import runs

    told = []

    class Log:
        def info(self, message: str) -> None:
            told.append(message)

    def end_refresh() -> None:  # while the reception waits for it
        instance.report_run_canceled(instance.get_run_by_id(refresh.run_id))

    _wait_briefly(monkeypatch, meanwhile=end_refresh)
    with DagsterInstance.ephemeral(tempdir=str(tmp_path)) as instance:
        refresh = create_run_for_test(instance, job_name="provision", status=DagsterRunStatus.STARTED, tags={
            "dagster/partition": "study-a", "snds/project": "study-a", "snds/delivery": "2026-12-01",
            "snds/source": "refresh"})
        ui = create_run_for_test(instance, job_name="__ASSET_JOB", status=DagsterRunStatus.NOT_STARTED,
                                 tags={"dagster/partition": "2026-12-01"},
                                 asset_selection={AssetKey(["curated", "ER_PRS_F"])})
        runs.take_turn(instance, _start(instance, ui), Log())
        assert instance.get_run_by_id(refresh.run_id).status == DagsterRunStatus.CANCELED
        (line,) = told
        assert line.startswith(f"waiting: delivery 2026-12-01 is being read by the extraction of project study-a, "
                               f"run {refresh.run_id}"), line
        again = create_run_for_test(instance, job_name="reception", status=DagsterRunStatus.NOT_STARTED,
                                    tags={"dagster/partition": "2026-12-01"})
        with pytest.raises(runs.PartitionBusy,
                           match=f"delivery 2026-12-01 is already being received by run {ui.run_id}"):
            runs.take_turn(instance, _start(instance, again), Log())


def test_a_partition_added_by_another_command_meanwhile_is_taken_as_it_is(tmp_path):
    """Two `snds ingest` of one new delivery at once: both saw its partition missing, the second's insert failed with
    SQLite's "UNIQUE constraint failed", told as the command's error."""
    from sqlalchemy.exc import IntegrityError

    from snds_assets.commands import add_partition

    with DagsterInstance.ephemeral(tempdir=str(tmp_path)) as instance:
        real = instance.add_dynamic_partitions

        def raced(name: str, keys: list[str]) -> None:  # the other command's insert lands just before this one's
            real(name, keys)
            raise IntegrityError("INSERT INTO dynamic_partitions", {}, Exception("UNIQUE constraint failed"))

        instance.add_dynamic_partitions = raced
        add_partition(instance, "deliveries", "2026-12-01")
        assert instance.get_dynamic_partitions("deliveries") == ["2026-12-01"]

        def locked(name: str, keys: list[str]) -> None:  # a failure that is not that race is told
            raise RuntimeError("database is locked")

        instance.add_dynamic_partitions = locked
        with pytest.raises(RuntimeError, match="database is locked"):
            add_partition(instance, "deliveries", "2026-12-02")


def test_which_runs_are_receptions():
    """Receptions wait for each other; extractions, including a project's checks run alone from the UI (no asset
    selected, only checks: it was taken for a reception, review), and other code locations' runs do not."""
    from dagster import AssetCheckKey, AssetKey

    from snds_assets.runs import is_reception

    def run(job="__ASSET_JOB", assets=None, checks=None, **tags):
        return DagsterRun(job_name=job, run_id=str(uuid.uuid4()), tags={"dagster/partition": "x", **tags},
                          asset_selection=assets, asset_check_selection=checks)

    cohort_check = AssetCheckKey(AssetKey(["projects", "cohort"]), "unresolved_identifiers")
    curated_check = AssetCheckKey(AssetKey(["curated", "ER_PRS_F"]), "primary_key_state")
    assert is_reception(run("reception"))
    assert is_reception(run(assets={AssetKey(["curated", "ER_PRS_F"])}))
    assert is_reception(run(assets={AssetKey(["reports", "reception"])}))
    assert is_reception(run(checks={curated_check}))
    assert not is_reception(run(checks={cohort_check}))
    assert not is_reception(run(assets={AssetKey(["projects", "ER_PRS_F"])}))
    assert not is_reception(run("provision", **{"snds/project": "p", "snds/delivery": "2026-11-15"}))
    assert not is_reception(run(assets={AssetKey(["weather", "daily"])}))
    assert not is_reception(DagsterRun(job_name="reception", run_id="r"))  # no partition


def test_a_reception_starting_at_the_same_moment_is_looked_at_again(tmp_path, monkeypatch):
    """A run's start time is taken just before it is stored: a reception seen not started yet could be stored as
    started before this one, and both went on (review). Seeing one starting, a reception looks again before it
    goes on, then waits for it."""
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from dagster import AssetKey

    from snds_assets import runs

    sleeps, told = [], []

    class Log:
        def info(self, message: str) -> None:
            told.append(message)

    with DagsterInstance.ephemeral(tempdir=str(tmp_path)) as instance:
        other = create_run_for_test(instance, job_name="reception", status=DagsterRunStatus.NOT_STARTED,
                                    tags={RECEPTION_TAG: "true", "dagster/partition": "2026-12-01"})
        this = _start(instance, create_run_for_test(
            instance, job_name="__ASSET_JOB", status=DagsterRunStatus.NOT_STARTED,
            tags={"dagster/partition": "2026-12-15"}, asset_selection={AssetKey(["curated", "ER_PRS_F"])}))
        before = datetime.fromtimestamp(instance.get_run_record_by_id(this.run_id).start_time - 1, tz=timezone.utc)

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            if len(sleeps) == 1:  # the other's start, timed before this one's, stored only now
                instance.handle_run_event(other.run_id, DagsterEvent(DagsterEventType.RUN_START.value,
                                                                     job_name="reception"), update_timestamp=before)
            elif len(sleeps) < 10:
                instance.report_run_canceled(instance.get_run_by_id(other.run_id))
            else:
                raise AssertionError("still waiting for its turn")

        monkeypatch.setattr(runs, "time", SimpleNamespace(sleep=sleep))
        runs.take_turn(instance, this, Log())
    assert sleeps == [runs.GRACE_SECONDS, runs.WAIT_SECONDS]
    (line,) = told
    assert f"waiting for the reception of delivery 2026-12-01 by run {other.run_id}" in line, line


def test_a_reception_never_waits_holding_a_pool_slot_per_step(tmp_path, monkeypatch):
    """On an instance whose pools are claimed step by step with a limit (the earlier deploy/dagster.yaml), a
    reception waiting for an earlier one would hold the pool's slot that one needs for its next step: both would
    wait for ever. It fails at once, saying which setting to change; with pools per run it waits its turn."""
    from types import SimpleNamespace

    import pytest

    from snds_assets import runs

    waits = []

    def end_earlier() -> None:  # while the later reception waits for it
        waits.append(earlier.run_id)
        instance.report_run_canceled(instance.get_run_by_id(earlier.run_id))

    _wait_briefly(monkeypatch, meanwhile=end_earlier)
    for granularity, fails in (("op", True), ("run", False)):
        home = tmp_path / granularity
        home.mkdir()
        (home / "dagster.yaml").write_text(f"concurrency:\n  pools:\n    granularity: {granularity}\n"
                                           "    default_limit: 1\n")
        with DagsterInstance.from_config(str(home)) as instance:
            earlier = create_run_for_test(instance, job_name="reception", status=DagsterRunStatus.NOT_STARTED,
                                          tags={RECEPTION_TAG: "true", "dagster/partition": "2026-11-01"})
            _start(instance, earlier)
            later = create_run_for_test(instance, job_name="reception", status=DagsterRunStatus.NOT_STARTED,
                                        tags={RECEPTION_TAG: "true", "dagster/partition": "2026-12-01"})
            assert runs.pool_claimed_per_step(instance) is fails
            warned = []
            runs.ensure_reception_pool(instance, SimpleNamespace(warning=warned.append))  # as the sensor's tick
            assert warned == ([runs.POOL_PER_STEP] if fails else [])
            assert (runs.RECEPTION_POOL in instance.event_log_storage.get_concurrency_keys()) is not fails
            if fails:
                with pytest.raises(runs.PoolPerStep, match="granularity: run") as raised:
                    runs.take_turn(instance, _start(instance, later), None)
                assert f"by run {earlier.run_id}" in str(raised.value) and not waits
            else:
                runs.take_turn(instance, _start(instance, later), None)
                assert waits == [earlier.run_id]  # it waited once, then went on
