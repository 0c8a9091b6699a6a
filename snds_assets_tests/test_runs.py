"""A run whose `snds` process was killed is ended, not waited for."""
from __future__ import annotations

import os
import socket
import subprocess

from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.test_utils import create_run_for_test

from snds_assets.runs import (
    PROCESS_TAG, _started, end_dead_runs, end_if_gone, process_gone, process_tags, unfinished_runs,
)


def _run_of(instance, process: str, status=DagsterRunStatus.STARTED, dagster_partition="2026-11-15"):
    return create_run_for_test(instance, job_name="reception", status=status,
                               tags={"dagster/partition": dagster_partition, PROCESS_TAG: process})


def test_this_process_is_named_with_its_start_time():
    [(key, value)] = process_tags().items()
    host, pid, started = value.rsplit(":", 2)
    assert key == PROCESS_TAG and host == socket.gethostname() and pid == str(os.getpid())
    assert started == _started(os.getpid()) and started.isdigit()


def test_a_run_is_gone_with_its_process_not_before_and_not_for_a_reused_pid_or_another_host():
    instance = DagsterInstance.ephemeral()
    child = subprocess.Popen(["sleep", "60"])
    host, pid, started = socket.gethostname(), child.pid, _started(child.pid)
    try:
        alive = _run_of(instance, f"{host}:{pid}:{started}")
        reused = _run_of(instance, f"{host}:{pid}:{int(started) - 1}")
        elsewhere = _run_of(instance, f"another-host:{pid}:{int(started) - 1}")
        untagged = create_run_for_test(instance, job_name="reception", status=DagsterRunStatus.STARTED)
        assert not process_gone(alive) and process_gone(reused)
        assert not process_gone(elsewhere) and not process_gone(untagged)
    finally:
        child.kill()
        child.wait()
    assert process_gone(alive)


def test_a_killed_commands_run_is_ended_as_failed_and_no_longer_holds_its_partition():
    instance = DagsterInstance.ephemeral()
    child = subprocess.Popen(["true"])
    dead = f"{socket.gethostname()}:{child.pid}:{_started(child.pid) or 0}"
    child.wait()
    killed = _run_of(instance, dead)
    running = _run_of(instance, f"{socket.gethostname()}:{os.getpid()}:{_started(os.getpid())}")
    assert [r.run_id for r in unfinished_runs(instance, {"dagster/partition": "2026-11-15"})] == [running.run_id]
    ended = instance.get_run_by_id(killed.run_id)
    assert ended.status == DagsterRunStatus.FAILURE
    [failure] = [e for e in instance.all_logs(killed.run_id) if e.dagster_event and e.dagster_event.is_run_failure]
    assert f"the process that ran it (pid {child.pid}) has ended without ending the run" in failure.message
    assert end_if_gone(instance, [running]) == [running]


def test_every_started_run_whose_process_is_gone_is_ended_and_only_those():
    instance = DagsterInstance.ephemeral()
    child = subprocess.Popen(["true"])
    child.wait()
    me = f"{socket.gethostname()}:{os.getpid()}:{_started(os.getpid())}"
    dead = [_run_of(instance, f"{socket.gethostname()}:{child.pid}:0", dagster_partition="a"),
            _run_of(instance, f"{socket.gethostname()}:{child.pid}:0", status=DagsterRunStatus.CANCELING)]
    kept = [_run_of(instance, me), _run_of(instance, f"another-host:{child.pid}:0"),
            create_run_for_test(instance, job_name="reception", status=DagsterRunStatus.STARTED),
            _run_of(instance, f"{socket.gethostname()}:{child.pid}:0", status=DagsterRunStatus.SUCCESS)]
    warned = []

    class Log:
        def warning(self, message):
            warned.append(message)

    assert sorted(r.run_id for r in end_dead_runs(instance, Log())) == sorted(r.run_id for r in dead)
    assert {instance.get_run_by_id(r.run_id).status for r in dead} == {DagsterRunStatus.FAILURE}
    assert [instance.get_run_by_id(r.run_id).status for r in kept] == [
        DagsterRunStatus.STARTED, DagsterRunStatus.STARTED, DagsterRunStatus.STARTED, DagsterRunStatus.SUCCESS]
    assert len(warned) == 2 and "the process that ran it is gone" in warned[0]
