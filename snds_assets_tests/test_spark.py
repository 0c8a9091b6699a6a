"""The local Spark session's Py4J connections answer without Nagle's delay, in every Python thread."""
from __future__ import annotations

import threading

import pytest

from snds_assets.spark import JOB_DESCRIPTION, _connection_socket, answer_promptly, described


def test_every_thread_gets_answers_without_delay(spark):
    jvm = spark.sparkContext._jvm
    seen: dict[str, bool] = {}

    def ask() -> None:
        jvm.java.lang.System.nanoTime()  # a new thread's first call opens its own connection
        seen["thread"] = bool(_connection_socket(jvm).getTcpNoDelay())

    worker = threading.Thread(target=ask)
    worker.start()
    worker.join()
    assert seen == {"thread": True}
    assert _connection_socket(jvm).getTcpNoDelay()


def test_a_long_answer_arrives_whole(spark):
    """Answers over Py4J's 8 KB write size come in pieces: the whole text must still arrive, once."""
    jvm = spark.sparkContext._jvm
    text = "".join(f"{i}," for i in range(20_000))
    assert jvm.java.lang.StringBuilder(text).toString() == text


def test_a_session_is_tuned_once(spark):
    client = spark.sparkContext._gateway._gateway_client
    give_back = client._give_back_connection
    answer_promptly(spark)
    assert client._give_back_connection is give_back


def test_a_local_session_shuffles_into_two_partitions_per_core(monkeypatch, tmp_path):
    """Four shuffle partitions, a 2-core laptop's, were every local session's: a 32-core machine ran its key checks'
    joins on four of its cores."""
    from snds_assets import spark as spark_mod

    monkeypatch.setattr(spark_mod, "usable_cores", lambda: 16)
    tasks = {m: spark_mod.local_parallelism(m).get("spark.sql.shuffle.partitions")
             for m in ("local[*]", "local[3]", "local[2, 4]", "local", "spark://head:7077")}
    assert tasks == {"local[*]": "32", "local[3]": "6", "local[2, 4]": "4", "local": "4", "spark://head:7077": None}
    assert spark_mod.local_parallelism("local[*]")["spark.default.parallelism"] == "32"

    monkeypatch.undo()
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(spark_mod, "CGROUP_CPU_MAX", quota)
    monkeypatch.setattr(spark_mod.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    quota.write_text("150000 100000\n")  # a container allowed 1.5 cores: Java counts 2
    assert spark_mod.usable_cores() == 2
    quota.write_text("max 100000\n")
    assert spark_mod.usable_cores() == 8


def test_key_hashes_are_shuffled_into_a_number_of_partitions():
    """Databricks takes ``spark.sql.shuffle.partitions=auto``: the key checks read it as a number."""
    from snds_assets.curation.keys import shuffle_partitions

    class Session:
        def __init__(self, value):
            self.conf = type("Conf", (), {"get": lambda _, key, default=None: value})()

    assert [shuffle_partitions(Session(v)) for v in ("8", "auto", " 12 ", "0")] == [8, 200, 12, 200]


FAILED_WRITE = """
import sys
from pyspark.sql import functions as F
from snds_assets.spark import build_session

try:
    build_session("local[1]").range(3).select(F.raise_error(F.lit("boom")).alias("v")).write.parquet(sys.argv[1])
except Exception as exc:
    print(type(exc).__name__)
"""


def test_spark_errors_are_one_line_each_on_stderr(tmp_path):
    """A failed Spark write (a full disk, a folder refused) printed each failed task's Java stack trace on the
    command line, some 200 lines of "\\tat org.apache…" around the one-line message of SPEC §4: Spark's own log
    lines stay one line each (the trace is in the run's failure, hence in the details log)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", FAILED_WRITE, str(tmp_path / "out")], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.stdout.strip() == "SparkRuntimeException"
    assert " spark ERROR " in done.stderr  # Spark did say so
    assert "\tat " not in done.stderr and "USER_RAISED_EXCEPTION" not in done.stderr, done.stderr[:2000]


# A run's Spark step interrupted by Ctrl-C (SIGINT to the process group, as a terminal sends it to `snds ui` and the
# run workers it started). With "unfiltered", the root logger's filters are removed first.
INTERRUPTED_STEP = """
import logging, os, signal, sys, threading
from dagster import DagsterInstance, Definitions, asset, define_asset_job
from snds_assets.spark import build_session

if sys.argv[1] == "unfiltered":
    logging.getLogger().filters.clear()


@asset
def step():
    session = build_session("local[1]")
    threading.Timer(3, lambda: os.killpg(0, signal.SIGINT)).start()
    session.range(10 ** 12).selectExpr("sum(id % 7)").collect()  # minutes of work, and no overflow


job = Definitions(assets=[step], jobs=[define_asset_job("j")]).resolve_job_def("j")
result = job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
print("run succeeded" if result.success else "run interrupted", file=sys.stderr, flush=True)
"""


@pytest.mark.parametrize("mode", ["ours", "unfiltered"])
def test_ctrl_c_on_a_spark_step_prints_no_py4j_traceback(tmp_path, mode):
    """Ctrl-C on `snds ui` while a run's Spark step ran: the run worker printed Py4J's "Exception while sending
    command." and "KeyboardInterrupt while sending command.", each with its traceback, on the terminal (PySpark's
    signal handler cancels the jobs through Py4J while the step waits on it). Unfiltered, they are printed."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])),
           "DAGSTER_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_STEP, mode], capture_output=True, text=True, env=env,
                          timeout=300, start_new_session=True)
    assert "run interrupted" in done.stderr, done.stderr[-3000:]
    noise = done.stderr.count("while sending command.")  # "Exception while ..." and "KeyboardInterrupt while ..."
    assert noise == (2 if mode == "unfiltered" else 0), done.stderr[-3000:]


TUNED_SESSION = """
from snds_assets.spark import build_session

session = build_session("local[1]", conf={"spark.sql.adaptive.enabled": "false"})
for key in ("spark.sql.shuffle.partitions", "spark.driver.memory", "spark.sql.adaptive.enabled", "spark.ui.enabled"):
    print(session.conf.get(key))
"""


def test_a_local_session_takes_the_operators_spark_defaults(tmp_path, monkeypatch):
    """Settings given to the session builder win over spark-defaults.conf: a large machine's operator could not give
    the session more than our 4 GiB of driver memory. The settings the file names are now left to it; the Spark
    resource's ``conf`` still wins over both."""
    import os
    import subprocess
    import sys

    from snds_assets.spark import local_settings

    (tmp_path / "spark-defaults.conf").write_text(
        "# tuned for this machine\nspark.driver.memory   1g\nspark.sql.shuffle.partitions=7\n! a comment too\n")
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    settings = local_settings("local[*]", {"spark.ui.enabled": "true"})
    assert "spark.driver.memory" not in settings and "spark.sql.shuffle.partitions" not in settings
    assert (settings["spark.default.parallelism"], settings["spark.ui.enabled"]) == ("4", "true")

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", TUNED_SESSION], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["7", "1g", "false", "false"]


def test_settings_sent_to_the_jvm_reach_no_debug_log(spark, caplog):
    """Py4J logged every command it sent the JVM at DEBUG, a local session's ABFS key or SAS token among them: an
    operator who turned Python's logs to DEBUG found the secret in them."""
    import logging

    caplog.set_level(logging.DEBUG)
    spark.conf.set("spark.snds.test.secret", "SECRET-4f2c")
    assert spark.conf.get("spark.snds.test.secret") == "SECRET-4f2c"
    spark.conf.unset("spark.snds.test.secret")
    assert "SECRET-4f2c" not in caplog.text


def test_interrupting_a_session_cancels_the_queries_of_other_threads(spark):
    """A family's thread was left running its Spark write after the run's interruption (Dagster's signal handling
    keeps PySpark's out): ``interrupt`` cancels it, wherever it runs."""
    from snds_assets.spark import interrupt

    outcome = []

    def long_query():
        try:
            spark.range(0, 10**13, numPartitions=2).selectExpr("sum(id % 7)").collect()
            outcome.append("finished")
        except Exception as exc:  # noqa: BLE001 - what Spark raises for a cancelled query
            outcome.append(type(exc).__name__)

    thread = threading.Thread(target=long_query)
    thread.start()
    try:
        while thread.is_alive() and not spark.sparkContext.statusTracker().getActiveJobsIds():
            threading.Event().wait(0.1)
        interrupt(spark)
        thread.join(120)
    finally:
        spark.sparkContext.setLogLevel("ERROR")
    assert not thread.is_alive() and outcome and outcome[0] != "finished", outcome


# Python writes a folder named with an accent, then Spark reads and writes under it.
ACCENTED_LAKE = """
import sys
from pathlib import Path
from snds_assets.spark import build_session

folder = Path(sys.argv[1], "lac_santé")
folder.mkdir()
(folder / "delivered.csv").write_text("A;B\\n1;é\\n", encoding="utf-8")
spark = build_session("local[1]")
rows = spark.read.options(sep=";", header="true").csv(str(folder / "delivered.csv"))
rows.write.parquet(str(folder / "curated"))
print(sorted(tuple(r) for r in spark.read.parquet(str(folder / "curated")).collect()))
"""


def test_a_lake_named_with_an_accent_is_found_by_spark_under_a_c_locale(tmp_path):
    """Under ``LC_ALL=C`` (a container without locale) Python names files in UTF-8 and Java 17 in ASCII: Spark did not
    find the files the archive had written under ``lac_santé`` (PATH_NOT_FOUND); its JVM is started in C.UTF-8."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "LC_ALL": "C", "LANG": "C",
           "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    env.pop("PYTHONUTF8", None)
    done = subprocess.run([sys.executable, "-c", ACCENTED_LAKE, str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[('1', 'é')]"


def test_the_jvm_gets_a_utf8_locale_only_where_python_and_java_would_name_files_differently(monkeypatch):
    import locale
    import sys

    from snds_assets.spark import jvm_locale

    for filesystem, codeset, expected in [("utf-8", "ANSI_X3.4-1968", {"LC_ALL": "C.UTF-8"}), ("utf-8", "UTF-8", {}),
                                          ("iso8859-1", "ISO-8859-1", {}), ("ascii", "ANSI_X3.4-1968", {})]:
        monkeypatch.setattr(sys, "getfilesystemencoding", lambda: filesystem)
        monkeypatch.setattr(locale, "nl_langinfo", lambda _: codeset)
        assert jvm_locale() == expected, (filesystem, codeset)


def test_a_local_session_keeps_only_its_last_queries_in_the_status_store(spark):
    """No UI reads a local session's status store: at Spark's default it kept 1000 queries with their plans and
    metrics, heap a long reception or test run needs for its broadcasts."""
    import time

    store = spark._jsparkSession.sharedState().statusStore()
    for i in range(40):
        spark.range(i + 1).selectExpr("sum(id)").collect()
    deadline = time.monotonic() + 30
    while store.executionsCount() > 20 and time.monotonic() < deadline:  # trimmed by a listener thread
        time.sleep(0.2)
    assert store.executionsCount() <= 20


def test_a_description_names_a_threads_jobs_and_is_put_back(spark):
    """``described`` blocks nest and each gives back the description it found; two threads (two families curated
    at once) keep their own; a session without a Spark context (Spark Connect) is left alone."""
    context = spark.sparkContext
    seen: dict[str, str | None] = {}

    def family(name: str) -> None:
        with described(spark, f"delivery D: {name} curated write"):
            seen[name] = context.getLocalProperty(JOB_DESCRIPTION)

    with described(spark, "outer"):
        with described(spark, "inner"):
            assert context.getLocalProperty(JOB_DESCRIPTION) == "inner"
            threads = [threading.Thread(target=family, args=(n,)) for n in ("ER_PRS_F", "IR_BEN_R")]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert context.getLocalProperty(JOB_DESCRIPTION) == "outer"
    assert context.getLocalProperty(JOB_DESCRIPTION) is None
    assert seen == {"ER_PRS_F": "delivery D: ER_PRS_F curated write", "IR_BEN_R": "delivery D: IR_BEN_R curated write"}

    class Connect:  # no ``_sc``
        pass

    with described(Connect(), "nothing to name"):
        pass
