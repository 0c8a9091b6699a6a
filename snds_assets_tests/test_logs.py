"""The CLI's loggers: progress lines and JSON events, never failing a run (a failed check included)."""
import io
import json

import pytest
from dagster import (
    AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, AssetSpec, ConfigurableResource,
    DagsterInstance,
    Definitions, MaterializeResult, asset, define_asset_job, multi_asset,
)

from snds_assets.logs import FAILURE_EVENTS, ProgressBar, json_logger, progress_logger


@asset(check_specs=[AssetCheckSpec("c", asset="a")])
def a(context):
    context.log.info("[1/1] doing a")
    return MaterializeResult(check_results=[AssetCheckResult(check_name="c", passed=False, severity=AssetCheckSeverity.WARN)])


DEFS = Definitions(assets=[a], jobs=[define_asset_job("j")], loggers={"progress": progress_logger, "json": json_logger})


def _run(name, **tags):
    return DEFS.resolve_job_def("j").execute_in_process(
        run_config={"loggers": {name: {"config": {"log_level": "DEBUG"}}}},
        instance=DagsterInstance.ephemeral(), raise_on_error=False, tags=tags)


def test_progress_lines(capsys):
    assert _run("progress").success
    err = capsys.readouterr().err
    assert "… a" in err and "check a:c failed (WARN)" in err and "✓ a" in err
    assert "j [" in err and "0/1  doing a" in err and "100% 1/1  done" in err


def test_progress_bar_redraws_in_place_on_a_terminal():
    stream = _Terminal()
    bar = ProgressBar(stream, width=10, columns=lambda: 100)
    bar.update("reception", 0, 4, "curating IR_BEN_R")
    bar.line("10:00:00  ! a warning")
    bar.update("reception", 2, 4, "curating ER_PRS_F")
    bar.update("reception", 4, 4)
    out = stream.getvalue()
    assert out.count("\n") == 2  # the warning and the finished bar: the rest is redrawn in place
    assert "\r\033[Kreception [#####.....]  50% 2/4  curating ER_PRS_F" in out
    assert out.endswith("reception [##########] 100% 4/4\n")
    assert "a warning\nreception [..........]   0% 0/4" in out  # the bar comes back under the line


def test_progress_bar_prints_plain_lines_elsewhere():
    stream = io.StringIO()
    bar = ProgressBar(stream, width=10)
    for done in range(0, 1001, 7):
        bar.update("patients", done, 1000)
    bar.update("patients", 1000, 1000)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert len(lines) == 11 and lines[-1].startswith("patients [##########] 100% 1000/1000")


def test_progress_bar_fits_the_terminal_width():
    """A bar longer than the terminal wraps, and each redraw in place would leave its first line behind: the bar
    narrows first, then what is cut is the end of the detail."""
    detail = "receiving IR_IBA_R (ER_PRS_F under way)"
    stream = _Terminal()
    ProgressBar(stream, width=28, columns=lambda: 60).update("reception", 1, 4, detail)
    assert stream.getvalue().split("\r\033[K")[-1] == f"reception [##........]  25% 1/4  {detail}"[:59]
    ProgressBar(stream, width=28, columns=lambda: 80).update("reception", 1, 4, detail)
    assert stream.getvalue().split("\r\033[K")[-1] == f"reception [####.............]  25% 1/4  {detail}"
    ProgressBar(stream, width=28, columns=lambda: 120).update("reception", 1, 4, detail)
    assert stream.getvalue().split("\r\033[K")[-1] == f"reception [#######.....................]  25% 1/4  {detail}"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_events_one_object_per_line(capsys):
    result = _run("json", **{"dagster/partition": "2024-03-01"})  # the run's partition, as Dagster tags it
    assert result.success
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    kinds = {e["event"] for e in events}
    assert {"STEP_START", "ASSET_CHECK_EVALUATION", "STEP_SUCCESS", "log"} <= kinds
    assert all(e["run_id"] == result.run_id for e in events)
    assert all(e["partition"] == "2024-03-01" for e in events)
    assert any(e["asset"] == "a" and e["event"] == "STEP_START" for e in events)


@asset
def broken():
    raise ValueError("SNDS_SPARK_LOG_LEVEL is not a level")


def test_a_failed_step_is_told_by_its_cause(capsys):
    """The CLI's error line and progress line name the user's exception, not Dagster's wrapper of it."""
    from snds_assets.logs import _failure_message

    defs = Definitions(assets=[broken], jobs=[define_asset_job("k")], loggers={"progress": progress_logger})
    result = defs.resolve_job_def("k").execute_in_process(
        run_config={"loggers": {"progress": {"config": {"log_level": "DEBUG"}}}},
        instance=DagsterInstance.ephemeral(), raise_on_error=False)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert _failure_message(failure) == "ValueError: SNDS_SPARK_LOG_LEVEL is not a level"
    assert "✗ broken: ValueError: SNDS_SPARK_LOG_LEVEL is not a level" in capsys.readouterr().err


@pytest.mark.parametrize("interruption", ["dagster", "spark"])
def test_an_interrupted_step_is_told_so(capsys, interruption):
    """Ctrl-C during a step printed "✗ receive: dagster._core.errors.DagsterExecutionInterruptedError" (or PySpark's
    KeyboardInterrupt) above the command's own line, which says what to run next."""
    from dagster._core.errors import DagsterExecutionInterruptedError

    @asset
    def receive():
        raise DagsterExecutionInterruptedError() if interruption == "dagster" else KeyboardInterrupt

    defs = Definitions(assets=[receive], jobs=[define_asset_job("k")], loggers={"progress": progress_logger})
    defs.resolve_job_def("k").execute_in_process(
        run_config={"loggers": {"progress": {"config": {"log_level": "DEBUG"}}}},
        instance=DagsterInstance.ephemeral(), raise_on_error=False)
    err = capsys.readouterr().err
    assert "✗ receive: interrupted\n" in err and "DagsterExecutionInterruptedError" not in err
    assert "KeyboardInterrupt" not in err


def test_a_run_whose_spark_connect_server_went_away_is_a_one_line_user_error():
    """The command checks the server before its run; were it to stop answering by the time the run's session is
    built, the command's error is still the probe's line (a user error: no traceback in the details log), not
    "snds_assets.spark.SparkConnectUnreachable: …"; any other failure stays an unexpected one."""
    from snds_assets.cli import _is_user_error
    from snds_assets.commands import run_error
    from snds_assets.spark import SparkConnectUnreachable

    line = "SPARK_REMOTE: no Spark Connect server answers at h:15002 (connection refused); is the server started?"

    @asset
    def unreachable():
        raise SparkConnectUnreachable(line)

    defs = Definitions(assets=[unreachable, broken], jobs=[define_asset_job("u", selection=["unreachable"]),
                                                           define_asset_job("b", selection=["broken"])])
    for job, kind, message, user in (("u", SparkConnectUnreachable, line, True),
                                     ("b", RuntimeError, "ValueError: SNDS_SPARK_LOG_LEVEL is not a level", False)):
        run = defs.resolve_job_def(job).execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
        error = run_error(run)
        assert type(error) is kind and str(error) == f"run {run.run_id} failed: {message}"
        assert _is_user_error(error) is user


def test_an_exception_of_ours_is_told_by_its_message_alone():
    """A damaged lake's run said "run … failed: snds_assets.curation.state.DamagedPartition: curated partition …":
    our messages say what to fix, their module path says nothing; a library's exception keeps its class."""
    from snds_assets.commands import run_error
    from snds_assets.curation.state import DamagedPartition

    line = "curated partition x holds 1 rows where the report says 2: run snds ingest 2024-01-05 to curate it again"

    @asset
    def damaged():
        raise DamagedPartition(line)

    run = Definitions(assets=[damaged], jobs=[define_asset_job("d")]).resolve_job_def("d").execute_in_process(
        instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert str(run_error(run)) == f"run {run.run_id} failed: {line}"


def test_an_error_of_ours_fails_the_step_described_by_its_message():
    """In the UI a failed step read "Error occurred while executing op ..." over Dagster's frames, the manifest's
    problems beneath as a cause: ours fail it as a Failure described by their message, the error as its cause (the
    command line and the JSON logs read it there, unchanged); a bug's exception stays as Dagster wraps it."""
    from snds_assets.commands import run_error
    from snds_assets.logs import failure_cause
    from snds_assets.problems import told_as_failure
    from snds_assets.reception.manifest import ManifestError

    line = "manifest.json is not valid JSON (Expecting value: line 1 column 2 (char 1))"

    @asset
    @told_as_failure
    def landing():
        raise ManifestError(line)

    @asset
    @told_as_failure
    def bug():
        raise KeyError("files")

    @multi_asset(specs=[AssetSpec("first"), AssetSpec("second")])
    @told_as_failure
    def outputs(context: AssetExecutionContext):
        yield MaterializeResult(asset_key="first")
        raise ManifestError(line)

    defs = Definitions(assets=[landing, bug, outputs], jobs=[
        define_asset_job("m", selection=["landing"]), define_asset_job("b", selection=["bug"]),
        define_asset_job("o", selection=["first", "second"])])
    run = defs.resolve_job_def("m").execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
    failure = next(e for e in run.all_events if e.event_type_value == "STEP_FAILURE")
    error = failure.event_specific_data.error
    assert error.cls_name == "Failure" and error.message.strip().endswith(f"Failure: {line}")
    assert failure.event_specific_data.user_failure_data.description == line
    assert failure_cause(failure).cls_name == "ManifestError"
    assert str(run_error(run)) == f"run {run.run_id} failed: {line}"
    run = defs.resolve_job_def("b").execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
    failure = next(e for e in run.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.event_specific_data.error.cls_name == "DagsterExecutionStepExecutionError"
    run = defs.resolve_job_def("o").execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
    failure = next(e for e in run.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.event_specific_data.error.cls_name == "Failure" and failure_cause(failure).cls_name == "ManifestError"
    assert [e.asset_key.to_user_string() for e in run.all_events if e.event_type_value == "ASSET_MATERIALIZATION"] == [
        "first"]


@pytest.mark.parametrize("error", ["StateChanged", "NotArchived"])
def test_a_state_moved_under_an_extract_or_a_family_never_archived_fails_in_one_line(error):
    """Two errors of a UI user's selection that say what to do (extract the project again; materialise the raw
    family first) showed "Error occurred while executing op" over a stack trace: they are ours, told as a Failure."""
    from snds_assets.problems import told_as_failure
    from snds_assets.provision.run import StateChanged
    from snds_assets.reception.archive import NotArchived

    line = {"StateChanged": "the current state of IR_BEN_R changed since the cohort: extract the project again",
            "NotArchived": "IR_BEN_R of 2026-01-15 was never archived: materialise raw/IR_BEN_R first"}[error]
    cls = {"StateChanged": StateChanged, "NotArchived": NotArchived}[error]

    @asset
    @told_as_failure
    def selected():
        raise cls(line)

    defs = Definitions(assets=[selected], jobs=[define_asset_job("s", selection=["selected"])])
    run = defs.resolve_job_def("s").execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
    failure = next(e for e in run.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.event_specific_data.error.cls_name == "Failure"
    assert failure.event_specific_data.user_failure_data.description == line


@multi_asset(name="receive", specs=[AssetSpec(["raw", "T"]), AssetSpec(["curated", "T"])],
             check_specs=[AssetCheckSpec("file_present", asset=["raw", "T"]), AssetCheckSpec("type", asset=["curated", "T"])])
def receive():
    for stage in ("raw", "curated"):
        yield MaterializeResult(asset_key=[stage, "T"])
    yield AssetCheckResult(asset_key=["raw", "T"], check_name="file_present", passed=True)
    yield AssetCheckResult(asset_key=["curated", "T"], check_name="type", passed=False)


def test_json_check_events_name_the_checked_asset(capsys):
    """A check result of a step that makes several assets (the reception's ``receive``) names the asset checked,
    not the step; a failed check is told at its severity, not at Dagster's DEBUG."""
    defs = Definitions(assets=[receive], jobs=[define_asset_job("r")], loggers={"json": json_logger})
    result = defs.resolve_job_def("r").execute_in_process(
        run_config={"loggers": {"json": {"config": {"log_level": "DEBUG"}}}},
        instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    checks = {e["asset"]: e["level"] for e in events if e["event"] == "ASSET_CHECK_EVALUATION"}
    assert checks == {"raw/T": "DEBUG", "curated/T": "ERROR"}  # a failed check at its severity
    assert {e["asset"] for e in events if e["event"] == "ASSET_MATERIALIZATION"} == {"raw/T", "curated/T"}


class Py4JJavaError(Exception):
    """Stands for py4j's: its message is the whole Java stack trace (recorded from a write to a full disk)."""


JAVA_TRACE = """An error occurred while calling o514.parquet.
: org.apache.spark.SparkException: [TASK_WRITE_FAILED] Task failed while writing rows to file:/lake/_staging/\
curation/2024-01-15/ER_PHA_F/89667ec296f64349bd6bcdbb4e582dc1/curated. SQLSTATE: 58030
\tat org.apache.spark.sql.errors.QueryExecutionErrors$.taskFailedWhileWritingRowsError(QueryExecutionErrors.scala:823)
\tat org.apache.spark.sql.execution.datasources.FileFormatDataWriter.enrichWriteError(FileFormatDataWriter.scala:92)
""" + "\tat org.apache.spark.rdd.RDD.iterator(RDD.scala:338)\n" * 40 + """\
Caused by: org.apache.parquet.util.AutoCloseables$ParquetCloseResourceException: Unable to close resource
\tat org.apache.parquet.util.AutoCloseables.uncheckedClose(AutoCloseables.java:85)
Caused by: org.apache.hadoop.fs.FSError: java.io.IOException: No space left on device
\tat org.apache.hadoop.fs.RawLocalFileSystem$LocalFSFileOutputStream.write(RawLocalFileSystem.java:545)
\tSuppressed: org.apache.hadoop.fs.FSError: java.io.IOException: No space left on device
\t\tCaused by: java.io.IOException: No space left on device
\tCaused by: java.io.IOException: No space left on device
Caused by: java.io.IOException: No space left on device
\tat java.base/java.io.FileOutputStream.writeBytes(Native Method)
\t... 43 more
"""


def _spark_failure_line(trace: str, **tags: str) -> tuple[str, str]:
    """The run id and the one line told of a run whose step raised Py4J's error with ``trace``."""
    from snds_assets.commands import run_error

    @asset
    def spark_step():
        raise Py4JJavaError(trace)

    defs = Definitions(assets=[spark_step], jobs=[define_asset_job("s")])
    run = defs.resolve_job_def("s").execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False,
                                                       tags=tags)
    return run.run_id, str(run_error(run, "/lake"))


def test_a_spark_failure_is_told_by_its_root_cause():
    """A Spark write that failed on a full disk said "Py4JJavaError: An error occurred while calling o514.parquet.
    : org.apache.spark.SparkException: [TASK_WRITE_FAILED] Task failed while writing rows to file:… at org.apa",
    cut before the cause: the line now starts with what to fix, then the failed write."""
    run_id, line = _spark_failure_line(JAVA_TRACE)
    hint, _, cause = line.partition("; Spark failed: ")
    assert cause.startswith("java.io.IOException: No space left on device (org.apache.spark.SparkException: "
                            "[TASK_WRITE_FAILED] Task failed while writing rows to file:/lake/_staging/curation/"
                            "2024-01-15/ER_PHA_F/")
    assert "\tat " not in line and "Caused by" not in line
    # A full disk is said first, with where to look and what to run (the one line is cut after 400 characters).
    assert hint == (f"run {run_id} failed: a disk is full: free space where the lake is (/lake), in Spark's "
                    "scratch folder (spark.local.dir, /tmp by default) or DAGSTER_HOME, then run snds ingest "
                    "DELIVERY_ID again (its staged writes are removed; what it had published stays)")


OOM_TRACE = """An error occurred while calling o377.parquet.
: org.apache.spark.SparkException: Job aborted due to stage failure: Task 3 in stage 41.0 failed 1 times, most \
recent failure: Lost task 3.0 in stage 41.0 (TID 212) (127.0.0.1 executor driver): java.lang.OutOfMemoryError: Java \
heap space
\tat org.apache.spark.scheduler.DAGScheduler.failJobAndIndependentStages(DAGScheduler.scala:2898)
Caused by: java.lang.OutOfMemoryError: Java heap space
\tat java.base/java.util.Arrays.copyOf(Arrays.java:3537)
"""


def test_spark_out_of_memory_says_how_to_give_it_more():
    """Spark out of memory was told as "Job aborted due to stage failure …": the line now says what to set."""
    run_id, line = _spark_failure_line(OOM_TRACE, **{"snds/project": "p1"})
    assert line.startswith(f"run {run_id} failed: Spark ran out of memory: give it more (spark.driver.memory, 4g "
                           "by default, in the spark-defaults.conf of SPARK_CONF_DIR; on a cluster, its executors' "
                           "memory), then run snds extract p1 again (its staged writes are removed); Spark failed: "
                           "java.lang.OutOfMemoryError: Java heap space"), line
    assert "a disk is full" not in line


def test_a_spark_jvm_that_ended_under_the_run_is_told_as_such():
    """A Spark JVM killed under a run (the kernel's out-of-memory killer sends SIGKILL: no Java error) was told as
    "ConnectionRefusedError: [Errno 111] Connection refused"; the line now says what happened and what to run."""
    from py4j.protocol import Py4JNetworkError

    from snds_assets.commands import run_error

    for error in (ConnectionRefusedError(111, "Connection refused"),
                  Py4JNetworkError("Answer from Java side is empty")):
        @asset(name="spark_step")
        def spark_step():
            raise error

        defs = Definitions(assets=[spark_step], jobs=[define_asset_job("s")])
        run = defs.resolve_job_def("s").execute_in_process(
            instance=DagsterInstance.ephemeral(), raise_on_error=False,
            tags={"dagster/partition": "2024-01-15", "snds/delivery": "2024-01-15"})
        line = str(run_error(run, "/lake"))
        assert line.startswith(f"run {run.run_id} failed: Spark's JVM ended during the run (killed: by the kernel "
                               "when the machine ran short of memory, see dmesg, or by hand): run snds ingest "
                               "2024-01-15 again (its staged writes are removed); "), line


GONE_TRACE = """An error occurred while calling o72.count.
: org.apache.spark.SparkException: [FAILED_READ_FILE.FILE_NOT_EXIST] Encountered error while reading file \
file:///lake/curated/IR_BEN_R/delivery_id=2024-01-15/part-00002-a7c81d95-c000.snappy.parquet. File does not exist. \
It is possible the underlying files have been updated.
You can explicitly invalidate the cache in Spark by running 'REFRESH TABLE tableName' command in SQL or by recreating \
the Dataset/DataFrame involved. SQLSTATE: KD001
\tat org.apache.spark.sql.errors.QueryExecutionErrors$.fileNotExistError(QueryExecutionErrors.scala:882)
"""


def test_a_file_removed_while_a_run_read_it_says_what_to_run():
    """A reception alongside an extraction replaced a partition the extraction had listed: the line said only
    Spark's "File does not exist. It is possible the underlying files have been updated", nothing to do."""
    run_id, line = _spark_failure_line(GONE_TRACE, **{"snds/project": "p1"})
    assert line.startswith(f"run {run_id} failed: a file of the lake was removed while the run read it (a "
                           "reception running alongside replaced its partition, or the lake was changed by hand): run "
                           "snds extract p1 again, once that reception has ended; "), line
    assert "delivery_id=2024-01-15" in line


class HttpResponseError(Exception):
    """Stands for azure.core's, as a refused SAS token raises it in the middle of a run."""


def test_refused_azure_credentials_in_a_run_say_what_to_check():
    """A SAS token that expired while a reception archived its files: the run's line named neither the landing zone
    nor the variables holding its credentials."""
    from snds_assets.commands import run_error

    @asset
    def archive():
        raise HttpResponseError("Operation returned an invalid status 'This request is not authorized to perform "
                                "this operation.'\nErrorCode:AuthorizationPermissionMismatch")

    defs = Definitions(assets=[archive], jobs=[define_asset_job("s")])
    run = defs.resolve_job_def("s").execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False,
                                                       tags={"snds/delivery": "2024-01-15"})
    line = str(run_error(run, "/lake", "az://landing/cnam"))
    assert line.startswith(f"run {run.run_id} failed: Azure Storage refused the credentials for SNDS_LANDING "
                           "az://landing/cnam (AuthorizationPermissionMismatch): wrong, expired, or without the rights "
                           "needed; check AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with "
                           "AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN or, alone, an Azure identity; "), line


def test_the_details_log_holds_the_failed_steps_traceback(tmp_path, monkeypatch):
    """`snds ingest` on a full disk named the details log, which held only the command's own "RuntimeError: run …
    failed" raised in commands._run: not where the step failed nor, for Spark, the Java stack trace."""
    from snds_assets.cli import _write_traceback
    from snds_assets.commands import run_error

    @asset
    def spark_write():
        raise Py4JJavaError(JAVA_TRACE)

    defs = Definitions(assets=[spark_write], jobs=[define_asset_job("s")])
    run = defs.resolve_job_def("s").execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
    monkeypatch.setenv("SNDS_HOME", str(tmp_path))
    try:
        raise run_error(run)
    except RuntimeError as exc:
        log = _write_traceback(exc)
    text = open(log, encoding="utf-8").read()
    assert f"RuntimeError: run {run.run_id} failed" in text
    assert "in spark_write" in text and "raise Py4JJavaError(JAVA_TRACE)" in text  # the step's own frame
    assert "Caused by: java.io.IOException: No space left on device" in text


def test_a_partition_replaced_under_a_reader_is_told_as_such():
    """`snds extract` while `snds ingest` received again a delivery it reads: the swap deleted the files the
    extraction had listed, and the line said "Spark failed: java.io.FileNotFoundException: File file:…part-….parquet
    does not exist" only; it now says which partition was replaced and what to do."""
    from snds_assets.logs import java_failure

    gone = ("file:/lake/curated/IR_BEN_R/delivery_id=2024-05-01/"
            "part-00000-82145445-5cf5-4fa0-aee4-a5a4f66a9f08-c000.snappy.parquet")
    trace = ("An error occurred while calling o120.parquet.\n"
             ": org.apache.spark.SparkException: [FAILED_READ_FILE.CANNOT_READ_FILE_FOOTER] Encountered error while "
             f"reading file {gone}.\n\tat org.apache.spark.sql.errors.QueryExecutionErrors$.x(Q.scala:1)\n"
             f"Caused by: java.io.FileNotFoundException: File {gone} does not exist\n\tat org.apache.hadoop.fs.x(R.java:1)\n")
    line = java_failure(trace)
    assert line.startswith("the curated partition of delivery 2024-05-01 of IR_BEN_R was replaced while this run "
                           "read it (the delivery was received again meanwhile): run again once that reception has "
                           "ended"), line
    assert java_failure(trace.replace("/curated/", "/raw/")).startswith("Spark failed: java.io.FileNotFoundException")


def test_json_events_keep_their_level_and_the_message_as_logged(capsys):
    """An operator filters the JSON lines by level (a failed step is an ERROR) and reads the message as the step
    logged it, not Dagster's decorated line."""
    defs = Definitions(assets=[a, broken], jobs=[define_asset_job("m")], loggers={"json": json_logger})
    result = defs.resolve_job_def("m").execute_in_process(
        run_config={"loggers": {"json": {"config": {"log_level": "DEBUG"}}}},
        instance=DagsterInstance.ephemeral(), raise_on_error=False)
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    [failure] = [e for e in events if e["event"] == "STEP_FAILURE"]
    assert (failure["level"], failure["asset"], failure["run_id"]) == ("ERROR", "broken", result.run_id)
    # Why: Dagster's message says only that the step failed (a log shipper got nothing else).
    assert failure["error"] == {"class": "ValueError", "message": "ValueError: SNDS_SPARK_LOG_LEVEL is not a level"}
    assert not any("error" in e for e in events if e["event"] not in FAILURE_EVENTS)
    [logged] = [e for e in events if e["event"] == "log" and "doing a" in e["message"]]
    assert (logged["level"], logged["message"], logged["asset"]) == ("INFO", "[1/1] doing a", "a")


class Refusing(ConfigurableResource):
    def setup_for_execution(self, context) -> None:
        raise RuntimeError("another run (1234) is receiving delivery 2024-04-01")


@asset
def guarded(refusing: Refusing):
    return None


def test_a_run_refused_before_its_first_step_says_why(capsys):
    """A run that a resource refuses (another run holds its delivery) fails before any step: its only failure events
    are the resource's and the run's ("PIPELINE_FAILURE"), whose JSON lines said "An exception was thrown during
    execution." without the reason, the one log of a run the UI or a sensor started."""
    defs = Definitions(assets=[guarded], jobs=[define_asset_job("g")], loggers={"json": json_logger},
                       resources={"refusing": Refusing()})
    defs.resolve_job_def("g").execute_in_process(
        run_config={"loggers": {"json": {"config": {"log_level": "DEBUG"}}}},
        instance=DagsterInstance.ephemeral(), raise_on_error=False)
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    [run_failure] = [e for e in events if e["event"] == "PIPELINE_FAILURE"]
    assert run_failure["level"] == "ERROR"
    assert run_failure["error"] == {"class": "RuntimeError",
                                    "message": "RuntimeError: another run (1234) is receiving delivery 2024-04-01"}
    assert [e["event"] for e in events if "error" in e] == ["RESOURCE_INIT_FAILURE", "PIPELINE_FAILURE"]


def test_progress_lines_name_failed_checks_only(capsys):
    """A passed check is no line of the terminal's progress: "check …:file_present failed" would send the operator
    after a file that is fine."""
    defs = Definitions(assets=[receive], jobs=[define_asset_job("r")], loggers={"progress": progress_logger})
    result = defs.resolve_job_def("r").execute_in_process(
        run_config={"loggers": {"progress": {"config": {"log_level": "DEBUG"}}}},
        instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success
    err = capsys.readouterr().err
    assert "check curated/T:type failed (ERROR)" in err
    assert "file_present" not in err


def test_a_long_failure_is_cut_after_a_whole_word_and_says_so():
    """An abfss:// lake without credentials failed after Hadoop's retries with a message cut at 300 characters in
    the middle of the storage URL ("…, 403, HEAD, https://acct.dfs.core.win"), which read as another address and
    did not say it was cut."""
    from snds_assets.commands import run_error

    url = "https://acct.dfs.core.windows.net/lake/snds/raw/2024-01-15?upn=false&action=getStatus&timeout=90"
    trace = ("An error occurred while calling o88.parquet.\n: java.nio.file.AccessDeniedException: Operation failed\n"
             "\tat org.apache.hadoop.fs.azurebfs.AzureBlobFileSystem.x(A.java:1)\n"
             "Caused by: org.apache.hadoop.fs.azurebfs.contracts.exceptions.AbfsRestOperationException: Operation "
             "failed: \"Server failed to authenticate the request. Make sure the value of Authorization header is "
             f"formed correctly including the signature.\", 403, HEAD, {url}, rId: 0f6d0e8e-b01f-0071\n"
             "\tat org.apache.hadoop.fs.azurebfs.services.AbfsRestOperation.x(A.java:1)\n")

    @asset
    def abfss_write():
        raise Py4JJavaError(trace)

    defs = Definitions(assets=[abfss_write], jobs=[define_asset_job("z")])
    run = defs.resolve_job_def("z").execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
    detail = str(run_error(run)).partition(" failed: ")[2]
    assert detail.startswith("Spark failed: org.apache.hadoop.fs.azurebfs.contracts.exceptions."
                             "AbfsRestOperationException: Operation failed: \"Server failed to authenticate"), detail
    assert len(detail) <= 300 and detail.endswith("…"), detail
    assert url in detail or "https://" not in detail, detail


def test_a_long_error_line_is_cut_after_a_whole_word():
    from snds_assets.cli import _one_line

    line = _one_line(RuntimeError("word " * 100 + "https://acct.dfs.core.windows.net/lake/" + "x" * 50))
    assert len(line) <= 400 and line.endswith("word…"), line
    assert _one_line(RuntimeError("short\n  one")) == "short one"


def test_an_interrupted_run_is_told_as_such(tmp_path):
    """Ctrl-C during `snds ingest` said "run … failed: dagster._core.errors.DagsterExecutionInterruptedError", and
    pointed to the details log, as for an unexpected error."""
    import itertools
    import os
    import signal
    import time

    from snds_assets.cli import _is_user_error
    from snds_assets.commands import run_error

    @asset
    def interrupted():
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: Dagster turns it into an error of the step
        time.sleep(5)

    @asset
    def terminated():
        os.kill(os.getpid(), signal.SIGTERM)  # `timeout`, a service manager stopping it: Dagster maps it to SIGINT
        time.sleep(5)

    @asset
    def interrupted_in_spark():
        raise KeyboardInterrupt  # what PySpark's SIGINT handler raises once a Spark session is up (seen: "failed:
        # KeyboardInterrupt", pointing to the details log)

    defs = Definitions(assets=[interrupted, terminated, interrupted_in_spark],
                       jobs=[define_asset_job("i", selection=[interrupted]),
                             define_asset_job("t", selection=[terminated]),
                             define_asset_job("s", selection=[interrupted_in_spark])])
    for job, (tags, command) in itertools.product("its", (({"snds/delivery": "2024-02-01"}, "snds ingest 2024-02-01"),
                                                         ({"snds/project": "p1"}, "snds extract p1"))):
        run = defs.resolve_job_def(job).execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False,
                                                           tags=tags)
        error = run_error(run)
        assert str(error).startswith(
            f"run {run.run_id} interrupted (Ctrl-C or SIGTERM): its staged writes are removed"), error
        assert str(error).endswith(f"run {command} to finish it"), error
        assert "DagsterExecutionInterruptedError" not in str(error) and _is_user_error(error)
        assert "report withdrawn" in str(error), error
    # Stopped before it changed anything (the same manifest received again), the report stands: the line said it was
    # withdrawn while `snds report` said ACCEPTED.
    lake = tmp_path / "lake"
    (lake / "reports" / "deliveries").mkdir(parents=True)
    (lake / "reports" / "deliveries" / "2024-02-01.json").write_text("{}")
    run = defs.resolve_job_def("s").execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False,
                                                       tags={"snds/delivery": "2024-02-01"})
    error = str(run_error(run, str(lake)))
    assert "are in place and the delivery's report still in place, as the earlier run left it: run snds ingest " \
           "2024-02-01 to finish it" in error, error


def test_the_steps_a_step_waited_for_are_named_once():
    """A reception failing early printed "! Dependencies for step reports__reception failed: ['receive', 'receive',
    … (42 times)]. Not executing.": Dagster names a failed step once per input it feeds. The reports are outputs of
    the steps they follow now, but any step waiting for several outputs of another is named so."""
    import logging

    from snds_assets.logs import ProgressFormatter

    record = logging.LogRecord("snds_progress", logging.ERROR, "", 0, "", None, None)
    waited = ["receive"] * 42 + ["delivery", "receive"]
    record.dagster_meta = {"orig_message": f"Dependencies for step reports__reception failed: {waited} were not "
                                           "executed: ['a', 'b', 'a']. Not executing."}
    line = ProgressFormatter().format(record)
    assert line.endswith("! Dependencies for step reports__reception failed: ['receive', 'delivery'] "
                         "were not executed: ['a', 'b']. Not executing."), line


def test_the_checks_a_step_did_not_evaluate_are_counted_not_listed():
    """A check not evaluated gives no result, and Dagster's line for a step's outputs not yielded named each of
    them: some hundred output names on one terminal line after a reception. They are counted; a line naming an
    output that is not a check is printed as Dagster wrote it."""
    import logging

    from snds_assets.logs import ProgressFormatter

    def line(message: str) -> str:
        record = logging.LogRecord("snds_progress", logging.INFO, "", 0, "", None, None)
        record.dagster_meta = {"orig_message": message}
        return ProgressFormatter().format(record)

    names = {"curated__T_MCOaaUM_nomenclature", "curated__IR_BEN_R_primary_key_state", "projects__KI_CCI_R_in_period"}
    assert line(f"op 'receive' did not yield or return expected outputs {names}.").endswith(  # Dagster's full stop
        "    3 check(s) not evaluated, so without a result: each asset's materialisation says why "
        "(`checks not evaluated`)")
    other = f"op 'receive' did not yield or return expected outputs {names | {'curated__IR_BEN_R'}}"
    assert line(other).endswith(other)


def test_every_run_writes_its_events_as_json_lines_under_the_home(snds_env, monkeypatch):
    """JSON logs came only with `--log-format json` of a command: a run of the sensor, the UI or a backfill logged
    Dagster's text alone. The instance `snds` sets up hands every run's records to ``RunLogFiles``: a run with the
    commands' progress logger (no JSON asked) still writes ``<SNDS_HOME>/logs/runs/<RUN_ID>.jsonl``."""
    import hashlib
    from pathlib import Path

    from snds_assets.cli import prepare_environment
    from snds_assets.commands import _run as run_job
    from snds_assets.config import Settings
    from snds_assets.reception.assets import DELIVERY_KEY, REPORT_KEY

    settings = Settings.from_env()
    prepare_environment(settings)
    for key, value in settings.as_env().items():
        monkeypatch.setenv(key, value)
    folder = Path(settings.landing, "2026-11-15")
    folder.mkdir(parents=True)
    data = b"A;B\n1;2\n"
    (folder / "KI_CCI_R.csv").write_bytes(data)
    files = [{"path": "KI_CCI_R.csv", "rows": 1, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}]
    (folder / "manifest.json").write_text(json.dumps({"delivery_id": "2026-11-15",
                                                      "tables": [{"table": "KI_CCI_R", "files": files}]}))
    # The delivery and report steps only: no Spark. The table, never archived, is rejected.
    result = run_job(settings, "reception", "deliveries", "2026-11-15", [DELIVERY_KEY, REPORT_KEY], "text", {})
    [log] = Path(settings.home, "logs", "runs").iterdir()
    assert log.name == f"{result.run_id}.jsonl"
    events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert {e["run_id"] for e in events} == {result.run_id} and {e["partition"] for e in events} == {"2026-11-15"}
    kinds = [e["event"] for e in events]
    assert kinds[0] == "PIPELINE_START" and kinds[-1] == "PIPELINE_SUCCESS"
    [check] = [e for e in events if e["event"] == "ASSET_CHECK_EVALUATION"]
    assert check["asset"] == "reports/reception" and "delivery_accepted" in check["message"]
    assert any(e["event"] == "ASSET_MATERIALIZATION" and e["asset"] == "reports/reception" for e in events)


def test_a_run_log_that_cannot_be_written_is_told_once_and_fails_nothing(tmp_path, capsys):
    """A handler that raised would fail the run it logs: the run's events are in Dagster's event log anyway."""
    import logging

    from snds_assets.logs import RunLogFiles

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    handler = RunLogFiles(folder=str(blocker))
    for message in ("first", "second"):
        record = logging.LogRecord("dagster", logging.INFO, "", 0, message, None, None)
        record.dagster_meta = {"run_id": "r1", "job_tags": {"dagster/partition": "2026-11-15"}}
        handler.handle(record)
    [line] = capsys.readouterr().err.splitlines()  # once, and no traceback
    assert line.startswith(f"run r1: its JSON log {blocker}/r1.jsonl cannot be written (File exists)"), line
    assert line.endswith("its events stay in Dagster's event log"), line
