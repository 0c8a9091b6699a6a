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
