"""Runs of the shared Dagster instance that hold a delivery or a project, and those that can never end.

A run executes in one process (the in-process executor): the `snds ingest` or `snds extract` command itself, or
the run worker the UI and the sensors' runs are launched in. Killed (SIGKILL, out of memory, a closed terminal's
session), that process leaves its run STARTED for ever (or NOT_STARTED: a command killed while Dagster stores its
new run's planned materialisations, a second or two): nothing watches a command's process, and Dagster's run
monitoring cannot see a run worker die. The run would hold its partition from the queue's limits, the sensors
and the next command. So every run names the process executing it (machine, pid and the process's start time, so
that a reused pid is not taken for it, and the run's id, as a re-executed run inherits its parent's tags;
``claim``), and a run whose process is gone from this machine is ended as failed, saying why: by each sensor tick,
and wherever a run of the same partition is looked for. A queued run names no process of its own.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Callable, Mapping

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunRecord, RunsFilter
from dagster._core.instance.config import PoolGranularity
from dagster._core.storage.tags import RUN_KEY_TAG

# A run in one of these states holds, or is about to hold, its partition's folders in the lake.
_STARTING = (DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING)
_STARTED = (DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING)
UNFINISHED = (DagsterRunStatus.QUEUED, *_STARTING, *_STARTED)
PROCESS_TAG = "snds/process"
# Carried by every run of the reception job (the sensor's, `snds ingest`'s, the UI's, a backfill's): receptions run
# one at a time, whatever their delivery, so that each one's key checks read the deliveries received before it
# (two deliveries received at once were each checked without the other). The queue's tag limit holds the queued
# ones (``RECEPTION_POOL`` those of the asset graph); ``take_turn`` makes the others wait (a command's).
RECEPTION_TAG = "snds/reception"
# The concurrency pool of the steps that receive a delivery, whatever job runs them. With the instance's pools at
# run granularity and limit 1 (deploy/dagster.yaml, the local instance), the queue holds a run of those steps while
# another one is in progress: a delivery's assets materialised from the asset graph wait in the queue too, not in a
# run slot.
RECEPTION_POOL = "snds_reception"
POOL_PER_STEP = ("this instance claims pool snds_reception step by step (concurrency.pools.granularity is not "
                 "`run`): a reception waiting for another would hold the slot the other needs for its next step; set "
                 "`granularity: run` as deploy/dagster.yaml does")


def sensor_run_key(instance: DagsterInstance, tags: dict[str, str], name: str, fingerprint: str, counted: int) -> str:
    """The run key ``name:count:fingerprint`` of a sensor's request for ``name`` (a delivery, a project) in the version
    ``fingerprint``: new at each change, even back to an earlier content after the sensor's cursor was reset (a
    count kept in the cursor alone restarted at 1, so Dagster, which never runs a key twice, dropped the request), and
    the same key as the newest run of ``tags`` when that run was asked for this very content (a tick replayed).
    ``counted``: the count the cursor keeps."""
    keys = [run.tags.get(RUN_KEY_TAG, "").split(":") for run in instance.get_runs(RunsFilter(tags=tags))]
    keys = [k for k in keys if len(k) == 3 and k[0] == name and k[1].isdigit()]
    if keys and keys[0][2] == fingerprint:  # newest first
        return ":".join(keys[0])
    count = max([counted, *(int(k[1]) for k in keys)]) + 1
    return f"{name}:{count}:{fingerprint}"


def interruption_left(lake: str | None, tags: Mapping[str, str]) -> tuple[str, bool]:
    """What an interrupted run of a delivery or a project (its ``tags``) left, for its last line, and whether its
    report is withdrawn: what it had published stays, the report withdrawn meanwhile (``withdraw_report``), unless
    the run stopped before it changed anything (the same manifest received again), when the report stands."""
    from .lake import Lake
    from .reception.storage import lake_exists

    project = tags.get("snds/project")
    report = None
    if lake:
        report = Lake(lake).project_report(project) if project else \
            Lake(lake).delivery_report(tags.get("snds/delivery", tags.get("dagster/partition", "")))
    withdrawn = report is None or not lake_exists(report)
    what = "the project's report" if project else "the delivery's report"
    state = f"{what} withdrawn" if withdrawn else f"{what} still in place, as the earlier run left it"
    if project:
        return f"what it had extracted, if anything, is published and {state}", withdrawn
    return f"the files it had archived and the families it had curated, if any, are in place and {state}", withdrawn


def pool_claimed_per_step(instance: DagsterInstance) -> bool:
    """Whether steps of ``RECEPTION_POOL`` claim a limited slot while they run (pools at op granularity, the
    default, with a limit): a reception's step would hold it while ``take_turn`` waits for an earlier one."""
    pools, storage = instance.get_concurrency_config().pool_config, instance.event_log_storage
    if pools.pool_granularity == PoolGranularity.RUN or not storage.supports_global_concurrency_limits:
        return False
    return pools.default_pool_limit is not None or RECEPTION_POOL in storage.get_concurrency_keys()


def ensure_reception_pool(instance: DagsterInstance, log: logging.Logger | None = None) -> None:
    """Give ``RECEPTION_POOL`` the instance's default limit before the queue meets it: the queue sets a pool's
    default limit when it first decides on a queued run of that pool, but does not count it as limited in that
    same decision (the first reception queued while another ran would be launched, only to wait in its slot)."""
    if pool_claimed_per_step(instance):
        if log is not None:
            log.warning(POOL_PER_STEP)
        return
    storage = instance.event_log_storage
    if instance.global_op_concurrency_default_limit is None or not storage.supports_global_concurrency_limits:
        return
    if RECEPTION_POOL not in storage.get_concurrency_keys():
        storage.initialize_concurrency_limit_to_default(RECEPTION_POOL)


def describe_run(run: DagsterRun) -> str:
    """'run <id> (started by the sensor, STARTED)', for one-line messages."""
    command = "snds extract" if "snds/project" in run.tags else "snds ingest"
    source = {"sensor": "the sensor", "refresh": "the refresh sensor", "cli": command}.get(
        run.tags.get("snds/source", ""), "the UI")
    return f"run {run.run_id} (started by {source}, {run.status.value})"


def delivery_held_by(run: DagsterRun) -> str:
    """What holds a delivery, for one-line messages: its reception, or a refresh extraction reading it (tagged with
    the delivery so that a reception of it and that extraction run one after the other)."""
    project = run.tags.get("snds/project")
    if project:
        return f"is being read by the extraction of project {project}, {describe_run(run)}"
    return f"is already being received by {describe_run(run)}"


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat from the third (state) on, or None when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    return stat.rpartition(")")[2].split()  # the command name before it may hold spaces


def _started(pid: int) -> str | None:
    """The process's start time in clock ticks after boot (/proc/<pid>/stat), or None when there is none."""
    fields = _stat(pid)
    return fields[19] if fields else None  # field 22


def _ended(pid: int) -> bool:
    """A process that has ended but was not reaped yet (a zombie: killed, its parent not waiting for it; a run
    worker orphaned to a container's first process, which reaps nobody) keeps its pid and its start time."""
    fields = _stat(pid)
    return bool(fields) and fields[0] in ("Z", "X")


def _exists(pid: int) -> bool:
    """Whether process ``pid`` exists, even one whose /proc entry cannot be read: /proc mounted with ``hidepid``
    (a common hardening) hides other users' processes, their /proc/<pid> absent as a dead process's is. Signal
    0 tells them apart: no such process, or one this user may not signal."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: it exists, another user's
    return True


def machine() -> str | None:
    """Where a pid means something, as ``host/machine-id/namespace/boot``: host name and machine id (two machines
    may share a host name), pid namespace (two containers on one machine, even under one host name, do not see each
    other's processes) and boot (a reboot ends every process and restarts pids). None when they cannot be read (not
    Linux): no process is then named nor looked at."""
    try:
        namespace = "".join(ch for ch in os.readlink("/proc/self/ns/pid") if ch.isdigit())
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    try:
        installed = Path("/etc/machine-id").read_text().strip() or "-"
    except OSError:
        installed = "-"  # many container images have none: the pid namespace tells them apart
    return f"{socket.gethostname()}/{installed}/{namespace}/{boot}"


def process_tags(run_id: str) -> dict[str, str]:
    """The tag naming this process as the one executing run ``run_id``. The run id is part of it because a
    re-executed run inherits its parent's tags: the parent's process, gone, must not end the new run."""
    started, where = _started(os.getpid()), machine()
    return {PROCESS_TAG: f"{where}:{os.getpid()}:{started}:{run_id}"} if started and where else {}


def claim(instance: DagsterInstance | None, run: DagsterRun | None) -> None:
    """Name this process on ``run``, which it is executing (a command has named itself when it created it)."""
    if instance is None or run is None:
        return
    tags = process_tags(run.run_id)
    if tags and run.tags.get(PROCESS_TAG) != tags[PROCESS_TAG]:
        instance.add_run_tags(run.run_id, tags)


def _process(run: DagsterRun) -> tuple[str, int, str] | None:
    """(machine, pid, start time) of the process the run names as executing it, if it names one for itself."""
    parts = run.tags.get(PROCESS_TAG, "").split(":")
    if len(parts) != 4 or parts[3] != run.run_id or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1]), parts[2]


def process_gone(run: DagsterRun) -> bool:
    """True when the run is starting or started, names the process executing it, on this host and in this container
    (``machine``), and that process no longer exists (or the machine has rebooted since). Another host's or
    container's process cannot be looked at: its run is taken as alive. A run not started yet names a process only
    when a `snds` command created it to execute it itself; a queued run has none yet."""
    process = _process(run)
    if run.status not in (*_STARTING, *_STARTED) or process is None:
        return False
    where, pid, started = process
    here = machine()
    if here is None or where.rpartition("/")[0] != here.rpartition("/")[0]:
        return False  # another host or container
    if where != here:
        return True  # rebooted since
    now = _started(pid)
    if now is None:  # ended, or hidden from this user (hidepid): then its start time cannot be compared
        return pid <= 0 or not _exists(pid)
    return now != started or _ended(pid)  # the process has ended (its pid reused or not)


def _end_gone(instance: DagsterInstance, runs: list[DagsterRun]) -> tuple[list[DagsterRun], list[DagsterRun]]:
    """(the runs still alive, those ended here). A run is read again once its process is found gone: listed
    started, it may have ended meanwhile, its process with it; a status reported now would replace its own."""
    alive, ended = [], []
    for run in runs:
        if not process_gone(run):
            alive.append(run)
            continue
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.status not in (*_STARTING, *_STARTED):
            continue  # it ended by itself
        instance.report_run_failed(current, f"the process that ran it (pid {_process(run)[1]}) has ended without "
                                            "ending the run: killed, most likely; its staged writes are removed by "
                                            "the next run of the same partition")
        ended.append(current)
    return alive, ended


def end_if_gone(instance: DagsterInstance, runs: list[DagsterRun]) -> list[DagsterRun]:
    """``runs`` but those whose process is gone, which are ended as failed, saying why."""
    return _end_gone(instance, runs)[0]


def unfinished_runs(instance: DagsterInstance, tags: dict[str, str], run_id: str | None = None) -> list[DagsterRun]:
    """Unfinished runs, other than ``run_id``, carrying any one of ``tags`` (a partition: the UI's runs carry
    ``dagster/partition`` only, those of the sensors and of `snds` their delivery or project too), those of a
    killed `snds` command ended first."""
    found: dict[str, DagsterRun] = {}
    for key, value in tags.items():
        for run in instance.get_runs(RunsFilter(statuses=list(UNFINISHED), tags={key: value})):
            if run.run_id != run_id:
                found[run.run_id] = run
    return end_if_gone(instance, list(found.values()))


def end_dead_runs(instance: DagsterInstance, log: logging.Logger | None = None) -> list[DagsterRun]:
    """End every starting or started run whose process is gone from this machine (see the module's docstring); the
    runs ended."""
    runs = [r for r in instance.get_runs(RunsFilter(statuses=[*_STARTING, *_STARTED]))
            if PROCESS_TAG in r.tags]
    ended = _end_gone(instance, runs)[1]
    if log is not None:
        for run in ended:
            log.warning(f"run {run.run_id} ended as failed: the process that ran it is gone")
    return ended


class PartitionBusy(RuntimeError):
    """Another run of the same delivery or project was started first."""


class PoolPerStep(RuntimeError):
    """A reception would wait for another while holding a pool slot that one needs (``pool_claimed_per_step``)."""


def _selected_keys(run: DagsterRun) -> list:
    """The asset keys a run materialises or checks (the UI runs a check alone with its asset unselected)."""
    return [*(run.asset_selection or ()), *(check.asset_key for check in (run.asset_check_selection or ()))]


def holds_project(run: DagsterRun) -> bool:
    if "snds/project" in run.tags or run.job_name == "provision":
        return True
    return any(key.path[0] == "projects" or list(key.path) == ["reports", "project"] for key in _selected_keys(run))


def is_reception(run: DagsterRun) -> bool:
    """A run on a delivery: the reception job's, or a delivery's assets or checks materialised from the asset graph
    (Dagster's implicit job, which carries no tag of the reception job)."""
    if not run.tags.get("dagster/partition") or holds_project(run):
        return False
    if run.job_name == "reception" or RECEPTION_TAG in run.tags:
        return True
    return any(key.path[0] in ("landing", "raw", "curated") or list(key.path) == ["reports", "reception"]
               for key in _selected_keys(run))


def _first_before(instance: DagsterInstance, run: DagsterRun, others: list[DagsterRun],
                  order: Callable[[RunRecord], object]) -> DagsterRun | None:
    """The first of ``others`` that comes before ``run`` by ``order`` of their run records (ties by run id), if any.
    One key per run, read from its own record, so that no two runs can each come before the other."""
    if not others:
        return None
    records = {r.dagster_run.run_id: r for r in instance.get_run_records(
        RunsFilter(run_ids=[run.run_id, *(r.run_id for r in others)]))}
    if run.run_id not in records:
        return None

    def key(run_id: str) -> tuple:
        return order(records[run_id]), run_id

    earlier = [r for r in others if r.run_id in records and key(r.run_id) < key(run.run_id)]
    return min(earlier, key=lambda r: key(r.run_id)) if earlier else None


def _creation_order(record: RunRecord) -> object:
    """Which of two runs of one partition goes on: the first created."""
    return record.create_timestamp


def _start_order(record: RunRecord) -> float:
    """Receptions take their turn in the order they started, not in the order they were created: a run the queue
    holds is created early and started late, so one started meanwhile outside the queue would not wait for it, nor
    it for that one. A run storage without start times (not migrated since Dagster added them) orders by creation."""
    return record.start_time if record.start_time is not None else record.create_timestamp.timestamp()


def receptions_of_other_deliveries(instance: DagsterInstance, run: DagsterRun) -> list[DagsterRun]:
    """Starting or started receptions of a delivery other than ``run``'s, those of a killed `snds` command ended
    first."""
    key = run.tags.get("dagster/partition")
    found = [r for r in instance.get_runs(RunsFilter(statuses=[*_STARTING, *_STARTED]))
             if r.run_id != run.run_id and is_reception(r) and r.tags["dagster/partition"] != key]
    return end_if_gone(instance, found)


WAIT_SECONDS = 5.0  # how often a reception waiting for its turn looks again
# A run's start time is taken just before it is stored: a reception starting at the same moment as this one can be
# seen not started yet, then stored as started before it. Seeing one starting, a reception looks again once after
# this long before it goes on.
GRACE_SECONDS = 1.0


def take_turn(instance: DagsterInstance | None, run: DagsterRun | None, log: logging.Logger | None = None) -> None:
    """Before ``run`` writes anything: fail it when another run of its delivery or project, created before it, is
    starting or started; and, for a reception, wait while a reception of another delivery that started before it
    runs.

    `snds ingest` and `snds extract` look for such a run before they create theirs, and the queue holds the
    others while one is in progress (the reception job's by ``RECEPTION_TAG``, a delivery's assets materialised
    from the asset graph by ``RECEPTION_POOL``), but two commands started at the same moment both looked before
    either created its run, and the queue holds no run started outside it (a command), nor a run of the asset graph
    on an instance whose pools are not configured as ours. Two runs of one partition would write the same folders
    (on one delivery, one report said accepted, the other rejected: each run discarded the other's verdicts): the
    first created goes on. Receptions of different deliveries would each check their keys without the other's:
    the later started waits. A queued run waits its turn in the queue."""
    if instance is None or run is None or not run.tags.get("dagster/partition"):
        return
    key = run.tags["dagster/partition"]
    if holds_project(run):
        from .provision.assets import extractions_in_progress as in_progress
    else:
        from .reception.assets import receptions_in_progress as in_progress
    told = None
    while True:
        others = [r for r in in_progress(instance, key, run.run_id) if r.status != DagsterRunStatus.QUEUED]
        first = _first_before(instance, run, others, _creation_order)
        if first is None:
            break
        if holds_project(run) or not first.tags.get("snds/project"):
            what = f"project {key} is already being extracted by {describe_run(first)}" if holds_project(run) \
                else f"delivery {key} {delivery_held_by(first)}"
            raise PartitionBusy(f"{what}, started before this run: wait for it to end, or terminate it in the UI")
        # A refresh extraction reading the delivery: the queue holds the sensor's receptions behind it (their tag
        # snds/delivery), not one started from the UI (the reception job, a family alone), which waits here instead.
        if first.run_id != told and log is not None:
            log.info(f"waiting: delivery {key} {delivery_held_by(first)} (terminate it in the UI if it is stuck); "
                     "a reception of it starts once that extraction has ended")
        told = first.run_id
        time.sleep(WAIT_SECONDS)
    if not is_reception(run):
        return
    ensure_reception_pool(instance)
    told, looked_again = None, False
    while True:
        others = receptions_of_other_deliveries(instance, run)
        first = _first_before(instance, run, [r for r in others if r.status in _STARTED], _start_order)
        if first is None:
            if looked_again or not any(r.status in _STARTING for r in others):
                return
            looked_again = True
            time.sleep(GRACE_SECONDS)
            continue
        if pool_claimed_per_step(instance):
            raise PoolPerStep(f"delivery {first.tags['dagster/partition']} is being received by "
                              f"{describe_run(first)}, and {POOL_PER_STEP}")
        if first.run_id != told and log is not None:
            log.info(f"waiting for the reception of delivery {first.tags['dagster/partition']} by "
                     f"{describe_run(first)} to end (terminate it in the UI if it is stuck): receptions run one at "
                     "a time, each checking its keys against the deliveries received before it")
        told, looked_again = first.run_id, False
        time.sleep(WAIT_SECONDS)
