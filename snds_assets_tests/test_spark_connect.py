"""SPARK_REMOTE=sc://...: every Spark step runs on a Spark Connect server (a real one, started here on 127.0.0.1).

The client side runs in child processes: a Spark Connect session marks its whole Python process as "connect
mode", which must not leak into the other tests' local session. The children get ``JAVA_HOME=/nonexistent``:
had anything tried to start a local Spark instead of using the server, it would fail.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import pytest

from .services import DELIVERY_ID, TcpService, clean_environment, curated_summary, free_port, load_report, snds

NO_LOCAL_JAVA = {"JAVA_HOME": "/nonexistent"}
# A Databricks-style URL holds a token: it must never be printed or logged, whatever fails.
TOKEN = "SECRETTOK"


def silent_remote() -> tuple[str, int]:
    """A Spark Connect URL (with a token) whose port on 127.0.0.1 nobody listens on: connections are refused."""
    port = free_port()
    return f"sc://127.0.0.1:{port}/;token={TOKEN}", port


@pytest.mark.parametrize("argv", [["ingest", "2024-01-15"], ["extract", "p1"], ["demo"]])
def test_commands_say_at_once_that_no_server_answers(tmp_path, argv):
    """With nothing listening at SPARK_REMOTE, `snds ingest` launched its run and waited about five minutes in
    silence (the Spark Connect client's retries) before failing; `snds demo` generated its delivery first. Now,
    before anything else: exit 2 within seconds, one line naming SPARK_REMOTE and the address, never the token,
    nothing written and no run launched. "connection refused" is the probe's: the client's own retries would end
    in another error, after the hang guard."""
    from .reception_delivery import Delivery, csv_bytes

    home = tmp_path / "home"
    if argv[0] == "ingest":
        delivery = Delivery(home / "landing", "2024-01-15", {})
        delivery.add("IR_IMB_R", "IR_IMB_R.csv", csv_bytes(["BEN_NIR_PSA", "BEN_RNG_GEM", "IMB_ALD_NUM", "IMB_ALD_DTD"],
                                                            [["A" * 16 + "1", "1", "5", "2020-01-15"]]))
        delivery.write()
    url, port = silent_remote()
    proc = snds(home, *argv, timeout=120, SPARK_REMOTE=url, **NO_LOCAL_JAVA)  # hang guard: the client retries ~5 min
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"snds: error: SPARK_REMOTE: no Spark Connect server answers at 127.0.0.1:{port} (connection "
                     "refused); is the server started, and is that its address?"], proc.stderr
    assert proc.stdout == ""
    details = home / "logs" / "snds-error.log"
    assert TOKEN not in proc.stdout + proc.stderr + (details.read_text() if details.exists() else "")
    assert not (home / "lake").exists() and not (home / "dagster" / "storage").exists()
    if argv[0] == "demo":
        assert not (home / "landing").exists()


def test_the_session_factory_fails_at_once_when_no_server_answers(tmp_path):
    """spark.build_session(remote=...) and a run's Spark resource (a run started from the UI) raise the one-line
    error of the probe, token left out, not the Spark Connect client's after its retries (about five minutes, past
    the hang guard); the run's failure event carries it as its cause."""
    url, port = silent_remote()
    script = textwrap.dedent("""
        from dagster import DagsterInstance, asset, materialize
        from snds_assets.logs import _failure_message
        from snds_assets.spark import SparkResource, build_session

        try:
            build_session(remote=__import__("os").environ["SPARK_REMOTE"])
        except Exception as exc:
            print(type(exc).__name__, "|", exc)

        @asset
        def needs_spark(spark: SparkResource):
            spark.get_session()

        result = materialize([needs_spark], resources={"spark": SparkResource()}, raise_on_error=False,
                             instance=DagsterInstance.ephemeral())
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        print(_failure_message(failure))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=clean_environment(tmp_path / "home", SPARK_REMOTE=url, **NO_LOCAL_JAVA))
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = (f"SPARK_REMOTE: no Spark Connect server answers at 127.0.0.1:{port} (connection refused); is the server "
            "started, and is that its address?")
    session, run = proc.stdout.strip().splitlines()[-2:]
    assert session.split(" | ") == ["SparkConnectUnreachable", line]
    assert run == line  # our exception's message, without its module path and class
    assert TOKEN not in proc.stdout + proc.stderr


class NotSparkConnect(TcpService):
    """A TCP service on 127.0.0.1 that is not a Spark Connect server: it takes each connection and then holds it
    without a word (a hung server), closes it at once (a service that refuses gRPC's handshake), or answers in
    plain HTTP (a web server where TLS was asked for). It counts the connections it took."""

    def __init__(self, behaviour: str):
        self.behaviour = behaviour
        self.held: list[socket.socket] = []
        self.connections = 0
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        self.connections += 1
        if self.behaviour == "answer":
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            conn.close()
        elif self.behaviour == "close":
            conn.close()
        else:
            self.held.append(conn)

    def close(self) -> None:
        super().close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("behaviour, token", [("hold", False), ("close", False), ("close", True), ("answer", True)])
def test_a_server_that_accepts_connections_but_not_spark_connect_is_told_at_once(tmp_path, behaviour, token):
    """A port that accepts TCP connections passed the probe, and `snds ingest` then waited through the Spark Connect
    client's retries (about five minutes) in silence. Now gRPC's handshake follows the TCP connection: a service
    that holds it without answering is told after HANDSHAKE_SECONDS, one that refuses it at once, saying whether
    TLS was asked for; exit 2, one line, no token, nothing written and no run launched. (A plain answer to a TLS
    handshake also made gRPC's C core print its own "Handshake failed" line on stderr.)

    "At once" is seen in the connections the service took: the probe's and gRPC's first, where a probe waiting out
    HANDSHAKE_SECONDS after a refusal lets gRPC reconnect (six connections). That the probe waits that long for a
    server that holds the connection has nothing to show but the time it took: only the hang guard bounds it."""
    from snds_assets.spark import HANDSHAKE_SECONDS

    from .reception_delivery import Delivery, csv_bytes

    home = tmp_path / "home"
    delivery = Delivery(home / "landing", "2024-01-15", {})
    delivery.add("IR_IMB_R", "IR_IMB_R.csv", csv_bytes(["BEN_NIR_PSA", "BEN_RNG_GEM", "IMB_ALD_NUM", "IMB_ALD_DTD"],
                                                        [["A" * 16 + "1", "1", "5", "2020-01-15"]]))
    delivery.write()
    service = NotSparkConnect(behaviour)
    url = f"sc://127.0.0.1:{service.port}" + (f"/;token={TOKEN}" if token else "")
    try:
        proc = snds(home, "ingest", "2024-01-15", timeout=120, SPARK_REMOTE=url, **NO_LOCAL_JAVA)  # hang guard
    finally:
        service.close()
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    target = f"127.0.0.1:{service.port}"
    if behaviour == "hold":
        expected = (f"snds: error: SPARK_REMOTE: {target} accepts connections but does not answer a Spark Connect "
                    f"(gRPC) connection within {HANDSHAKE_SECONDS:g} s; is the server hung, or is that the address of "
                    "another service?")
    else:
        tls = ("TLS (use_ssl or a token in SPARK_REMOTE)" if token
               else "plain text (neither use_ssl nor a token in SPARK_REMOTE)")
        expected = (f"snds: error: SPARK_REMOTE: {target} accepts connections but refuses a Spark Connect (gRPC) "
                    f"connection over {tls}; is it the Spark Connect server, and does it use TLS as SPARK_REMOTE says?")
    assert lines == [expected], proc.stderr
    assert service.connections == 2  # the probe's TCP connection, then gRPC's handshake on a connection of its own
    details = home / "logs" / "snds-error.log"
    assert TOKEN not in proc.stdout + proc.stderr + (details.read_text() if details.exists() else "")
    assert not (home / "lake").exists() and not (home / "dagster" / "storage").exists()


def test_sessions_come_from_the_server(spark_connect, tmp_path):
    """The product's session factory talks to the server when SPARK_REMOTE is set (and writes where it says). A
    cluster keeps its shuffle partitions: every session was set to 4, a 2-core laptop's. Project pseudonyms are
    computed there as locally."""
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        from snds_assets.config import Settings
        from snds_assets.spark import SparkResource
        settings = Settings.from_env()
        session = SparkResource(remote=settings.spark_remote).get_session()
        print(type(session).__module__)
        print(session.conf.get("spark.sql.session.timeZone"))
        print(session.conf.get("spark.sql.parquet.outputTimestampType"))
        print(session.conf.get("spark.sql.shuffle.partitions"))
        session.range(7).write.parquet({str(out)!r})
        print(session.read.parquet({str(out)!r}).count())
        named = SparkResource(remote=settings.spark_remote, conf={{"spark.sql.shuffle.partitions": "3"}})
        print(named.get_session().conf.get("spark.sql.shuffle.partitions"))
        from snds_assets.provision.pseudonymize import pseudonym_value, pseudonymize
        ids = session.createDataFrame([("psa-a",)], "BEN_NIR_PSA string")
        print(pseudonymize(ids, bytes(32)).first()["NUM_ENQ"] == pseudonym_value("psa-a", bytes(32), "NUM_ENQ"))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env=clean_environment(tmp_path / "home", SPARK_REMOTE=spark_connect.url, **NO_LOCAL_JAVA))
    assert proc.returncode == 0, proc.stderr[-3000:]
    module, timezone, timestamps, partitions, count, named, pseudonyms = proc.stdout.split()[-7:]
    assert pseudonyms == "True"  # the sub-keys' one-row tables (Arrow) and scalar subqueries work through the server
    assert module.startswith("pyspark.sql.connect")
    assert (timezone, timestamps, count) == ("UTC", "TIMESTAMP_MICROS", "7")  # 1600-01-01 readable by pandas
    assert (partitions, named) == ("2", "3")  # the server's own (services.py), unless the resource names them
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
