"""One Spark session per run: local by default, Spark Connect when SPARK_REMOTE is set."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional

from dagster import ConfigurableResource
from pydantic import Field as PydanticField

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
    session.sparkContext.setLogLevel(os.environ.get("SNDS_SPARK_LOG_LEVEL", "ERROR"))
    return session


class SparkResource(ConfigurableResource):
    """The Spark session of a run. Runs use the in-process executor, so every step shares it."""

    master: str = PydanticField(default="local[*]", description="Spark master for a local session")
    remote: Optional[str] = PydanticField(default=None, description="Spark Connect URL (sc://host:15002)")
    conf: dict[str, str] = PydanticField(default_factory=dict, description="extra Spark settings")

    def get_session(self):
        # ABFS credentials are read at run time, never stored in the resource's (visible) config.
        from .azure import lake_session_conf
        from .config import Settings

        conf = {**lake_session_conf(Settings.from_env().lake, self.remote), **self.conf}
        return build_session(self.master, self.remote, conf)
