"""The local Spark session's Py4J connections answer without Nagle's delay, in every Python thread."""
from __future__ import annotations

import threading

from snds_assets.spark import _connection_socket, answer_promptly


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
