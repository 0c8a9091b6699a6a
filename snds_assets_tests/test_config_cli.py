"""Configuration precedence (SPEC §1) and the command-line contract (SPEC §4)."""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
import yaml

from snds_assets.cli import EXIT_ERROR, _iso_date, build_parser, main
from snds_assets.config import PACKAGED_SCHEMAS, Settings

from .services import TcpService, clean_environment, free_port

REPOSITORY = Path(__file__).parents[1]


def test_defaults_live_under_one_home(tmp_path):
    s = Settings.from_env(env={"SNDS_HOME": str(tmp_path / "h")})
    home = str(tmp_path / "h")
    assert s.home == home
    assert s.landing == f"{home}/landing"
    assert s.lake == f"{home}/lake"
    assert s.projects == f"{home}/projects"
    assert s.dagster_home == f"{home}/dagster"
    assert s.schemas == str(PACKAGED_SCHEMAS.resolve())
    assert s.nomenclatures is None
    assert s.spark_remote is None
    assert s.reject_tolerance == 0.01


def test_option_beats_environment_beats_default(tmp_path):
    env = {"SNDS_HOME": str(tmp_path), "SNDS_LAKE": str(tmp_path / "env-lake"), "SPARK_REMOTE": "sc://h:15002"}
    s = Settings.from_env(env=env)
    assert s.lake == str(tmp_path / "env-lake")
    assert s.spark_remote == "sc://h:15002"
    s = Settings.from_env(env=env, lake=str(tmp_path / "cli-lake"))
    assert s.lake == str(tmp_path / "cli-lake")
    assert s.landing == str(tmp_path / "landing")


def test_uris_are_kept_as_given(tmp_path):
    s = Settings.from_env(env={"SNDS_HOME": str(tmp_path), "SNDS_LANDING": "az://cnam/drops",
                               "SNDS_LAKE": "abfss://lake@acct.dfs.core.windows.net/snds"})
    assert s.landing == "az://cnam/drops"
    assert s.lake == "abfss://lake@acct.dfs.core.windows.net/snds"
    assert s.as_env()["SNDS_LAKE"] == s.lake


@pytest.mark.parametrize("command", ["generate", "ingest", "extract", "demo", "ui", "report"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    assert f"snds {command}" in capsys.readouterr().out


def test_every_option_says_what_it_does():
    """`snds ui --help` listed --host with no word of what it is; DELIVERY_ID and PROJECT_ID had only their names."""
    import argparse

    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, sub in commands.choices.items():
        silent = [a.option_strings or a.dest for a in sub._actions if not a.help]
        assert not silent, f"snds {name}: {silent}"


def _snds(args, home, extra_env=None):
    return subprocess.run([sys.executable, "-m", "snds_assets.cli", *args], capture_output=True, text=True,
                          env=clean_environment(home, **(extra_env or {})), timeout=300)


def test_missing_delivery_is_a_one_line_error(tmp_path):
    proc = _snds(["ingest", "2026-01-01"], tmp_path)
    assert proc.returncode == EXIT_ERROR
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "2026-01-01" in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize("fmt, message", [
    ({"date_format": "%Q"}, "delivery 2024-03-01: manifest format date_format '%Q': %Q has no Spark equivalent"),
    ({"header": "false"}, 'delivery 2024-03-01: manifest format header must be a JSON boolean (true or false), not '
                          '"false"'),
    (None, "snds: error: delivery 2024-03-01: manifest.json is not valid JSON ("),
])
def test_a_bad_manifest_format_is_a_one_line_error_with_no_output(tmp_path, fmt, message):
    """SPEC §4: exit 2 with one line saying what to fix, naming the delivery, before anything is archived, curated
    or reported."""
    from snds_assets_tests.reception_delivery import Delivery, csv_bytes

    delivery = Delivery(tmp_path / "landing", "2024-03-01", fmt)
    delivery.add("IR_IMB_R", "IR_IMB_R.csv", csv_bytes(["BEN_NIR_PSA", "BEN_RNG_GEM", "IMB_ALD_NUM", "IMB_ALD_DTD"],
                                                        [["A" * 16 + "1", "1", "5", "15/01/2020"]]))
    delivery.write("{not json" if fmt is None else None)
    proc = _snds(["ingest", "2024-03-01"], tmp_path)
    assert proc.returncode == EXIT_ERROR
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    lake = tmp_path / "lake"
    assert not lake.exists() or not any(p.is_file() for p in lake.rglob("*"))


def test_a_care_period_that_is_not_a_date_says_so(tmp_path):
    """argparse said "invalid fromisoformat value"."""
    proc = _snds(["generate", "--out", str(tmp_path / "landing"), "--start", "2023-13-01"], tmp_path)
    assert proc.returncode == EXIT_ERROR
    assert proc.stderr.strip().splitlines() == ["snds generate: error: argument --start: '2023-13-01' is not a date "
                                                "(YYYY-MM-DD) (see snds generate --help)"], proc.stderr
    assert not (tmp_path / "landing").exists()


@pytest.mark.parametrize("text", ["20230101", "2023-W01-1", "2023-1-1", "2023-01-01T00:00", "\u0662023-01-01"])
def test_a_care_period_is_written_yyyy_mm_dd(text):
    """Python's date.fromisoformat takes the compact and week forms, which the help's YYYY-MM-DD does not name."""
    assert _iso_date("2023-01-01") == date(2023, 1, 1)
    with pytest.raises(argparse.ArgumentTypeError, match="is not a date"):
        _iso_date(text)


def test_bad_delivery_id_is_a_usage_error(tmp_path):
    proc = _snds(["ingest", "not-a-date"], tmp_path)
    assert proc.returncode == EXIT_ERROR
    assert proc.stderr.strip().startswith("snds: error:") and "YYYY-MM-DD" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("value", ["2024-01-15\n", "2024-13-45", "2024-02-30", "２０２４-01-15"])
def test_delivery_ids_are_whole_ascii_calendar_dates(value):
    from snds_assets.reception.manifest import valid_delivery_id

    assert not valid_delivery_id(value)
    assert valid_delivery_id("2024-02-29") and valid_delivery_id("2024-01-15_bis2")


@pytest.mark.parametrize("value", ["2024-02-30", "2024-01-15\n"])
def test_generate_refuses_a_bad_delivery_id_in_one_line(tmp_path, value):
    """No folder named after an impossible date or ending in a line break: one line naming the option and the id."""
    proc = _snds(["generate", "--delivery-id", value, "--patients", "1", "--tables", "IR_IMB_R"], tmp_path)
    assert proc.returncode == EXIT_ERROR, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "--delivery-id" in lines[0] and repr(value) in lines[0] and "calendar date" in lines[0]
    landing = tmp_path / "landing"
    assert not landing.exists() or not any(landing.iterdir())


def test_ingest_refuses_an_impossible_date(tmp_path):
    proc = _snds(["ingest", "2024-13-45"], tmp_path)
    assert proc.returncode == EXIT_ERROR
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "'2024-13-45' is not YYYY-MM-DD[_suffix] with a calendar date" in lines[0], proc.stderr


def test_bad_usage_exits_2(tmp_path):
    proc = _snds(["frobnicate"], tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_unknown_project_is_a_one_line_error(tmp_path):
    proc = _snds(["extract", "nope"], tmp_path)
    assert proc.returncode == EXIT_ERROR
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "nope" in proc.stderr and "Traceback" not in proc.stderr


def test_a_request_with_many_problems_is_told_whole_on_the_command_line(tmp_path):
    """The command cut its one line after 400 characters: of a request's ten problems shown (and how many more),
    six reached the researcher, and the README's "mended in one round" did not hold."""
    projects = tmp_path / "home" / "projects"
    projects.mkdir(parents=True)
    (projects / "ranks.yaml").write_text("id: ranks\ntitle: Ranks\nperiod: {start: 2022-01-01, end: 2023-12-31}\n"
                                         "tables: [IR_BEN_R]\ncohort: {identifiers: ranks.csv}\n", encoding="utf-8")
    rows = "".join(f"{'x' * 17};rank-{i}-{'y' * 40}\n" for i in range(12))
    (projects / "ranks.csv").write_text("BEN_NIR_PSA;BEN_RNG_GEM\n" + rows, encoding="utf-8")
    proc = _snds(["extract", "ranks"], tmp_path / "home")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == EXIT_ERROR and len(lines) == 1, proc.stderr
    assert lines[0].count("is not a rank") == 10 and lines[0].endswith("; and 2 more problem(s)"), lines[0]


def test_a_project_extracted_before_any_delivery_is_told_to_ingest_one(tmp_path):
    """`snds extract` on a lake no delivery reached said "IR_BEN_R is not in the current state: no person can be
    identified", and `snds report` of the project then "no delivery or project report named …": neither said what
    to run."""
    projects = tmp_path / "home" / "projects"
    projects.mkdir(parents=True)
    (projects / "early.yaml").write_text("id: early\ntitle: Early\nperiod: {start: 2022-01-01, end: 2023-12-31}\n"
                                         "tables: [IR_BEN_R]\ncohort:\n  criteria:\n    any_of:\n"
                                         "      - diagnosis: {icd10: [U071]}\n", encoding="utf-8")
    proc = _snds(["extract", "early"], tmp_path / "home")
    assert proc.returncode == EXIT_ERROR and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("snds: error: ") and "no accepted delivery brought it: run snds ingest" in last, proc.stderr
    assert "has not finished" not in last
    proc = _snds(["report", "early"], tmp_path / "home")
    assert proc.returncode == EXIT_ERROR
    assert proc.stderr.strip().splitlines() == [
        "snds: error: project early has no report yet: its extraction has not completed (never run, still running, "
        "or failed: the failure said why); run snds extract early"], proc.stderr

    raw = tmp_path / "home" / "lake" / "raw" / "2026-01-15"  # a reception killed after archiving its manifest
    raw.mkdir(parents=True)
    (raw / "manifest.json").write_text("{}", encoding="utf-8")
    proc = _snds(["extract", "early"], tmp_path / "home")
    assert proc.returncode == EXIT_ERROR
    assert ("the reception of delivery 2026-01-15 has not finished (still running, or interrupted: then run snds "
            "ingest 2026-01-15)") in proc.stderr.strip().splitlines()[-1], proc.stderr


@pytest.mark.parametrize("command", [["ingest", "2026-01-01"], ["ui"], ["generate"]])
def test_unreadable_schema_folder_is_reported(tmp_path, command):
    """It said "schema folder not found: …", not which setting names it."""
    proc = _snds(["--schemas", str(tmp_path / "none"), *command], tmp_path)
    assert proc.returncode == EXIT_ERROR
    assert proc.stderr.strip().splitlines() == [f"snds: error: --schemas {tmp_path / 'none'}: schema folder not found"]
    proc = _snds(command, tmp_path, extra_env={"SNDS_SCHEMAS": str(tmp_path / "none")})
    assert proc.returncode == EXIT_ERROR
    assert proc.stderr.strip().splitlines() == [f"snds: error: SNDS_SCHEMAS {tmp_path / 'none'}: schema folder not found"]


def test_main_creates_the_dagster_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SNDS_HOME", str(tmp_path / "home"))
    assert main(["ingest", "2026-01-01"]) == EXIT_ERROR
    assert (tmp_path / "home" / "dagster" / "dagster.yaml").exists()


def test_report_and_generate_leave_no_home_behind(tmp_path):
    """`snds report` run from any directory left a `./.snds` (a Dagster instance and a logs folder) it never used."""
    lake = tmp_path / "lake"
    env = {"SNDS_LAKE": str(lake), "SNDS_PROJECTS": str(tmp_path / "projects")}
    proc = _snds(["report", "2026-01-01"], tmp_path / "home", extra_env=env)
    assert proc.returncode == EXIT_ERROR
    assert proc.stderr.strip().splitlines() == [  # which lake it read: run elsewhere, ./.snds/lake is not the one
        f"snds: error: no delivery or project report named '2026-01-01': the lake {lake} (SNDS_LAKE) holds no report "
        "at all (no delivery was ingested into it): is it the lake you meant?"], proc.stderr
    (lake / "reports" / "deliveries").mkdir(parents=True)
    proc = _snds(["report", "2026-01-01"], tmp_path / "home", extra_env=env)
    assert proc.returncode == EXIT_ERROR and "no delivery or project report named '2026-01-01' in" in proc.stderr
    proc = _snds(["generate", "--out", str(tmp_path / "landing"), "--patients", "2", "--tables", "IR_BEN_R"],
                 tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "landing").is_dir()
    assert not (tmp_path / "home").exists()


def test_the_local_instance_never_runs_one_project_twice_at_once(tmp_path, monkeypatch):
    """`snds ui`'s daemon queues a second run of a project (both sensors, the UI) while the first runs: two
    extractions at once rewrote each other's files and one failed. An instance configured by an earlier version
    gets the limits too."""
    from dagster import DagsterInstance
    from dagster._core.storage.dagster_run import DagsterRunStatus

    from .services import EARLIER_INSTANCE_CONFIGS, queue_decision, queued_run

    dagster_home = tmp_path / "home" / "dagster"
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text(EARLIER_INSTANCE_CONFIGS["17f7747"])  # the first, without limits
    monkeypatch.setenv("SNDS_HOME", str(tmp_path / "home"))
    main(["ingest", "2026-01-01"])
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        def run(status, project):
            return queued_run(instance, "provision", status, {"dagster/partition": project,
                                                              "snds/project": project}).run_id

        run(DagsterRunStatus.STARTED, "covid")
        same, other = run(DagsterRunStatus.QUEUED, "covid"), run(DagsterRunStatus.QUEUED, "asthma")
        dequeued = queue_decision(instance)
    assert dequeued == {other} and same not in dequeued
    assert "telemetry:\n  enabled: false" in (dagster_home / "dagster.yaml").read_text()
    assert _run_limits(dagster_home / "dagster.yaml") == _run_limits(REPOSITORY / "deploy" / "dagster.yaml")


def test_the_local_instance_receives_one_delivery_at_a_time(tmp_path, monkeypatch):
    """`snds ui`'s daemon starts one reception at a time, whatever its delivery, first queued first (each checks
    its keys against the deliveries received before it); an extraction goes ahead. An instance configured by the
    previous version gets the limit too."""
    from dagster import DagsterInstance
    from dagster._core.storage.dagster_run import DagsterRunStatus

    from snds_assets.runs import RECEPTION_TAG

    from .services import EARLIER_INSTANCE_CONFIGS, queue_decision, queued_run

    dagster_home = tmp_path / "home" / "dagster"
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text(EARLIER_INSTANCE_CONFIGS["435e926"])  # the last one without pools
    monkeypatch.setenv("SNDS_HOME", str(tmp_path / "home"))
    main(["ingest", "2026-01-01"])
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        def run(job, status, **tags):
            return queued_run(instance, job, status, tags).run_id

        reception = {RECEPTION_TAG: "true"}
        november = run("reception", DagsterRunStatus.QUEUED, **reception, **{"dagster/partition": "2026-11-01"})
        december = run("reception", DagsterRunStatus.QUEUED, **reception, **{"dagster/partition": "2026-12-01"})
        project = run("provision", DagsterRunStatus.QUEUED, **{"dagster/partition": "covid", "snds/project": "covid"})
        assert queue_decision(instance) == {november, project}
        instance.report_run_canceled(instance.get_run_by_id(november))  # as if it ran and ended
        assert december in queue_decision(instance)


def test_the_local_instance_holds_asset_graph_receptions_in_the_queue(tmp_path, monkeypatch):
    """A delivery's assets materialised from the asset graph carry no tag of the reception job: launched while
    another reception ran, each waited for its turn in a run slot (four would hold every slot, an extraction
    queued behind them). Their steps' pool keeps them queued instead, behind a command's reception too; an
    extraction goes ahead. The delivery sensor's tick gives the pool its limit before the queue meets it."""
    from dagster import DagsterInstance, build_sensor_context
    from dagster._core.storage.dagster_run import DagsterRunStatus

    from snds_assets.definitions import build_definitions
    from snds_assets.reception.assets import curated_key, raw_key
    from snds_assets.runs import RECEPTION_POOL, RECEPTION_TAG

    from .services import EARLIER_INSTANCE_CONFIGS, planned_run, queue_decision, queued_run

    dagster_home = tmp_path / "home" / "dagster"
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text(EARLIER_INSTANCE_CONFIGS["435e926"])  # the last one without pools
    monkeypatch.setenv("SNDS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SNDS_LANDING", str(tmp_path / "landing"))
    main(["ingest", "2026-01-01"])
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        defs = build_definitions()
        sensor = defs.resolve_sensor_def("cnam_deliveries")
        sensor(build_sensor_context(instance=instance, resources={"snds": defs.resources["snds"]}))
        assert RECEPTION_POOL in instance.event_log_storage.get_concurrency_keys()

        command = planned_run(instance, "reception", DagsterRunStatus.STARTED,
                              {RECEPTION_TAG: "true", "dagster/partition": "2026-11-01", "snds/source": "cli"},
                              {curated_key("IR_BEN_R")})
        curated = planned_run(instance, None, DagsterRunStatus.QUEUED, {"dagster/partition": "2026-12-01"},
                              {curated_key("ER_PRS_F")})
        planned_run(instance, None, DagsterRunStatus.QUEUED, {"dagster/partition": "2026-12-02"}, {raw_key("IR_BEN_R")})
        project = queued_run(instance, "provision", DagsterRunStatus.QUEUED,
                             {"dagster/partition": "covid", "snds/project": "covid"}).run_id
        assert queue_decision(instance) == {project}
        instance.report_run_canceled(instance.get_run_by_id(command))  # as if it ended
        assert queue_decision(instance) == {project, curated}  # one reception at a time, first queued first
    assert _pools(dagster_home / "dagster.yaml") == _pools(REPOSITORY / "deploy" / "dagster.yaml")


def _run_limits(config: Path) -> list:
    """The tag limits of an instance's configuration: the local one must keep the production one's."""
    return yaml.safe_load(config.read_text())["concurrency"]["runs"]["tag_concurrency_limits"]


def _pools(config: Path) -> dict:
    """The pools' configuration of an instance: the local one must keep the production one's."""
    return yaml.safe_load(config.read_text())["concurrency"]["pools"]


@pytest.mark.parametrize("status, code", [("complete", 0), ("failed", 1)])
def test_project_report_exit_status_follows_its_verdict(tmp_path, status, code):
    """SPEC §4: 1 when the data were rejected (an ERROR check of the extraction failed), 0 otherwise."""
    report = tmp_path / "lake" / "reports" / "projects" / "p1.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"project_id": "p1", "status": status, "cohort": None, "tables": {}}))
    proc = _snds(["report", "p1"], tmp_path)
    assert proc.returncode == code, proc.stderr
    assert f"project p1: {status.upper()}, no cohort" in proc.stdout


def test_the_report_of_a_first_reception_killed_half_way_says_to_run_it_again(snds_env, capsys):
    """A first reception killed after archiving leaves no report to withdraw: `snds report` said "no delivery or
    project report named", as if the delivery had never been ingested, where it has files and families in the lake."""
    fragment = snds_env / "lake" / "reports" / "deliveries" / "_parts" / "2026-02-01" / "IR_BEN_R.raw.json"
    fragment.parent.mkdir(parents=True)
    fragment.write_text("{}")
    assert main(["report", "2026-02-01"]) == EXIT_ERROR
    assert capsys.readouterr().err == ("snds: error: delivery 2026-02-01: its reception started and has not finished "
                                       "(still running, or interrupted: then run snds ingest 2026-02-01); it has no "
                                       "report yet\n")
    assert main(["report", "2026-02-02"]) == EXIT_ERROR
    assert "no delivery or project report named '2026-02-02'" in capsys.readouterr().err


def test_the_report_of_an_unfinished_extraction_is_no_success(snds_env, capsys):
    """An extraction killed after its new cohort leaves an ``incomplete`` report whose extracts are stale: `snds
    report` exited 0, "done and accepted", listing their rows as if they could be handed over."""
    report = snds_env / "lake" / "reports" / "projects" / "p1.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"project": "p1", "status": "incomplete", "cohort": {"size": 2, "checks": []},
                                  "tables": {"IR_BEN_R": {"rows": 3, "status": "stale (extracted for an earlier cohort)"},
                                             "ER_PRS_F": {"rows": 4, "status": "extracted"}}}))
    assert main(["report", "p1"]) == EXIT_ERROR
    captured = capsys.readouterr()
    assert captured.out.splitlines()[:3] == ["project p1: INCOMPLETE, cohort of 2 persons", "  ER_PRS_F       4 rows",
                                             "  IR_BEN_R       3 rows  stale (extracted for an earlier cohort)"]
    assert captured.err == ("snds: error: project p1: its extraction has not finished (still running, or "
                            "interrupted: then run snds extract p1); its extracts not marked extracted are not to be "
                            "handed over\n")


def test_the_report_of_a_project_extracted_before_a_later_delivery_says_it_lags(snds_env, capsys):
    """A COMPLETE report read after a delivery accepted since exited 0, "done and accepted": `snds report P &&
    hand-over` handed out extracts of the earlier state while the refresh sensor had yet to extract them again."""
    deliveries = snds_env / "lake" / "reports" / "deliveries"
    deliveries.mkdir(parents=True)

    def accept(delivery_id: str, mode: str) -> None:
        (deliveries / f"{delivery_id}.json").write_text(json.dumps({
            "delivery_id": delivery_id, "status": "accepted",
            "tables": {"IR_BEN_R": {"family": "IR_BEN_R", "status": "accepted", "mode": mode}}}))

    accept("2024-01-15", "full")
    from snds_assets.curation.state import CurrentState

    mark = CurrentState(None, Settings.from_env(), None).receptions()["2024-01-15"]
    report = snds_env / "lake" / "reports" / "projects" / "p1.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({
        "project": "p1", "status": "complete",
        "cohort": {"size": 2, "checks": [], "deliveries": {"IR_BEN_R": ["2024-01-15"]},
                   "receptions": {"2024-01-15": mark}},
        "tables": {"IR_BEN_R": {"rows": 3, "deliveries_read": {"IR_BEN_R": ["2024-01-15"]}}}}))
    assert main(["report", "p1"]) == 0
    assert capsys.readouterr().err == ""
    accept("2024-02-15", "full")
    assert main(["report", "p1"]) == EXIT_ERROR
    captured = capsys.readouterr()
    assert captured.out.startswith("project p1: COMPLETE, OUT OF DATE, cohort of 2 persons")
    assert captured.err == ("snds: error: project p1: its extracts are out of date (its request changed, or a "
                            "delivery was accepted, rejected or received again since): run snds extract p1, or let "
                            "snds ui's sensors do it; IR_BEN_R: 2024-02-15 joined, 2024-01-15 left\n")
    (deliveries / "2024-02-15.json").unlink()
    accept("2024-01-15", "full")  # received again: the same id, a new report
    os.utime(deliveries / "2024-01-15.json", ns=(1, 1))
    assert main(["report", "p1"]) == EXIT_ERROR
    assert capsys.readouterr().err.endswith("IR_BEN_R: 2024-01-15 received again\n")
    (deliveries / "2024-03-15.json").write_text("{")  # the lake's report is named, not the project's
    assert main(["report", "p1"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "2024-03-15.json is not a readable reception report" in err and "p1.json" not in err, err


def test_the_report_of_a_project_whose_request_changed_since_says_so(snds_env, capsys):
    """A perimeter narrowed since the extraction (a table withdrawn, a shorter period), or a request withdrawn,
    left the report COMPLETE, exit 0, over extracts the project is no longer granted."""
    from snds_assets.provision.request import request_fingerprint

    request = snds_env / "projects" / "p1.yaml"
    request.parent.mkdir(parents=True, exist_ok=True)
    request.write_text("id: p1\ntables: [IR_BEN_R, ER_PRS_F]\n")
    report = snds_env / "lake" / "reports" / "projects" / "p1.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"project": "p1", "status": "complete", "tables": {},
                                  "cohort": {"size": 2, "checks": [], "request_fingerprint": request_fingerprint(request)}}))
    assert main(["report", "p1"]) == 0
    request.write_text("id: p1\ntables: [IR_BEN_R]\n")
    assert main(["report", "p1"]) == EXIT_ERROR
    assert capsys.readouterr().err.endswith(f"snds ui's sensors do it; its request {request} (or its identifiers "
                                            "file) changed\n")
    request.unlink()
    assert main(["report", "p1"]) == EXIT_ERROR
    assert capsys.readouterr().err == (f"snds: error: project p1: its request {request} was removed since its "
                                       "extraction: its extracts are no longer requested and not to be handed over\n")


def test_the_project_summary_names_its_failed_checks_and_unresolved_identifiers(snds_env, capsys):
    """"project demo-covid: COMPLETE, cohort of 119 persons" hid the cohort's failed WARN check (one unknown
    identifier), which the delivery summary would have named; and a cohort of one read "1 persons"."""
    unresolved = {"name": "unresolved_identifiers", "severity": "WARN", "passed": False, "failures": 1}
    report = snds_env / "lake" / "reports" / "projects" / "p1.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({
        "project": "p1", "status": "complete",
        "cohort": {"size": 1, "checks": [unresolved, {"name": "no_snds_pseudonym", "passed": True}]},
        "identifiers": {"rows": 3, "resolved": 2, "ambiguous": 0, "unknown": 1},
        "tables": {"IR_BEN_R": {"rows": 1, "checks": [{"name": "belongs_to_cohort", "passed": True}]},
                   "ER_PRS_F": {"rows": 4, "checks": [{"name": "period", "severity": "WARN", "passed": False}]}}}))
    assert main(["report", "p1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["project p1: COMPLETE, cohort of 1 person, 1 of 3 identifiers unresolved (0 ambiguous, "
                         "1 unknown)  failed: unresolved_identifiers (WARN)",
                         "  ER_PRS_F       4 rows  failed: period (WARN)",
                         "  IR_BEN_R       1 rows"], lines


def test_the_project_summary_says_what_a_project_without_the_archive_misses(snds_env, capsys):
    """Two of the cohort's identities only in IR_BEN_R_ARC, which the request does not list: their care is extracted
    with no IR_BEN_R row naming their person, which the summary says under its first line."""
    report = snds_env / "lake" / "reports" / "projects" / "p1.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({
        "project": "p1", "status": "complete", "cohort": {"size": 3, "identities_archived": 2, "checks": []},
        "tables": {"IR_BEN_R": {"rows": 3, "checks": []}, "ER_PRS_F": {"rows": 9, "checks": []}}}))
    assert main(["report", "p1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["project p1: COMPLETE, cohort of 3 persons",
                         "  2 of the cohort's identities are only in IR_BEN_R_ARC, which the request does not list: "
                         "their rows in the extracts have no IR_BEN_R row naming their person (list IR_BEN_R_ARC in "
                         "the request's tables to hand them out)",
                         "  ER_PRS_F       9 rows"], lines


def test_a_reader_that_goes_away_is_no_traceback(tmp_path):
    """`snds report p1 | head -1`: the pipe closed before the summary is written gave a traceback."""
    report = tmp_path / "lake" / "reports" / "projects" / "p1.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"project_id": "p1", "status": "complete", "cohort": None, "tables": {}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SNDS_", "DAGSTER_HOME"))}
    env["SNDS_HOME"] = str(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "snds_assets.cli", "report", "p1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    proc.stdout.close()  # before the command has even imported its modules
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == EXIT_ERROR
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Broken pipe" not in stderr, stderr


@pytest.mark.parametrize("target", ["../../../outside", "../projects/p", "P1 "])
def test_report_takes_a_delivery_or_project_id_only(tmp_path, target):
    outside = tmp_path / "outside.json"
    outside.write_text('{"delivery_id": "x", "status": "accepted", "tables": {}}')
    proc = _snds(["report", target], tmp_path)
    assert proc.returncode == EXIT_ERROR and "ACCEPTED" not in proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1 and "neither a delivery id" in proc.stderr


@pytest.mark.parametrize("value", ["abc", "nan", "-1", "2"])
def test_reject_tolerance_must_be_a_share(tmp_path, value):
    with pytest.raises(ValueError, match=f"SNDS_REJECT_TOLERANCE must be a share between 0 and 1.*{value}"):
        Settings.from_env(env={"SNDS_HOME": str(tmp_path), "SNDS_REJECT_TOLERANCE": value})


def test_demo_stays_under_its_home(tmp_path, monkeypatch, capsys):
    """SPEC §4: the demo writes all under $SNDS_HOME, never into a landing zone, lake or instance set for production."""
    from snds_assets.cli import resolve_settings

    monkeypatch.setenv("SNDS_HOME", str(tmp_path / "h"))
    for var in ("SNDS_LANDING", "SNDS_LAKE", "SNDS_PROJECTS", "DAGSTER_HOME"):
        monkeypatch.setenv(var, str(tmp_path / "production" / var))
    demo = resolve_settings(build_parser().parse_args(["demo"]))
    assert [demo.landing, demo.lake, demo.projects, demo.dagster_home] == [
        str(tmp_path / "h" / name) for name in ("landing", "lake", "projects", "dagster")]
    assert "SNDS_LANDING, SNDS_LAKE, SNDS_PROJECTS, DAGSTER_HOME not used" in capsys.readouterr().err
    ingest = resolve_settings(build_parser().parse_args(["ingest", "2024-01-15"]))
    assert ingest.lake == str(tmp_path / "production" / "SNDS_LAKE")
    given = resolve_settings(build_parser().parse_args(["--lake", str(tmp_path / "mine"), "demo"]))
    assert given.lake == str(tmp_path / "mine")


def test_generate_out_expands_the_user_folder(tmp_path):
    proc = _snds(["generate", "--out", "~/landing", "--patients", "3", "--tables", "IR_BEN_R"], tmp_path / "h",
                 extra_env={"HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "landing").glob("*/manifest.json"))) == 1


@pytest.mark.parametrize("argv, what", [
    (["generate", "--patients", "abc"], "argument --patients: invalid int value: 'abc'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["ingest"], "the following arguments are required: DELIVERY_ID"),
    (["ingest", "--bogus", "2024-01-15"], "unrecognized arguments: --bogus"),
])
def test_bad_usage_is_one_line_not_the_whole_usage(argv, what, capsys):
    """SPEC §4: bad usage exits 2 with one line that says what to fix (argparse printed the usage first)."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == EXIT_ERROR
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and what in lines[0] and "--help" in lines[0], lines


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1e3", "²"])
def test_freshness_days_must_be_a_number_of_days(value, monkeypatch):
    """A bad SNDS_FRESHNESS_DAYS_<PRODUCT> is named in the error (it said "invalid literal for int()", or
    Dagster's "fail_window cannot be less than 1 minute")."""
    from snds_assets.reception.assets import freshness_policy
    from snds_assets.resources import load_catalog

    monkeypatch.setenv("SNDS_FRESHNESS_DAYS_DCIR", value)
    with pytest.raises(ValueError, match=f"SNDS_FRESHNESS_DAYS_DCIR must be a whole number of days.*'{value}'"):
        freshness_policy(load_catalog(str(PACKAGED_SCHEMAS))["ER_PRS_F"])


@pytest.mark.parametrize("value", ["abc", "0"])
def test_a_bad_freshness_setting_is_refused_by_every_command(value, tmp_path):
    """Checked with the other settings, so that `snds report` or `snds generate` say it as `snds ingest` does, even
    for a product no family of the catalog has; an empty one is unset."""
    env = {"SNDS_HOME": str(tmp_path)}
    with pytest.raises(ValueError, match=f"SNDS_FRESHNESS_DAYS_NOSUCH must be a whole number of days.*'{value}'"):
        Settings.from_env(env={**env, "SNDS_FRESHNESS_DAYS_NOSUCH": value})
    assert Settings.from_env(env={**env, "SNDS_FRESHNESS_DAYS_NOSUCH": ""}).home == str(tmp_path)


def test_an_empty_freshness_variable_is_unset(monkeypatch):
    from datetime import timedelta

    from snds_assets.reception.assets import freshness_policy
    from snds_assets.resources import load_catalog

    monkeypatch.setenv("SNDS_FRESHNESS_DAYS_DCIR", "")
    assert freshness_policy(load_catalog(str(PACKAGED_SCHEMAS))["ER_PRS_F"]).warn_window.to_timedelta() == timedelta(days=31)
    monkeypatch.setenv("SNDS_FRESHNESS_DAYS_DCIR", "40")
    assert freshness_policy(load_catalog(str(PACKAGED_SCHEMAS))["ER_PRS_F"]).warn_window.to_timedelta() == timedelta(days=40)


def test_referentials_are_expected_yearly_and_dcir_flows_monthly(monkeypatch):
    """The issue: monthly for DCIR, yearly for PMSI and referentials. IR_IMB_R, a referential of the DCIR_DCIRS
    product, had the DCIR's month."""
    from datetime import timedelta

    from snds_assets.reception.assets import freshness_policy
    from snds_assets.resources import load_catalog

    catalog = load_catalog(str(PACKAGED_SCHEMAS))
    windows = {name: freshness_policy(catalog[name]).warn_window.to_timedelta().days
               for name in ("ER_PRS_F", "ER_PHA_F", "IR_IMB_R", "IR_BEN_R", "KI_CCI_R", "T_MCOaaB")}
    assert windows == {"ER_PRS_F": 31, "ER_PHA_F": 31, "IR_IMB_R": 366, "IR_BEN_R": 366, "KI_CCI_R": 366,
                       "T_MCOaaB": 366}
    monkeypatch.setenv("SNDS_FRESHNESS_DAYS_DCIR_DCIRS", "92")
    assert freshness_policy(catalog["IR_IMB_R"]).fail_window.to_timedelta() == timedelta(days=92 + 23)


def test_parallel_families_superscript_digit_is_named(tmp_path):
    """"²".isdigit() is true but int() refuses it: the error said "invalid literal for int()"."""
    with pytest.raises(ValueError, match="SNDS_PARALLEL_FAMILIES must be a positive integer, got '²'"):
        Settings.from_env(env={"SNDS_HOME": str(tmp_path), "SNDS_PARALLEL_FAMILIES": "²"})


def test_spark_log_level_is_checked_before_a_run(tmp_path):
    """A bad SNDS_SPARK_LOG_LEVEL failed the run at its Spark session, after it started, without its name."""
    with pytest.raises(ValueError, match="SNDS_SPARK_LOG_LEVEL must be one of .*ERROR.*got 'bogus'"):
        Settings.from_env(env={"SNDS_HOME": str(tmp_path), "SNDS_SPARK_LOG_LEVEL": "bogus"})
    for level in ("warn", "INFO", ""):
        Settings.from_env(env={"SNDS_HOME": str(tmp_path), "SNDS_SPARK_LOG_LEVEL": level})


def test_the_demo_runs_its_whole_chain(tmp_path):
    """`snds demo` as `make demo` runs it, from a folder without a home: generate, ingest, extract, each through the
    command (a message built from the demo's own arguments once failed with "'Namespace' object has no attribute
    'command'"). Its delivery is accepted and its project extracted."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SNDS_", "DAGSTER_HOME"))}
    done = subprocess.run([sys.executable, "-m", "snds_assets.cli", "demo"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [line[:4] for line in done.stdout.splitlines() if line[:2] in ("1/", "2/", "3/")] == ["1/3 ", "2/3 ", "3/3 "]
    # the project's families are extracted two at a time (SNDS_PARALLEL_FAMILIES), as a delivery's are received
    assert re.search(r"extracting \w+ \(\w+ under way\)", done.stdout + done.stderr), done.stdout[-2000:]
    home = tmp_path / ".snds"
    reception = json.loads((home / "lake" / "reports" / "deliveries" / "2024-01-15.json").read_text())
    assert reception["status"] == "accepted"
    [project] = (home / "lake" / "reports" / "projects").glob("*.json")
    assert json.loads(project.read_text())["status"] == "complete"


def test_demo_run_again_says_what_to_remove(tmp_path):
    """The demo's delivery id is fixed: a second `snds demo` (or `make demo`) was told to "choose another delivery
    id or overwrite it", which it cannot do."""
    previous = tmp_path / "landing" / "2024-01-15"
    previous.mkdir(parents=True)
    (previous / "manifest.json").write_text("{}")
    proc = _snds(["demo"], tmp_path)
    assert proc.returncode == EXIT_ERROR
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{previous} already holds a delivery" in lines[0], proc.stderr
    assert f"remove that folder, or the demo's home {tmp_path}" in lines[0]
    assert not (tmp_path / "lake").exists() and not (tmp_path / "projects").exists()


@pytest.mark.parametrize("port", ["70000", "0", "-1", "http"])
def test_ui_port_must_be_a_tcp_port(port, capsys, monkeypatch, tmp_path):
    """`snds ui --port 70000` announced port 70000 and served on 4464 (70000 modulo 65536)."""
    monkeypatch.setenv("SNDS_HOME", str(tmp_path))
    monkeypatch.setattr(os, "execvpe", lambda *a: pytest.fail(f"dagster dev started with {a[1]}"))
    with pytest.raises(SystemExit) as exc:
        main(["ui", "--port", port])
    assert exc.value.code == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"argument --port: '{port}' is not a TCP port (1 to 65535)" in err and len(err.splitlines()) == 1
    assert build_parser().parse_args(["ui", "--port", "3417"]).port == 3417


def test_ui_refuses_json_logs_and_says_where_they_are(capsys, monkeypatch, tmp_path):
    """`snds ui --log-format json` was accepted and printed Dagster's text: every run's JSON lines are in files."""
    monkeypatch.setenv("SNDS_HOME", str(tmp_path))
    monkeypatch.setattr(os, "execvpe", lambda *a: pytest.fail(f"dagster dev started with {a[1]}"))
    assert main(["ui", "--log-format", "json"]) == EXIT_ERROR
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith(f"every run's events are written as JSON lines to {tmp_path}/logs/runs/<RUN_ID>.jsonl"), line


def test_ui_refuses_a_bad_freshness_setting_before_it_starts(capsys, monkeypatch, tmp_path):
    """`snds ui` with a bad SNDS_FRESHNESS_DAYS_<PRODUCT> started, its code location failing to load in the UI."""
    monkeypatch.setenv("SNDS_HOME", str(tmp_path))
    monkeypatch.setenv("SNDS_FRESHNESS_DAYS_PMSI", "0")
    monkeypatch.setattr(os, "execvpe", lambda *a: pytest.fail(f"dagster dev started with {a[1]}"))
    assert main(["ui"]) == EXIT_ERROR
    [line] = capsys.readouterr().err.splitlines()
    assert "SNDS_FRESHNESS_DAYS_PMSI must be a whole number of days, at least 1, got '0'" in line, line


@pytest.mark.parametrize("url", ["sc://h:1;token=SECRETTOK", "sc://:15002/;token=SECRETTOK", "http://h:15002/;token=SECRETTOK",
                                 "sc://h:15002/x;token=SECRETTOK", "sc://h:15002/;token=SECRETTOK;SECRETTOK"])
def test_a_bad_spark_remote_is_refused_without_its_token(tmp_path, url):
    """Spark Connect's parser quoted the URL in its error ("Port could not be cast to integer value as
    '1;token=…'"), which the CLI and the run's failure event then showed."""
    from pyspark.sql.connect.client import DefaultChannelBuilder

    with pytest.raises(Exception, match="."):
        DefaultChannelBuilder(url).endpoint  # Spark itself refuses it
    with pytest.raises(ValueError, match="SPARK_REMOTE is not a Spark Connect URL") as exc:
        Settings.from_env(env={"SNDS_HOME": str(tmp_path), "SPARK_REMOTE": url})
    assert "SECRETTOK" not in str(exc.value)


def test_printed_settings_hold_no_spark_connect_token(tmp_path):
    """A printed Settings (a log line, a traceback with its local variables) showed SPARK_REMOTE whole, token
    included."""
    url = "sc://h.azuredatabricks.net:443/;use_ssl=true;token=dapiSECRET"
    settings = Settings.from_env(env={"SNDS_HOME": str(tmp_path), "SPARK_REMOTE": url})
    assert settings.spark_remote == url
    assert "dapiSECRET" not in repr(settings) and "dapiSECRET" not in str(settings)


@pytest.mark.parametrize("url", ["sc://localhost", "sc://127.0.0.1:15002", "sc://h.azuredatabricks.net:443/;use_ssl=true;"
                                 "token=dapi123;x-databricks-cluster-id=0123-abc"])
def test_spark_connect_urls_are_accepted(tmp_path, url):
    from pyspark.sql.connect.client import DefaultChannelBuilder

    DefaultChannelBuilder(url).endpoint
    assert Settings.from_env(env={"SNDS_HOME": str(tmp_path), "SPARK_REMOTE": url}).spark_remote == url


@pytest.mark.parametrize("variable", ["SNDS_HOME", "DAGSTER_HOME"])
def test_a_home_that_is_a_file_is_named(tmp_path, variable):
    """It said "[Errno 17] File exists: '…'", naming neither the setting nor what to fix."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    for folder in (afile, afile / "below"):
        home = folder if variable == "SNDS_HOME" else tmp_path / "h"
        proc = _snds(["ingest", "2024-01-15"], home, extra_env={variable: str(folder)})
        assert proc.returncode == EXIT_ERROR
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert lines == [f"snds: error: {variable} {folder} must be a folder, but {afile} is a file"], proc.stderr


@pytest.mark.parametrize("name", ["home?x", "home%41"])
def test_a_dagster_home_that_would_read_as_a_url_is_refused(tmp_path, name):
    """Dagster's SQLite storage reads DAGSTER_HOME inside a URL: `home?x` put the instance's database in a file
    `home` beside it, and the run failed on "no such table: event_logs". Refused, naming the setting; nothing made."""
    home = tmp_path / name
    proc = _snds(["ingest", "2024-01-15"], home)
    assert proc.returncode == EXIT_ERROR
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"snds: error: DAGSTER_HOME {home / 'dagster'} holds '?' or a '%' and two hex digits, which "
                     "Dagster's SQLite storage reads as part of a URL (its database would be written elsewhere): "
                     "choose a folder without them"], proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command, variable", [(["ingest", "2024-01-15"], "SNDS_LANDING"),
                                               (["extract", "demo-covid"], "SNDS_PROJECTS"),
                                               (["report", "2024-01-15"], "SNDS_LAKE"),
                                               (["report", "demo-covid"], "SNDS_PROJECTS")])
def test_a_folder_a_command_reads_that_is_a_file_is_named(tmp_path, command, variable):
    """It said "[Errno 20] Not a directory: '…/2024-01-15/manifest.json'" (ingest), "no request file …" (extract)
    or went down the unexpected error's path (report), naming neither the setting nor what to fix."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    proc = _snds(command, tmp_path / "home", extra_env={variable: str(afile)})
    assert proc.returncode == EXIT_ERROR
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"snds: error: {variable} {afile} must be a folder, but {afile} is a file"], proc.stderr


def test_a_folder_left_to_its_default_is_named_by_the_home_setting(tmp_path):
    """A lake left under SNDS_HOME that is a file was named "SNDS_LAKE", a variable the user never set."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "lake").write_text("x")
    proc = _snds(["report", "2024-01-15"], home)
    assert proc.returncode == EXIT_ERROR
    assert proc.stderr.strip().splitlines() == [f"snds: error: SNDS_HOME {home / 'lake'} must be a folder, but "
                                                f"{home / 'lake'} is a file"], proc.stderr


def test_ui_can_be_stopped_when_started_in_the_background(tmp_path, monkeypatch):
    """`snds ui &` from a script inherits an ignored SIGINT through exec; `dagster dev` maps SIGTERM to its SIGINT
    handler, so it ignored SIGTERM too (seen: still serving after kill -TERM)."""
    import signal

    class Exec(BaseException):
        pass

    seen = {}

    def execvpe(*args):
        seen["sigint"] = signal.getsignal(signal.SIGINT)
        raise Exec

    monkeypatch.setenv("SNDS_HOME", str(tmp_path))
    monkeypatch.setattr(os, "execvpe", execvpe)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(Exec):
            main(["ui", "--port", "3419"])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen["sigint"] == signal.SIG_DFL


def test_ui_does_not_print_dagsters_supersession_warning(tmp_path, monkeypatch):
    """`dagster dev` printed "SupersessionWarning: Function `dev_command` is superseded ... Use 'dg dev'" on the
    terminal at every start: the environment it is started with filters that one warning, and keeps the user's."""

    class Exec(BaseException):
        pass

    seen = {}

    def execvpe(*args):
        seen["env"] = args[2]
        raise Exec

    monkeypatch.setenv("SNDS_HOME", str(tmp_path))
    monkeypatch.setenv("PYTHONWARNINGS", "error::ResourceWarning")
    monkeypatch.setattr(os, "execvpe", execvpe)
    with pytest.raises(Exec):
        main(["ui", "--port", "3423"])
    assert seen["env"]["PYTHONWARNINGS"].startswith("error::ResourceWarning,")
    warn = ("import warnings; from dagster._utils.warnings import SupersessionWarning as W; "
            "warnings.warn('Function `dev_command` is superseded and its usage is discouraged. Use dg dev.', W); "
            "warnings.warn('another warning', W)")
    shown = subprocess.run([sys.executable, "-c", warn], env=seen["env"], capture_output=True, text=True, check=True)
    assert "dev_command" not in shown.stderr and "another warning" in shown.stderr


def test_an_unreachable_instance_database_is_one_line(tmp_path):
    """The production dagster.yaml with PostgreSQL down: Dagster's root-logger warnings ("Retrying failed database
    connection", four lines each) went to stderr before the error line; they belong in the details log."""
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text((REPOSITORY / "deploy" / "dagster.yaml").read_text())
    from snds_assets_tests.reception_delivery import Delivery, csv_bytes

    delivery = Delivery(tmp_path / "landing", "2024-01-15", {})
    delivery.add("IR_IMB_R", "IR_IMB_R.csv", csv_bytes(["BEN_NIR_PSA", "BEN_RNG_GEM", "IMB_ALD_NUM", "IMB_ALD_DTD"],
                                                        [["A" * 16 + "1", "1", "5", "2020-01-15"]]))
    delivery.write()
    env = {"DAGSTER_HOME": str(dagster_home), "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "1",
           "DAGSTER_PG_DB": "dagster", "DAGSTER_PG_USER": "dagster", "DAGSTER_PG_PASSWORD": "PGSECRET",
           "DAGSTER_LOGS_STORAGE_ACCOUNT": "acct", "DAGSTER_LOGS_CONTAINER": "logs"}
    proc = _snds(["ingest", "2024-01-15"], tmp_path, extra_env=env)
    assert proc.returncode == EXIT_ERROR
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("snds: error:"), proc.stderr
    assert "Retrying failed database connection" in (tmp_path / "logs" / "snds-error.log").read_text()
    assert "PGSECRET" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("kind, target, text, damage", [
    ("deliveries", "2024-01-15", "{bad", "JSONDecodeError"),
    ("deliveries", "2024-01-16", '{"status": "accepted"}', "KeyError: 'delivery_id'"),
    ("projects", "p1", "[1]", "AttributeError"),
])
def test_a_damaged_report_is_named(tmp_path, kind, target, text, damage):
    """It said "Expecting property name enclosed in double quotes…" or "'delivery_id'", naming no file."""
    report = tmp_path / "lake" / "reports" / kind / f"{target}.json"
    report.parent.mkdir(parents=True)
    report.write_text(text)
    proc = _snds(["report", target], tmp_path)
    assert proc.returncode == EXIT_ERROR
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{report} is not a readable report ({damage}" in lines[0], proc.stderr
    assert "details in" not in lines[0]


@pytest.mark.parametrize("url, address", [("sc://spark.internal", ("spark.internal", 15002)),
                                          ("sc://10.0.0.5:443/;use_ssl=true;token=SECRETTOK", ("10.0.0.5", 443)),
                                          ("sc://[::1]:7/;token=SECRETTOK", ("::1", 7))])
def test_the_probed_address_is_the_one_spark_connect_dials(url, address):
    """Spark Connect's own parser: port 15002 when the URL gives none, IPv6 brackets taken off."""
    from snds_assets.spark import spark_connect_address

    assert spark_connect_address(url) == address


def _no_proxy(monkeypatch):
    for var in ("grpc_proxy", "https_proxy", "http_proxy", "no_grpc_proxy", "no_proxy"):
        monkeypatch.delenv(var, raising=False)


def start_grpc_server():
    """A gRPC server with no service on 127.0.0.1 (no TLS): it completes gRPC's handshake, as Spark Connect does.
    Returns the server and its port."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@pytest.fixture
def grpc_port():
    server, port = start_grpc_server()
    yield port
    server.stop(0)


class ConnectProxy(TcpService):
    """An HTTP CONNECT proxy on 127.0.0.1, as gRPC uses one: it tunnels each connection to the address asked for,
    and answers 502 when nothing listens there. ``asked`` lists the addresses asked for."""

    def __init__(self):
        self.asked: list[str] = []
        super().__init__()

    def handle(self, conn) -> None:
        import threading

        threading.Thread(target=self._tunnel, args=(conn,), daemon=True).start()

    def _tunnel(self, client) -> None:
        import socket
        import threading

        request = b""
        while b"\r\n\r\n" not in request:
            data = client.recv(4096)
            if not data:
                client.close()
                return
            request += data
        address = request.split(b" ")[1].decode()
        self.asked.append(address)
        host, _, port = address.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=2)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        upstream.settimeout(None)

        def pipe(src, dst) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                src.close()
                dst.close()

        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)


def test_a_grpc_server_passes_the_probe(monkeypatch):
    """A server that completes gRPC's handshake passes; the same port once the server stopped does not (the probe
    did dial it)."""
    from snds_assets.spark import SparkConnectUnreachable, check_spark_connect

    _no_proxy(monkeypatch)
    server, port = start_grpc_server()
    try:
        assert check_spark_connect(f"sc://127.0.0.1:{port}") is None
    finally:
        server.stop(0).wait()
    with pytest.raises(SparkConnectUnreachable, match="connection refused"):
        check_spark_connect(f"sc://127.0.0.1:{port}")


def test_a_server_that_does_not_answer_is_told_within_the_timeout(monkeypatch):
    """A host that drops packets: a listening socket whose accept queue is full drops new connections' SYNs. "no
    answer within 1 s" is the probe's own timeout expiring: without it, the system's would end the connection
    attempt after about two minutes of retries, "connection timed out"."""
    import socket

    from snds_assets.spark import SparkConnectUnreachable, check_spark_connect

    _no_proxy(monkeypatch)
    with socket.socket() as server, socket.socket() as queued:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        queued.connect(("127.0.0.1", port))  # fills the queue: never accepted
        with pytest.raises(SparkConnectUnreachable) as exc:
            check_spark_connect(f"sc://127.0.0.1:{port}/;token=SECRETTOK", timeout=1)
    assert str(exc.value) == (f"SPARK_REMOTE: no Spark Connect server answers at 127.0.0.1:{port} (no answer within "
                              "1 s); is the server started, and is that its address?")


def test_an_unknown_host_is_named(monkeypatch):
    from snds_assets.spark import SparkConnectUnreachable, check_spark_connect

    _no_proxy(monkeypatch)
    with pytest.raises(SparkConnectUnreachable, match=r"^SPARK_REMOTE: the host no-such-host\.invalid of the Spark "
                       r"Connect server cannot be resolved \(.+\); is its name right\?$") as exc:
        check_spark_connect("sc://no-such-host.invalid:15002/;token=SECRETTOK")
    assert "SECRETTOK" not in str(exc.value)


def test_the_probe_goes_through_grpc_s_proxy(monkeypatch, grpc_port):
    """gRPC dials the HTTP CONNECT proxy of grpc_proxy / https_proxy / http_proxy unless no_grpc_proxy / no_proxy
    lists the host: the probe dials what gRPC dials, shows the proxy's host and port only, and sets up gRPC's
    connection through it, as the client would."""
    from snds_assets.spark import SparkConnectUnreachable, check_spark_connect

    _no_proxy(monkeypatch)
    up, down = grpc_port, free_port()
    monkeypatch.setenv("https_proxy", f"http://user:PROXYSECRET@127.0.0.1:{down}")
    with pytest.raises(SparkConnectUnreachable) as exc:
        check_spark_connect(f"sc://127.0.0.1:{up}/;token=SECRETTOK")
    assert str(exc.value) == (f"SPARK_REMOTE: the proxy 127.0.0.1:{down} of https_proxy, through which gRPC "
                              f"reaches 127.0.0.1:{up}, does not answer (connection refused); is the proxy up, "
                              "or should 127.0.0.1 be listed in no_grpc_proxy or no_proxy?")
    for bypass in ("localhost,127.0.0.1", "127.0.0.0/8", " .0.0.1"):
        monkeypatch.setenv("no_proxy", bypass)
        check_spark_connect(f"sc://127.0.0.1:{up}")  # direct, to the gRPC server
    monkeypatch.setenv("no_grpc_proxy", "")  # set, even empty: no_proxy is not read
    with pytest.raises(SparkConnectUnreachable, match="the proxy"):
        check_spark_connect(f"sc://127.0.0.1:{up}")
    monkeypatch.setenv("grpc_proxy", "")  # the first one set wins, and empty means no proxy
    check_spark_connect(f"sc://127.0.0.1:{up}")
    proxy = ConnectProxy()
    try:
        monkeypatch.setenv("grpc_proxy", f"http://127.0.0.1:{proxy.port}")
        check_spark_connect(f"sc://127.0.0.1:{up}")  # tunnelled to the server
        with pytest.raises(SparkConnectUnreachable) as exc:
            check_spark_connect(f"sc://127.0.0.1:{down}/;token=SECRETTOK")  # the proxy answers, the server is down
    finally:
        proxy.close()
    assert proxy.asked == [f"127.0.0.1:{up}", f"127.0.0.1:{down}"]
    assert str(exc.value) == (f"SPARK_REMOTE: the proxy 127.0.0.1:{proxy.port} of grpc_proxy answers, but no Spark "
                              "Connect (gRPC) connection over TLS (use_ssl or a token in SPARK_REMOTE) could be set "
                              f"up through it to 127.0.0.1:{down}; is the server up behind the proxy, and does it use "
                              "TLS as SPARK_REMOTE says?")


def test_ui_starts_when_the_spark_connect_server_does_not_answer(tmp_path, monkeypatch):
    """The UI is useful without Spark (reports, checks, run history): only ingest, extract and demo check."""
    import socket

    class Exec(BaseException):
        pass

    def execvpe(*args):
        raise Exec

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(os, "execvpe", execvpe)
    saved = dict(os.environ)  # main exports the settings to os.environ for Dagster
    try:
        os.environ.update({"SNDS_HOME": str(tmp_path), "SPARK_REMOTE": f"sc://127.0.0.1:{port}"})
        with pytest.raises(Exec):
            main(["ui", "--port", "3421"])
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.parametrize("value", ["0", "-3"])
def test_generate_names_the_rows_per_file_option(tmp_path, value):
    """The message named the generator's field (rows_per_file), not the option the user typed."""
    proc = _snds(["generate", "--rows-per-file", value, "--patients", "1", "--tables", "IR_IMB_R"], tmp_path)
    assert proc.returncode == EXIT_ERROR, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--rows-per-file must be at least 1" in lines[0], proc.stderr


def test_generate_names_the_out_option_when_it_is_a_file(tmp_path):
    """It said "[Errno 20] Not a directory: '<file>/<ID>'", not which option to fix."""
    (tmp_path / "afile").write_text("x")
    proc = _snds(["generate", "--out", str(tmp_path / "afile" / "sub"), "--patients", "1", "--tables", "IR_IMB_R"],
                 tmp_path)
    assert proc.returncode == EXIT_ERROR, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"--out {tmp_path / 'afile' / 'sub'} must be a folder, but {tmp_path / 'afile'} is a file" \
        in lines[0], proc.stderr


@pytest.mark.parametrize("where", ["JAVA_HOME", "PATH"])
def test_ingest_without_java_says_what_to_install_or_set(tmp_path, where):
    """Without Java (JAVA_HOME pointing nowhere, or no java on PATH) the run failed with spark-class's shell errors
    on stderr and "PySparkRuntimeError: [JAVA_GATEWAY_EXITED] Java gateway process exited before sending its port
    number", which says neither what is missing nor what to set."""
    assert _snds(["generate", "--delivery-id", "2024-01-15", "--patients", "1", "--tables", "IR_IMB_R"],
                 tmp_path).returncode == 0
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {"JAVA_HOME": str(tmp_path / "jdk")} if where == "JAVA_HOME" else {"JAVA_HOME": "", "PATH": str(empty)}
    proc = _snds(["ingest", "2024-01-15"], tmp_path, env)
    assert proc.returncode == EXIT_ERROR
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    expected = (f"JAVA_HOME={tmp_path / 'jdk'} holds no bin/java: set JAVA_HOME" if where == "JAVA_HOME"
                else "no java on PATH and JAVA_HOME is not set: Spark needs Java 17 or later; install it")
    assert lines[0].startswith(f"snds: error: {expected}") and "details in" not in lines[0], lines[0]


def test_ingest_with_an_old_java_says_which_and_what_is_needed(tmp_path):
    """A Java older than 17 (JAVA_HOME, or the java on PATH) started and failed to load Spark 4's classes: the run
    ended with PySpark's "Java gateway process exited before sending its port number", which names neither the
    Java found nor the version needed. Its ``release`` file says which it is; no JVM is started to find out."""
    assert _snds(["generate", "--delivery-id", "2024-01-15", "--patients", "1", "--tables", "IR_IMB_R"],
                 tmp_path).returncode == 0
    jdk = tmp_path / "jdk-11"
    (jdk / "bin").mkdir(parents=True)
    java = jdk / "bin" / "java"
    java.write_text("#!/bin/sh\necho 'java must not be started' >&2\nexit 1\n")
    java.chmod(0o755)
    (jdk / "release").write_text('IMPLEMENTOR="Eclipse Adoptium"\nJAVA_VERSION="11.0.22"\n')
    linked = tmp_path / "bin"
    linked.mkdir()
    (linked / "java").symlink_to(java)  # as /usr/bin/java links to the installation through /etc/alternatives
    for env, where in (({"JAVA_HOME": str(jdk)}, f"JAVA_HOME={jdk}"),
                       ({"JAVA_HOME": "", "PATH": f"{linked}:{os.environ['PATH']}"}, f"the java on PATH ({linked / 'java'})")):
        proc = _snds(["ingest", "2024-01-15"], tmp_path, env)
        assert proc.returncode == EXIT_ERROR, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert lines == [f"snds: error: {where} is Java 11: Spark needs Java 17 or later; install it (Debian: "
                         "apt-get install openjdk-17-jre-headless) and set JAVA_HOME to it"], proc.stderr


def test_java_version_reads_the_release_file(tmp_path):
    from snds_assets.spark import java_version

    def installed(name: str, release: str | None, bin_dir: str = "bin") -> Path:
        java = tmp_path / name / bin_dir / "java"
        java.parent.mkdir(parents=True)
        java.touch()
        if release is not None:
            (tmp_path / name / "release").write_text(release)
        return java

    assert java_version(installed("jdk8", 'JAVA_VERSION="1.8.0_292"\n', "jre/bin")) == 8
    assert java_version(installed("jdk17", 'IMPLEMENTOR="Debian"\nJAVA_VERSION="17.0.15"\n')) == 17
    assert java_version(installed("jdk25", 'JAVA_VERSION="25"\n')) == 25
    assert java_version(installed("unknown", None)) is None
    assert java_version(installed("odd", "JAVA_VERSION=\n")) is None


def test_a_java_without_release_file_is_asked_its_version(tmp_path, monkeypatch):
    """An installation without ``release`` file passed the check whatever its version: the run then failed with
    PySpark's "Java gateway process exited", naming neither the Java found nor the version needed."""
    from snds_assets.spark import JavaMissing, check_java, reported_java_version

    def java(name: str, says: str) -> Path:
        path = tmp_path / name / "bin" / "java"
        path.parent.mkdir(parents=True)
        path.write_text(f"#!/bin/sh\necho '{says}' >&2\n")
        path.chmod(0o755)
        return path

    assert reported_java_version(java("jdk8", 'java version "1.8.0_292"')) == 8
    assert reported_java_version(java("jdk17", 'openjdk version "17.0.15" 2025-04-15')) == 17
    assert reported_java_version(java("mute", "")) is None
    monkeypatch.setenv("JAVA_HOME", str(java("jdk11", 'openjdk version "11.0.22" 2024-01-16').parent.parent))
    with pytest.raises(JavaMissing, match=r"jdk11 is Java 11: Spark needs Java 17 or later"):
        check_java()
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk17"))
    check_java()


def test_ui_refuses_a_port_already_taken(tmp_path, monkeypatch, capsys):
    """`snds ui --port P` with P taken announced the UI on P, then ran `dagster dev`, whose webserver failed to
    bind while its daemon ran on for ever (sensors included): whatever held P answered at the address given."""
    import socket

    monkeypatch.setenv("SNDS_HOME", str(tmp_path))
    monkeypatch.setattr(os, "execvpe", lambda *a: pytest.fail(f"dagster dev started with {a[1]}"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["ui", "--port", str(port)]) == EXIT_ERROR
    out, err = capsys.readouterr()
    assert err == (f"snds: error: port {port} of 127.0.0.1 is already in use (another snds ui, or another program, "
                   "listens there): stop it, or choose another --port\n")
    assert "Dagster UI on" not in out


def test_a_spark_analysis_error_reaches_the_details_log_not_the_terminal(spark, tmp_path, capfd):
    """PySpark logs every analysis error it raises, its whole Java stack in one JSON line, to stderr through loggers
    of its own that do not propagate: a delivered column that made curation's query ambiguous printed that stack
    above the one-line message. While a command runs, those records go to the details log."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    from snds_assets.cli import details_log, pyspark_errors_to_details_log

    settings = Settings.from_env(env={}, home=str(tmp_path))
    capfd.readouterr()
    with pyspark_errors_to_details_log(settings):
        with pytest.raises(AnalysisException):
            spark.range(1).select(F.col("NO_SUCH_COLUMN")).collect()
        with pytest.raises(AnalysisException):
            spark.range(1).selectExpr("NO_SUCH_EXPR + 1").collect()
    err = capfd.readouterr().err
    assert "NO_SUCH" not in err and "QueryContextLogger" not in err, err
    logged = details_log(settings.home).read_text()
    assert "NO_SUCH_COLUMN" in logged and "NO_SUCH_EXPR" in logged
    with pytest.raises(AnalysisException):  # outside a command, PySpark's own handlers again
        spark.range(1).select(F.col("AFTER_THE_COMMAND")).collect()
    assert "AFTER_THE_COMMAND" not in details_log(settings.home).read_text()


@pytest.mark.parametrize("status, code", [("accepted", 0), ("rejected", 1)])
def test_delivery_report_exit_status_follows_its_verdict(snds_env, capsys, status, code):
    """SPEC §4 for `snds report DELIVERY_ID`: 1 when the delivery was rejected, and the summary names the failed
    checks of each table."""
    checks = [{"name": "checksum", "passed": True}, {"name": "row_count", "passed": status == "accepted"},
              {"name": "orphaned_children", "severity": "WARN", "passed": False}]
    report = snds_env / "lake" / "reports" / "deliveries" / "2024-01-15.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"delivery_id": "2024-01-15", "status": status, "tables": {"IR_BEN_R": {
        "family": "IR_BEN_R", "status": status, "rows_manifest": 5, "rows_read": 4, "rows_curated": 4,
        "rows_rejected": 0, "checks": checks}}}))
    assert main(["report", "2024-01-15"]) == code
    out = capsys.readouterr().out
    assert f"delivery 2024-01-15: {status.upper()}" in out
    assert ("failed: row_count, orphaned_children (WARN)" in out) is (status == "rejected")
    assert "checksum" not in out and ("failed: orphaned_children (WARN)" in out) is (status == "accepted")


def _failing_command(monkeypatch, exc: BaseException) -> None:
    from snds_assets import commands

    def cmd_report(settings, args, log_format):
        raise exc

    monkeypatch.setattr(commands, "cmd_report", cmd_report)


def test_an_interrupted_command_exits_2(snds_env, monkeypatch, capsys):
    """Ctrl-C is not "done and accepted": a script chaining `snds ingest && snds extract` must stop."""
    _failing_command(monkeypatch, KeyboardInterrupt())
    assert main(["report", "2024-01-15"]) == EXIT_ERROR
    assert capsys.readouterr().err == "snds: interrupted\n"


def test_generate_stopped_by_sigterm_leaves_no_delivery_folder(tmp_path):
    """SIGTERM (`timeout`, a service manager) killed `snds generate` outright, before any Dagster run maps it to
    Ctrl-C: its half-written delivery stayed in the landing zone, and the same id was then refused."""
    landing = tmp_path / "landing"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SNDS_", "DAGSTER_HOME"))}
    env["SNDS_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen([sys.executable, "-m", "snds_assets.cli", "generate", "--out", str(landing),
                             "--delivery-id", "2024-05-01", "--patients", "200000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not any(landing.glob("2024-05-01/*/*")):
        time.sleep(0.1)
    assert proc.poll() is None, "the generation ended before it had written a file"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (EXIT_ERROR, "snds: interrupted\n")
    assert not (landing / "2024-05-01").exists() and not list(landing.glob("*"))


def test_a_user_error_of_several_lines_is_told_on_one(snds_env, monkeypatch, capsys):
    from snds_assets.cli import UsageError

    _failing_command(monkeypatch, UsageError("projects/p1.yaml: mapping values are not allowed here\n  in line 3"))
    assert main(["report", "2024-01-15"]) == EXIT_ERROR
    assert capsys.readouterr().err == ("snds: error: projects/p1.yaml: mapping values are not allowed here in line 3\n")
    assert not (snds_env / "logs" / "snds-error.log").exists()  # a user error has no traceback to keep


def test_an_unexpected_error_points_to_its_traceback(snds_env, monkeypatch, capsys):
    """SPEC §4: one line, never a traceback, on the terminal; the traceback is kept in the details log, which the
    line names."""
    _failing_command(monkeypatch, RuntimeError("the reception report of 2024-01-15 was not written"))
    assert main(["report", "2024-01-15"]) == EXIT_ERROR
    log = snds_env / "logs" / "snds-error.log"
    assert capsys.readouterr().err == (f"snds: error: the reception report of 2024-01-15 was not written "
                                       f"(details in {log})\n")
    text = log.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in text and "RuntimeError: the reception report" in text


# --- Settings bounds, empty variables and the child environment (mutation audit) --------------------------------
@pytest.mark.parametrize("value", ["0", "1", "0.5"])
def test_reject_tolerance_bounds_are_accepted(tmp_path, value):
    """0 (no rejected row tolerated) and 1 are shares too."""
    settings = Settings.from_env(env={"SNDS_HOME": str(tmp_path), "SNDS_REJECT_TOLERANCE": value})
    assert settings.reject_tolerance == float(value)


@pytest.mark.parametrize("value", ["0", "-1", "1.5", ""])
def test_parallel_families_must_be_at_least_one(tmp_path, value):
    env = {"SNDS_HOME": str(tmp_path), "SNDS_PARALLEL_FAMILIES": value}
    if value == "":  # an empty variable is unset: the default
        assert Settings.from_env(env=env).parallel_families == 2
        return
    with pytest.raises(ValueError, match=f"SNDS_PARALLEL_FAMILIES must be a positive integer, got '{value}'"):
        Settings.from_env(env=env)


@pytest.mark.parametrize("variable, value, message", [
    # s3:// was taken, and a run failed saying to install s3fs; "~nouser" said "Could not determine home directory."
    ("SNDS_LAKE", "s3://bucket/lake", "SNDS_LAKE must be a folder or an Azure URL (az://, abfss://), got 's3://"),
    ("SNDS_LANDING", "gs://bucket/in", "SNDS_LANDING must be a folder or an Azure URL (az://, abfss://), got 'gs://"),
    ("SNDS_HOME", "~nouser-x/h", "SNDS_HOME '~nouser-x/h': ~nouser-x names no user of this machine"),
    ("SNDS_PROJECTS", "~nouser-x", "SNDS_PROJECTS '~nouser-x': ~nouser-x names no user of this machine"),
    # requests are read as local files: "az://c/p" was read as the folder "az:/c/p", and the sensor saw none
    ("SNDS_PROJECTS", "az://c/projects",
     "SNDS_PROJECTS must be a local folder (the project requests the hub approved), got 'az://c/projects'"),
])
def test_a_folder_setting_that_cannot_be_used_is_named(tmp_path, variable, value, message):
    env = {"SNDS_HOME": str(tmp_path), variable: value}
    with pytest.raises(ValueError, match=re.escape(message)):
        Settings.from_env(env=env)
    assert Settings.from_env(env={"SNDS_HOME": str(tmp_path), "SNDS_LAKE": "abfss://c@a.dfs.core.windows.net/l"}).lake


def test_report_of_a_lake_not_reached_says_why_not_to_build_it_again(tmp_path, monkeypatch):
    """An az:// lake without credentials: `snds report` said the report was "not a readable report ... build it again
    with snds ingest", which would not have helped."""
    for name in [k for k in os.environ if k.startswith("AZURE_")]:
        monkeypatch.delenv(name)
    proc = _snds(["report", "2024-01-15"], tmp_path / "home", extra_env={"SNDS_LAKE": "az://container/lake"})
    assert proc.returncode == EXIT_ERROR
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("snds: error: cannot open az://container/lake/reports/"), lines
    assert "set AZURE_STORAGE_CONNECTION_STRING" in lines[0] and "build it again" not in lines[0]


def test_an_empty_variable_is_unset(tmp_path):
    s = Settings.from_env(env={"SNDS_HOME": str(tmp_path), "SNDS_LAKE": "", "SPARK_REMOTE": "", "SNDS_SCHEMAS": ""})
    assert s.lake == str(tmp_path / "lake") and s.spark_remote is None
    assert s.schemas == str(PACKAGED_SCHEMAS.resolve())


def test_a_child_process_environment_gives_back_the_same_settings(tmp_path, monkeypatch):
    """``as_env`` is what Dagster runs read: every setting, relative nomenclatures made absolute, survives it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "noms").mkdir()
    s = Settings.from_env(env={"SNDS_HOME": str(tmp_path / "h"), "SNDS_NOMENCLATURES": "noms",
                               "SNDS_REJECT_TOLERANCE": "0", "SNDS_PARALLEL_FAMILIES": "5",
                               "SPARK_REMOTE": "sc://h:15002/;token=t"})
    assert s.nomenclatures == str(tmp_path / "noms")
    assert (s.reject_tolerance, s.parallel_families) == (0.0, 5)
    assert Settings.from_env(env=s.as_env()) == s


@pytest.mark.parametrize("command", [["ingest", "2024-02-01"], ["extract", "demo-covid"], ["demo"],
                                     ["generate", "--delivery-id", "2024-02-01", "--patients", "1"]])
def test_a_missing_nomenclature_folder_is_named_before_anything_runs(tmp_path, command):
    """SNDS_NOMENCLATURES was first read by the run's checks: Spark started, a failed run was recorded (which took the
    delivery's "received" mark away) and the message named a folder, not the setting."""
    from snds_assets_tests.reception_delivery import Delivery, csv_bytes

    if command[0] != "generate":
        delivery = Delivery(tmp_path / "landing", "2024-02-01", {})
        delivery.add("IR_IMB_R", "IR_IMB_R.csv", csv_bytes(["BEN_NIR_PSA", "BEN_RNG_GEM", "IMB_ALD_NUM", "IMB_ALD_DTD"],
                                                            [["A" * 16 + "1", "1", "5", "2020-01-15"]]))
        delivery.write()
    missing = tmp_path / "none"
    proc = _snds(command, tmp_path, {"SNDS_NOMENCLATURES": str(missing)})
    assert proc.returncode == EXIT_ERROR, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"snds: error: SNDS_NOMENCLATURES {missing}: nomenclature folder not found"], proc.stderr
    assert not (tmp_path / "dagster" / "history").exists() and not (tmp_path / "lake").exists()
    assert command[0] != "generate" or not (tmp_path / "landing").exists()


def test_a_nomenclature_file_is_named_and_the_option_too(tmp_path):
    afile = tmp_path / "noms.csv"
    afile.write_text("x")
    proc = _snds(["--nomenclatures", str(afile), "ingest", "2024-02-01"], tmp_path)
    assert proc.returncode == EXIT_ERROR
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"snds: error: --nomenclatures {afile} must be a folder, but {afile} is a file"], proc.stderr


@pytest.mark.parametrize("lake", ["", "abfss://lake@acct.dfs.core.windows.net/snds"])
def test_a_bad_lake_auth_is_named_whatever_the_lake(tmp_path, lake):
    """SNDS_LAKE_AUTH=bogus was read only when Spark reached an abfss:// lake: with a local lake it was silently
    ignored, and a typo was found on the day the lake moved to Azure."""
    env = {"SNDS_HOME": str(tmp_path), "SNDS_LAKE": lake}
    with pytest.raises(ValueError, match="SNDS_LAKE_AUTH must be one of oauth, sas, key, msi, cluster .*got 'bogus'"):
        Settings.from_env(env={**env, "SNDS_LAKE_AUTH": "bogus"})
    for mode in ("", "key", " MSI "):  # as azure.abfs_conf reads it
        Settings.from_env(env={**env, "SNDS_LAKE_AUTH": mode})


def test_a_bad_lake_auth_stops_a_command_at_once(tmp_path):
    proc = _snds(["ingest", "2024-02-01"], tmp_path, {"SNDS_LAKE_AUTH": "bogus"})
    assert proc.returncode == EXIT_ERROR
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "SNDS_LAKE_AUTH must be one of" in lines[0] and "details in" not in lines[0], lines


@pytest.mark.parametrize("variable, command", [
    ("SNDS_HOME", ["generate", "--patients", "1", "--tables", "IR_IMB_R"]), ("SNDS_HOME", ["ingest", "2024-01-15"]),
    ("DAGSTER_HOME", ["ingest", "2024-01-15"]),
    ("SNDS_LAKE", ["ingest", "2024-01-15"]), ("SNDS_LANDING", ["generate", "--patients", "1", "--tables", "IR_IMB_R"]),
    ("--projects", ["demo"]), ("--out", ["generate", "--patients", "1", "--tables", "IR_IMB_R"]),
])
def test_a_folder_that_cannot_be_created_is_named(tmp_path, variable, command):
    """It said "[Errno 2] No such file or directory: '/proc/nope'", naming neither the setting nor what was made.
    `snds generate` makes only its landing folder, under SNDS_HOME when SNDS_LANDING is not set."""
    home = "/proc/nope/below"
    folder = f"{home}/landing" if variable == "SNDS_HOME" and command[0] == "generate" else home
    if variable.startswith("--"):
        argv = [variable, home, *command] if variable == "--projects" else [*command, variable, home]
        proc = _snds(argv, tmp_path)
    else:
        proc = _snds(command, tmp_path / "h" if variable == "SNDS_HOME" else tmp_path, extra_env={variable: home})
    assert proc.returncode == EXIT_ERROR, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"snds: error: {variable} {folder} cannot be created: /proc/nope: No such file or directory"], \
        proc.stderr
    assert not (tmp_path / "lake").exists() and not (tmp_path / "landing").exists()


def test_the_demos_ui_command_names_the_snds_it_ran_when_path_lacks_it(tmp_path, monkeypatch):
    """`make demo` runs .venv/bin/snds: the command it printed began with a bare `snds`, which the shell of a
    newcomer who never activated the virtual environment does not find."""
    from snds_assets.commands import ui_command

    snds = tmp_path / "venv" / "bin" / "snds"
    snds.parent.mkdir(parents=True)
    snds.write_text("#!/bin/sh\n")
    snds.chmod(0o755)
    settings = Settings.from_env(env={}, home=str(tmp_path / "home"))
    monkeypatch.setattr(sys, "argv", [str(snds), "demo"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert ui_command(settings, {}).split()[-4:] == [str(snds), "--home", str(tmp_path / "home"), "ui"]
    monkeypatch.setenv("PATH", f"{snds.parent}:/usr/bin:/bin")  # the environment activated
    assert ui_command(settings, {}).split()[-4:] == ["snds", "--home", str(tmp_path / "home"), "ui"]


@pytest.mark.parametrize("argv, shell", [
    ([], {}),
    (["--home", "{tmp}/demo", "--lake", "{tmp}/demo lake"], {}),
    ([], {"DAGSTER_HOME": "{tmp}/prod dagster", "SNDS_LAKE": "{tmp}/prod/lake", "SNDS_LANDING": "{tmp}/prod/landing"}),
    (["--home", "{tmp}/demo home"], {"SNDS_HOME": "{tmp}/prod", "DAGSTER_HOME": "{tmp}/prod/dagster"}),
])
def test_the_demo_tells_the_ui_command_that_opens_its_own_instance(tmp_path, monkeypatch, capsys, argv, shell):
    """The demo ends with the UI to open; it said "make ui (or: snds ui)" whatever its --home and --lake, and in a
    shell with DAGSTER_HOME or SNDS_LAKE set (which the demo ignores) that command opened another instance and lake.
    The command printed, run in the same shell, resolves the demo's settings."""
    import shlex

    from snds_assets import commands
    from snds_assets.cli import resolve_settings

    monkeypatch.chdir(tmp_path)
    argv = [a.format(tmp=tmp_path) for a in argv]
    shell = {k: v.format(tmp=tmp_path) for k, v in shell.items()}
    for var, value in shell.items():
        monkeypatch.setenv(var, value)
    demo = resolve_settings(build_parser().parse_args([*argv, "demo"]))
    for step in ("cmd_generate", "cmd_ingest", "cmd_extract", "write_demo_project"):  # the chain itself is not tested
        monkeypatch.setattr(commands, step, lambda *a: 0)
    with monkeypatch.context() as m:
        m.setattr(os, "environ", dict(os.environ))  # main exports the demo's settings
        assert main([*argv, "demo"]) == 0
    [hint] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  the UI")]
    command = hint.split(None, 2)[2].partition(", then http://")[0]
    if not argv and not shell:
        assert command == "make ui (or: snds ui)"
        return
    assert command.startswith(("snds ", "DAGSTER_HOME=")), command
    words = shlex.split(command)
    for word in words[:words.index("snds")]:
        monkeypatch.setenv(*word.split("=", 1))
    ui = resolve_settings(build_parser().parse_args(words[words.index("snds") + 1:]))
    assert ui == demo, command


def test_a_table_not_curated_reads_so_in_the_summary(tmp_path):
    """A delivered table the catalog does not know (or whose curation failed) has no counts in the report (null:
    nothing was curated, its rows_reconciled check says so); the summary printed "read None curated None"."""
    from snds_assets.commands import _delivery_summary

    settings = Settings.from_env(env={}, home=str(tmp_path))
    unknown = {"family": None, "status": "rejected", "mode": None, "rows_manifest": 3, "rows_read": None,
               "rows_curated": None, "rows_rejected": None,
               "checks": [{"name": "rows_reconciled", "severity": "ERROR", "passed": False}]}
    known = {**unknown, "family": "IR_BEN_R", "status": "accepted", "rows_read": 3, "rows_curated": 3,
             "rows_rejected": 0, "checks": []}
    lines = _delivery_summary(settings, {"delivery_id": "2024-06-04", "status": "rejected",
                                         "tables": {"XX_UNKNOWN_R": unknown, "IR_BEN_R": known}}).splitlines()
    assert lines[1].split() == ["IR_BEN_R", "accepted", "read", "3", "curated", "3", "rejected", "0"]
    assert lines[2].split() == ["XX_UNKNOWN_R", "rejected", "not", "curated", "failed:", "rows_reconciled"]
    assert "None" not in "\n".join(lines)


def test_a_new_instance_is_made_by_one_command_at_a_time(tmp_path, monkeypatch):
    """Two commands on a brand-new DAGSTER_HOME both created its SQLite tables, and the second failed with "table
    alembic_version already exists". A command waits while another holds the lock, then finds the storage made;
    once it is made, no command takes the lock nor opens the instance for it."""
    import fcntl

    from snds_assets import cli

    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(cli.INSTANCE_CONFIG)
    code = "import sys; from snds_assets.cli import create_instance_once; create_instance_once(sys.argv[1])"
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    lock_path = home / ".snds-instance.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        waiting = subprocess.Popen([sys.executable, "-c", code, str(home)], env=env)
        deadline = time.monotonic() + 120  # a hang guard only: the command starts in seconds
        while not _waits_for_lock(lock_path, waiting.pid):
            assert waiting.poll() is None, f"the command ended ({waiting.returncode}) without waiting for the lock"
            assert time.monotonic() < deadline, "the command never asked for the lock"
            time.sleep(0.1)
        assert not (home / cli.INSTANCE_MADE).exists() and not list(home.rglob("*.db"))  # blocked before making it
    assert waiting.wait(timeout=120) == 0 and (home / cli.INSTANCE_MADE).exists()
    assert sorted(p.name for p in home.rglob("*.db"))  # the storage the first command made

    import dagster

    def opened(*args, **kwargs):
        raise AssertionError("the instance was opened again")

    monkeypatch.setattr(dagster.DagsterInstance, "get", opened)
    cli.create_instance_once(str(home))


def _waits_for_lock(path: Path, pid: int) -> bool:
    """Whether the kernel lists process ``pid`` waiting ("->", a blocked request) for a lock on ``path``."""
    inode = str(path.stat().st_ino)
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields:
            waiter = fields[fields.index("->") + 1:]  # FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> ...
            if waiter[3] == str(pid) and waiter[4].rsplit(":", 1)[-1] == inode:
                return True
    return False
