"""SPARK_REMOTE=sc://...: every Spark step runs on a Spark Connect server (a real one, started here on 127.0.0.1).

The client side runs in child processes: a Spark Connect session marks its whole Python process as "connect
mode", which must not leak into the other tests' local session. The children get ``JAVA_HOME=/nonexistent``:
had anything tried to start a local Spark instead of using the server, it would fail.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from .services import DELIVERY_ID, clean_environment, curated_summary, load_report, snds

NO_LOCAL_JAVA = {"JAVA_HOME": "/nonexistent"}


def test_sessions_come_from_the_server(spark_connect, tmp_path):
    """The product's session factory talks to the server when SPARK_REMOTE is set (and writes where it says)."""
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        from snds_assets.config import Settings
        from snds_assets.spark import SparkResource
        settings = Settings.from_env()
        session = SparkResource(remote=settings.spark_remote).get_session()
        print(type(session).__module__)
        print(session.conf.get("spark.sql.session.timeZone"))
        session.range(7).write.parquet({str(out)!r})
        print(session.read.parquet({str(out)!r}).count())
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env=clean_environment(tmp_path / "home", SPARK_REMOTE=spark_connect.url, **NO_LOCAL_JAVA))
    assert proc.returncode == 0, proc.stderr[-3000:]
    module, timezone, count = proc.stdout.split()[-3:]
    assert module.startswith("pyspark.sql.connect")
    assert (timezone, count) == ("UTC", "7")
    assert len(list(out.glob("*.parquet"))) >= 1  # the server wrote the local path the client named


@pytest.mark.slow
def test_ingestion_through_spark_connect_matches_the_local_session(spark_connect, reference, tmp_path):
    home = tmp_path / "remote"
    proc = snds(home, "ingest", DELIVERY_ID, timeout=900, SNDS_LANDING=str(reference.delivery.parent),
                SPARK_REMOTE=spark_connect.url, **NO_LOCAL_JAVA)
    assert proc.returncode == reference.exit_code, (proc.stdout[-2000:], proc.stderr[-4000:])
    assert f"delivery {DELIVERY_ID}: {reference.report['status'].upper()}" in proc.stdout
    lake = home / "lake"
    assert load_report(lake, DELIVERY_ID) == reference.report
    remote = curated_summary(lake, DELIVERY_ID)
    assert {f: s["curated_rows"] for f, s in remote.items()} == {f: s["curated_rows"] for f, s in reference.curated.items()}
    assert remote == reference.curated
