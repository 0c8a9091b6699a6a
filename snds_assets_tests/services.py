"""Real services for the production-shape tests: Azurite (Azure Blob), a Spark Connect server, PostgreSQL.

Each one is started by a fixture on 127.0.0.1 and a free port, in its own process group, and stopped (group
and all) when its tests are done. Nothing is skipped when a service is missing: the test fails and says to run
``make services`` (which `make test` runs first).

Also here: the reference ingestion that the Azure, Spark Connect and PostgreSQL tests compare against — one small
generated delivery, ingested once per test session from a local folder with a local Spark session.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / ".tools"
INSTALL_HINT = "run `make services` (installs azurite under .tools/ and the postgresql Debian package)"

# The well-known development account of the Azure Storage emulator (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

DELIVERY_ID = "2024-03-01"
PATIENTS = 30
SEED = 11
# DCIR (a central table and an affiliated one), a referential, and a PMSI field over two years: every kind of
# table and link, small enough for four ingestions in CI.
REFERENCE_TABLES = "IR_BEN_R,ER_PRS_F,ER_PHA_F,T_MCOaaB,T_MCOaaC"
# What changes what the product does, read from the environment (SPEC §1, the Azure credentials, the Spark Connect
# server, Dagster's instance and its gRPC timeouts): none comes into a test, nor into a command it runs, from the
# shell the tests were started in (conftest clears them); a test sets the ones it means. SNDS_SHARED and
# SNDS_CHROMIUM are not settings: they locate the tests' own material (the reference schemas, the browser).
SETTING_PREFIXES = ("SNDS_", "AZURE_STORAGE_")
SETTING_NAMES = frozenset({"DAGSTER_HOME", "SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "AZURE_CLIENT_ID",
                           "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_AUTHORITY_HOST",
                           "DAGSTER_GRPC_TIMEOUT_SECONDS", "DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS"})
TEST_LOCATIONS = frozenset({"SNDS_SHARED", "SNDS_CHROMIUM"})


def is_setting(name: str) -> bool:
    """Whether the variable ``name`` is a setting of the product (see SETTING_PREFIXES)."""
    return name not in TEST_LOCATIONS and (name in SETTING_NAMES or name.startswith(SETTING_PREFIXES))


def without_settings(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the product's settings."""
    return {k: v for k, v in env.items() if not is_setting(k)}


def clear_settings(env: MutableMapping[str, str]) -> None:
    """Remove the product's settings from ``env`` (``os.environ``, for what runs in this process)."""
    for name in [name for name in env if is_setting(name)]:
        del env[name]


def _launch_origin(job: str):
    """The code location a queued run of ``job`` would be launched from (a queued run must name one)."""
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteRepositoryOrigin

    location = GrpcServerCodeLocationOrigin(host="snds-code", port=4000, location_name="snds_assets")
    return RemoteRepositoryOrigin(location, "__repository__").get_job_origin(job)


def queued_run(instance, job: str, status, tags: dict, run_id: str | None = None):
    """A run of ``job`` created as the run queue holds one, without an execution plan (so without pools)."""
    from dagster._core.test_utils import create_run_for_test

    return create_run_for_test(instance, job_name=job, status=status, tags=tags, run_id=run_id,
                               remote_job_origin=_launch_origin(job))


def planned_run(instance, job: str | None, status, tags: dict, keys: set | None = None) -> str:
    """A run of the code location's ``job`` (None: Dagster's implicit job, as the UI's asset graph creates runs of
    ``keys``), its steps' pools counted from its execution plan as Dagster counts them; its id."""
    from snds_assets.definitions import build_definitions

    defs = build_definitions()
    job_def = defs.resolve_job_def(job) if job else defs.resolve_implicit_global_asset_job_def()
    return instance.create_run_for_job(job_def, asset_selection=keys, status=status, tags=tags,
                                       remote_job_origin=_launch_origin(job_def.name)).run_id


def queue_decision(instance) -> set[str]:
    """The ids of the queued runs the daemon would start now: its own decision, under the instance's limits."""
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

    daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
    return {r.run_id for r in daemon._get_runs_to_dequeue(  # noqa: SLF001 - the daemon's decision itself
        instance, instance.get_concurrency_config(), fixed_iteration_time=None)}


# The dagster.yaml that earlier versions of `snds` wrote into a new DAGSTER_HOME, by the commit that last changed it
# (`git log -p -S _EARLIER_INSTANCE_CONFIGS -- snds_assets/cli.py`); a command replaces each with the current one.
# Copied as those versions wrote them, not built from the product's pieces: a change to those pieces must not
# change what the tests take for an earlier version's file.
EARLIER_INSTANCE_CONFIGS = {
    "17f7747": """telemetry:
  enabled: false
nux:
  enabled: false
""",
    "dfd8449": """telemetry:
  enabled: false
nux:
  enabled: false
concurrency:
  runs:
    tag_concurrency_limits:
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: snds/delivery
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: snds/project
        value:
          applyLimitPerUniqueValue: true
        limit: 1
""",
    "2ba2388": """telemetry:
  enabled: false
nux:
  enabled: false
concurrency:
  runs:
    tag_concurrency_limits:
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: snds/delivery
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: snds/project
        value:
          applyLimitPerUniqueValue: true
        limit: 1
compute_logs:
  module: snds_assets.compute_logs
  class: InterruptSafeComputeLogManager
""",
    "435e926": """telemetry:
  enabled: false
nux:
  enabled: false
concurrency:
  runs:
    tag_concurrency_limits:
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: snds/delivery
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: snds/project
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: snds/reception
        limit: 1
compute_logs:
  module: snds_assets.compute_logs
  class: InterruptSafeComputeLogManager
""",
    "68e8de4": """telemetry:
  enabled: false
nux:
  enabled: false
concurrency:
  runs:
    tag_concurrency_limits:
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: snds/delivery
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: snds/project
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: snds/reception
        limit: 1
  pools:
    granularity: run
    default_limit: 1
compute_logs:
  module: snds_assets.compute_logs
  class: InterruptSafeComputeLogManager
""",
}


class ServiceError(AssertionError):
    """A service did not start; the message carries the end of its log."""


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Service:
    """A process group we started: its leader, log, and how long it may take to stop."""

    name: str
    process: subprocess.Popen
    log_path: Path

    def wait_for_port(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(f"{self.name} exited with {self.process.returncode}:\n{tail(self.log_path)}")
            if port_open(port):
                return
            time.sleep(0.3)
        self.stop()
        raise ServiceError(f"{self.name} did not listen on 127.0.0.1:{port} within {timeout:.0f}s:\n"
                           f"{tail(self.log_path)}")

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to our own process group (this leader and the children it started), SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        pgid = self.process.pid  # start_new_session=True: the leader's pid is the group id
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def _spawn(name: str, cmd: list[str], log_path: Path, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> Service:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=cwd, start_new_session=True)
    return Service(name, process, log_path)


# --- Azurite ------------------------------------------------------------------------------------------------
@dataclass
class Azurite:
    service: Service
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                f"BlobEndpoint={self.endpoint};")

    def blob_service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)


def azurite_command() -> list[str]:
    """``azurite-blob`` from .tools (make services), $AZURITE_BLOB, or the PATH."""
    candidates = [os.environ.get("AZURITE_BLOB"), str(TOOLS / "node_modules" / ".bin" / "azurite-blob"),
                  shutil.which("azurite-blob")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return [candidate]
    pytest.fail(f"azurite-blob not found: {INSTALL_HINT}")


def start_azurite(workdir: Path) -> Azurite:
    """Azurite's Blob service only, in memory, on 127.0.0.1, without telemetry (it would call out otherwise)."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [*azurite_command(), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--skipApiVersionCheck",
           "--loose", "--inMemoryPersistence", "--extentMemoryLimit", "256", "--disableTelemetry", "--silent"]
    service = _spawn("azurite", cmd, workdir / "azurite.log", cwd=workdir)
    service.wait_for_port(port, timeout=60)
    return Azurite(service, port)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    server = start_azurite(tmp_path_factory.mktemp("azurite"))
    yield server
    server.service.stop()


# --- Spark Connect ------------------------------------------------------------------------------------------
@dataclass
class SparkConnectServer:
    service: Service
    port: int

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def start_spark_connect(workdir: Path, timeout: float = 180) -> SparkConnectServer:
    """``start-connect-server.sh --wait`` (in the foreground, so that stopping our process group stops the JVM),
    a local[2] master with a small driver, gRPC bound to 127.0.0.1 on a free port."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.fail("java not found: Spark Connect needs Java 17 (apt-get install openjdk-17-jre-headless)")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    home = spark_home()
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOG_DIR": str(workdir / "logs"),
           "SPARK_PID_DIR": str(workdir), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_IDENT_STRING": f"snds-{port}"}
    env.pop("SPARK_REMOTE", None)
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    cmd = ["bash", str(home / "sbin" / "start-connect-server.sh"), "--wait",
           "--master", "local[2]", "--driver-memory", "1g",
           "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
           "--conf", f"spark.connect.grpc.binding.port={port}",
           "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
           "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=2",
           "--conf", "spark.sql.session.timeZone=UTC", "--conf", f"spark.local.dir={workdir / 'local'}",
           "--conf", f"spark.sql.warehouse.dir={workdir / 'warehouse'}",
           "--conf", f"spark.driver.extraJavaOptions=-Dderby.system.home={workdir}"]
    service = _spawn("spark-connect", cmd, workdir / "spark-connect.log", env=env, cwd=workdir)
    try:
        service.wait_for_port(port, timeout=timeout)
    except ServiceError as exc:
        logs = "\n".join(tail(Path(p)) for p in glob.glob(str(workdir / "logs" / "*.out")))
        raise ServiceError(f"{exc}\n{logs}") from None
    return SparkConnectServer(service, port)


@pytest.fixture(scope="module")
def spark_connect(tmp_path_factory):
    server = start_spark_connect(tmp_path_factory.mktemp("spark-connect"))
    yield server
    server.service.stop(timeout=30)


# --- PostgreSQL ---------------------------------------------------------------------------------------------
@dataclass
class Postgres:
    service: Service | None
    bin_dir: Path
    data_dir: Path
    port: int
    user: str = "dagster"
    password: str = field(default="dagster-test-password", repr=False)
    database: str = "dagster"
    as_user: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """The variables the production dagster.yaml reads (deploy/dagster.yaml)."""
        return {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USER": self.user,
                "DAGSTER_PG_PASSWORD": self.password, "DAGSTER_PG_DB": self.database}

    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def query(self, sql: str, *params) -> list[tuple]:
        import psycopg2

        with psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                              dbname=self.database) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast",
                        "-w", "-t", "30"], capture_output=True, timeout=60)
        if self.service is not None:
            self.service.stop()


def postgres_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin (Debian does not put initdb on the PATH), else the PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    pytest.fail(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}")


def _run_as() -> tuple[list[str], int | None, int | None]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` system user (created by the package)."""
    if os.geteuid() != 0:
        return [], None, None
    import pwd

    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail(f"running as root and there is no `postgres` user to run the server as: {INSTALL_HINT}")
    runner = shutil.which("runuser")
    if not runner:
        pytest.fail("runuser not found (util-linux): cannot start PostgreSQL as the postgres user")
    return [runner, "-u", "postgres", "--"], entry.pw_uid, entry.pw_gid


def start_postgres(timeout: float = 60) -> Postgres:
    """A throw-away cluster: initdb in a fresh folder, password authentication over TCP on 127.0.0.1:<free port>,
    its socket in the same folder (not /var/run), started with pg_ctl."""
    bin_dir = postgres_bin_dir()
    prefix, uid, gid = _run_as()
    root = Path(tempfile.mkdtemp(prefix="snds-pg-"))  # not under pytest's tmp: that one is private to root
    data = root / "data"
    pwfile = root / "pwfile"
    pg = Postgres(None, bin_dir, data, free_port(), as_user=prefix)
    pwfile.write_text(pg.password + "\n")
    if uid is not None:
        os.chown(root, uid, gid)
        os.chown(pwfile, uid, gid)
    os.chmod(pwfile, 0o600)
    init = subprocess.run(
        [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", pg.user, f"--pwfile={pwfile}",
         "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C.UTF-8"],
        capture_output=True, text=True, timeout=120,
    )
    if init.returncode != 0:
        raise ServiceError(f"initdb failed ({init.returncode}): {init.stderr.strip()[-2000:]}")
    options = f"-c listen_addresses=127.0.0.1 -c port={pg.port} -c unix_socket_directories={root} -c fsync=off"
    log_path = root / "postgres.log"
    start = subprocess.run(
        [*prefix, str(bin_dir / "pg_ctl"), "start", "-D", str(data), "-l", str(log_path), "-o", options, "-w",
         "-t", str(int(timeout))],
        capture_output=True, text=True, timeout=timeout + 30,
    )
    if start.returncode != 0:
        raise ServiceError(f"pg_ctl start failed ({start.returncode}): {start.stderr.strip()}\n{tail(log_path)}")
    created = subprocess.run(
        [*prefix, str(bin_dir / "createdb"), "-h", str(root), "-p", str(pg.port), "-U", pg.user, pg.database],
        capture_output=True, text=True, timeout=60,
    )
    if created.returncode != 0:
        pg.stop()
        raise ServiceError(f"createdb failed: {created.stderr.strip()}")
    return pg


@pytest.fixture(scope="module")
def postgres():
    pg = start_postgres()
    yield pg
    pg.stop()
    shutil.rmtree(pg.data_dir.parent, ignore_errors=True)


# --- Running the product as an operator would ----------------------------------------------------------------
def snds_command() -> list[str]:
    """The installed `snds` script beside this interpreter, else the same entry point through -m."""
    script = Path(sys.executable).with_name("snds")
    return [str(script)] if script.exists() else [sys.executable, "-m", "snds_assets.cli"]


def clean_environment(home: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without the product's settings, plus ``extra``: only what the test says counts."""
    env = without_settings(os.environ)
    env.update({"SNDS_HOME": str(home), "PYTHONUNBUFFERED": "1", **extra})
    return env


def snds(home: Path, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """Run ``snds`` in a child process, as an operator would, with only the given settings."""
    return subprocess.run([*snds_command(), *args], env=clean_environment(home, **env), capture_output=True,
                          text=True, timeout=timeout)


def generate(landing: Path, delivery_id: str = DELIVERY_ID, patients: int = PATIENTS, seed: int = SEED,
             *extra: str) -> Path:
    """`snds generate` into a local folder; returns the delivery folder."""
    proc = snds(landing.parent, "generate", "--out", str(landing), "--delivery-id", delivery_id,
                "--patients", str(patients), "--seed", str(seed), *extra, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"snds generate failed ({proc.returncode}): {proc.stderr.strip()[-3000:]}")
    folder = landing / delivery_id
    assert (folder / "manifest.json").exists(), proc.stdout
    return folder


def ingest_in_process(home: Path, delivery_id: str, **env: str) -> int:
    """`snds ingest` through cli.main in this process, so that it reuses the test session's Spark JVM."""
    return snds_in_process(home, "ingest", delivery_id, **env)


def snds_in_process(home: Path, *args: str, **env: str) -> int:
    """`snds ARGS` through cli.main in this process, with only the given settings.

    The CLI exports its settings to os.environ for Dagster: the whole environment is restored afterwards.
    """
    from snds_assets.cli import main

    saved = dict(os.environ)
    try:
        clear_settings(os.environ)
        os.environ.update({"SNDS_HOME": str(home), **env})
        return main(list(args))
    finally:
        os.environ.clear()
        os.environ.update(saved)


# --- What an ingestion produced, for comparisons ------------------------------------------------------------
def curated_summary(lake: Path, delivery_id: str) -> dict[str, dict]:
    """Per family: curated and rejected row counts and the curated rows themselves (sorted), read with pyarrow."""
    import pyarrow.dataset as ds

    out: dict[str, dict] = {}
    for kind in ("curated", "rejects"):
        for folder in sorted((lake / kind).glob(f"*/delivery_id={delivery_id}")):
            family = folder.parent.name
            files = sorted(str(p) for p in folder.rglob("*.parquet"))
            table = ds.dataset(files, format="parquet").to_table() if files else None
            entry = out.setdefault(family, {})
            entry[f"{kind}_rows"] = 0 if table is None else table.num_rows
            if kind == "curated" and table is not None:
                columns = sorted(table.column_names)
                rows = table.select(columns).to_pylist()
                entry["columns"] = columns
                entry["content"] = sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)
    return out


def load_report(lake: Path, delivery_id: str) -> dict:
    return json.loads((lake / "reports" / "deliveries" / f"{delivery_id}.json").read_text(encoding="utf-8"))


@dataclass
class Reference:
    """The local-folder, local-Spark ingestion of the reference delivery."""

    home: Path
    delivery: Path  # the generated delivery folder (local landing)
    exit_code: int
    report: dict
    curated: dict[str, dict]


@pytest.fixture(scope="session")
def reference(tmp_path_factory, spark) -> Reference:
    """One generated delivery ingested the default way (local landing, local lake, local Spark), once a session.

    The tests only compare their ingestion with this one: it must itself be a good one, or a regression that
    curates nothing (or rejects everything) in both would pass. The generated delivery has no defect: accepted,
    every table delivered curated, rows in every family of REFERENCE_TABLES."""
    home = tmp_path_factory.mktemp("reference")
    delivery = generate(home / "landing", DELIVERY_ID, PATIENTS, SEED, "--tables", REFERENCE_TABLES)
    code = ingest_in_process(home, DELIVERY_ID, SNDS_LANDING=str(home / "landing"))
    lake = home / "lake"
    assert code == 0, f"reference ingestion ended with exit status {code} (its report: {lake / 'reports'})"
    report, curated = load_report(lake, DELIVERY_ID), curated_summary(lake, DELIVERY_ID)
    assert report["status"] == "accepted", report["status"]
    manifest = json.loads((delivery / "manifest.json").read_text(encoding="utf-8"))
    tables = report["tables"]
    assert sorted(tables) == sorted(t["table"] for t in manifest["tables"])
    for name, table in tables.items():
        assert table["status"] == "accepted" and table["rows_curated"] > 0, (name, table)
    families = {table["family"] for table in tables.values()}
    assert families == set(REFERENCE_TABLES.split(","))
    assert {f: curated.get(f, {}).get("curated_rows", 0) > 0 for f in families} == dict.fromkeys(families, True)
    return Reference(home, delivery, code, report, curated)


class TcpService:
    """A TCP server on 127.0.0.1 for the tests of the Spark Connect probe: ``handle`` gets each connection it
    accepts, on its accepting thread. Subclasses set their own state before calling ``__init__``."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()
