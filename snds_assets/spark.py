"""One Spark session per run: local by default, Spark Connect when SPARK_REMOTE is set."""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Optional

from dagster import ConfigurableResource
from pydantic import Field as PydanticField

_LOG = logging.getLogger(__name__)
QUIET_LOG4J = Path(__file__).with_name("spark-log4j2.properties")
# PySpark warns at import time that it does not test pandas 3 yet; nothing here goes through pandas.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)

# Sized for a 2-core laptop: few shuffle partitions, no UI, adaptive execution on.
LOCAL_DEFAULTS: dict[str, str] = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.sql.adaptive.enabled": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.parquet.compression.codec": "snappy",
    "spark.driver.memory": "4g",
    "spark.sql.autoBroadcastJoinThreshold": str(32 * 1024 * 1024),
    # Generated code kept per JVM (default 100 classes): a reception run plans a few hundred distinct stages
    # (each family's typing, rules and key checks), so the default evicted classes that the next delivery's run in
    # the same JVM compiled and JIT-compiled again. Measured on a 100k-patient delivery ingested twice in one
    # session: about 25 CPU seconds (12-15%) less for the second ingestion (bench/results/ingest.md).
    "spark.sql.codegen.cache.maxEntries": "2000",
}


def build_session(master: str = "local[*]", remote: Optional[str] = None, conf: Optional[dict[str, str]] = None,
                  app_name: str = "snds_assets"):
    """Get (or reuse) this process's session; static settings only apply to the first session of a process."""
    from pyspark.sql import SparkSession

    settings = {**LOCAL_DEFAULTS, **(conf or {})}
    if remote:
        builder = SparkSession.builder.remote(remote).appName(app_name)
        session = builder.getOrCreate()
        for key in ("spark.sql.shuffle.partitions", "spark.sql.session.timeZone", "spark.sql.adaptive.enabled"):
            if key in settings:
                session.conf.set(key, settings[key])
        return session
    # A local JVM: bound to the loopback (no warning about the host name) and quiet (errors only, see the file).
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    settings.setdefault("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{QUIET_LOG4J}")
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(os.environ.get("SNDS_SPARK_LOG_LEVEL") or "ERROR")
    answer_promptly(session)
    return session


def answer_promptly(session) -> None:
    """Make the JVM send each Py4J answer at once (TCP_NODELAY on its end of every connection, one per Python
    thread), from the calling thread's connection on. Py4J writes an answer in 8 KB pieces over a socket that
    keeps Nagle's algorithm: any answer over 8 KB (a small table's observed key hashes, a wide schema) waited
    about 44 ms for the Python side's delayed acknowledgement (measured here: 44 ms against 0.8 ms for a 47 KB
    answer; 44 such answers in a 100k-patient reception). Py4J has no setting for it, so the socket is reached
    through the connection's Java thread. Without Py4J's pinned-thread client or that thread's Runnable (another
    PySpark or JVM), answers keep the delay: nothing else changes."""
    client = getattr(getattr(session.sparkContext, "_gateway", None), "_gateway_client", None)
    give_back = getattr(client, "_give_back_connection", None)
    if give_back is None or getattr(client, "_snds_prompt", False):
        return
    jvm = session.sparkContext._jvm

    def give_back_connection(connection) -> None:
        give_back(connection)
        if getattr(connection, "_snds_nodelay", False):
            return
        connection._snds_nodelay = True  # set before the calls below, which give this connection back too
        try:
            _connection_socket(jvm).setTcpNoDelay(True)
        except Exception as exc:  # an internal of Py4J or of the JVM changed: keep the delay
            _LOG.debug("Py4J answers keep Nagle's delay: %s", exc)

    client._give_back_connection = give_back_connection
    client._snds_prompt = True
    jvm.java.lang.Thread.currentThread()  # any call: the calling thread's open connection is given back through it


def _connection_socket(jvm):
    """The JVM end of the calling thread's Py4J connection: the socket of the Runnable of the Java thread that
    serves it (``Thread.target`` up to Java 17, ``Thread.holder.task`` from Java 19)."""
    thread = jvm.java.lang.Thread.currentThread()
    thread_class = jvm.java.lang.Class.forName("java.lang.Thread")
    try:
        target = _private(thread_class, "target", thread)
    except Exception:
        holder = _private(thread_class, "holder", thread)
        target = _private(holder.getClass(), "task", holder)
    return _private(target.getClass(), "socket", target)


def _private(cls, name: str, obj):
    field = cls.getDeclaredField(name)
    field.setAccessible(True)
    return field.get(obj)


class SparkResource(ConfigurableResource):
    """The Spark session of a run. Runs use the in-process executor, so every step shares it."""

    master: str = PydanticField(default="local[*]", description="Spark master for a local session")
    remote: Optional[str] = PydanticField(
        default=None, description="Spark Connect URL (sc://host:15002); unset: SPARK_REMOTE, read when the run starts")
    conf: dict[str, str] = PydanticField(default_factory=dict, description="extra Spark settings")

    def get_session(self):
        # ABFS credentials and SPARK_REMOTE (a Databricks URL holds a token) are read at run time, never stored
        # in the resource's config, which the UI shows.
        from .azure import lake_session_conf
        from .config import Settings

        settings = Settings.from_env()
        remote = self.remote or settings.spark_remote
        conf = {**lake_session_conf(settings.lake, remote), **self.conf}
        return build_session(self.master, remote, conf)
