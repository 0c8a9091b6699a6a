"""One Spark session per run: local by default, Spark Connect when SPARK_REMOTE is set."""
from __future__ import annotations

import codecs
import contextlib
import ipaddress
import locale
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

from dagster import ConfigurableResource
from pydantic import Field as PydanticField

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_LOG = logging.getLogger(__name__)
# Py4J logs every command it sends the JVM at DEBUG, settings included: the ABFS key, SAS token or client secret
# a local session is given would reach any log an operator turned to DEBUG.
logging.getLogger("py4j").setLevel(logging.WARNING)


def _interrupt_noise(error: BaseException | None) -> bool:
    """Whether ``error`` (or an exception it arose from) is a Ctrl-C, or Py4J refusing a call made while another
    waits on the same connection (``RuntimeError: reentrant call``)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, KeyboardInterrupt) or (isinstance(error, RuntimeError) and "reentrant call" in str(error)):
            return True
        error = error.__cause__ or error.__context__
    return False


class _QuietInterrupt(logging.Filter):
    """On Ctrl-C, PySpark's signal handler cancels the session's jobs through Py4J while the interrupted thread
    waits on Py4J: Py4J logs the call it then refuses and the interrupt itself on the root logger, each with its
    traceback, which reached the terminal of `snds ui` under Dagster's own word that the run was interrupted (Py4J's
    module-level ``logging.exception`` first gives a root logger without handlers, a run worker's, one on stderr of
    every level: a lower level would still print). They are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "root" and record.module == "java_gateway" and record.exc_info
                    and _interrupt_noise(record.exc_info[1]))


if not any(isinstance(f, _QuietInterrupt) for f in logging.getLogger().filters):
    logging.getLogger().addFilter(_QuietInterrupt())

# How long the TCP probe of a Spark Connect server waits for an answer: a server that is up answers a connection
# in milliseconds, even across a WAN; without the probe, Spark Connect's client retried for about five minutes.
PROBE_SECONDS = 5.0
# How long the gRPC handshake that follows that connection may take: HTTP/2's preface and settings, over TLS when the
# URL asks for it. A Spark Connect server sets it up in milliseconds; one that is hung, or a service that accepts TCP
# connections but does not speak gRPC, leaves the client retrying as long as no TCP answer did.
HANDSHAKE_SECONDS = 10.0
QUIET_LOG4J = Path(__file__).with_name("spark-log4j2.properties")
# PySpark warns at import time that it does not test pandas 3 yet; nothing here goes through pandas.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)

# A local session: no UI, adaptive execution on, UTC; its shuffle partitions follow its cores (``local_parallelism``).
LOCAL_DEFAULTS: dict[str, str] = {
    "spark.sql.adaptive.enabled": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.parquet.compression.codec": "snappy",
    # Date-times as Parquet's standard timestamps: Spark's default, INT96, is read by pandas and arrow in nanoseconds,
    # which cannot hold the SNDS's unknown date 1600-01-01 (it comes back as 2184), nor any year before 1677.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.driver.memory": "4g",
    "spark.sql.autoBroadcastJoinThreshold": str(32 * 1024 * 1024),
    # Generated code kept per JVM (default 100 classes): a reception run plans a few hundred distinct stages
    # (each family's typing, rules and key checks), so the default evicted classes that the next delivery's run in
    # the same JVM compiled and JIT-compiled again. Measured on a 100k-patient delivery ingested twice in one
    # session: about 25 CPU seconds (12-15%) less for the second ingestion (bench/results/ingest.md).
    "spark.sql.codegen.cache.maxEntries": "2000",
    # What the status store keeps of finished work, for a UI a local session does not serve: at Spark's defaults
    # (1000 SQL executions with their plans and metrics, 1000 jobs and stages, 100000 tasks per stage) it held about
    # 150 MB more of the heap after the provision tests' few thousand queries (live objects, measured with jmap).
    "spark.sql.ui.retainedExecutions": "20",
    "spark.ui.retainedJobs": "50",
    "spark.ui.retainedStages": "50",
    "spark.ui.retainedTasks": "1000",
}


# Set on every Spark Connect session: the time zone dates are read and written in, adaptive execution, and the
# Parquet type of date-times. The cluster's own shuffle partitions stay, unless the Spark resource's ``conf`` names
# them.
REMOTE_SETTINGS = ("spark.sql.session.timeZone", "spark.sql.adaptive.enabled", "spark.sql.parquet.outputTimestampType")


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # "<quota> <period>" of a container limited in CPU, or "max ..."


def usable_cores() -> int:
    """The cores Spark's ``local[*]`` runs on: those this process may use, bounded by a container's CPU quota
    (cgroup v2 ``cpu.max``), as Java counts them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cores


def local_parallelism(master: str) -> dict[str, str]:
    """Shuffle partitions and default parallelism of a local session: two tasks per core it runs on (``local[N]``,
    ``local[*]``: ``usable_cores``), at least 4 (a 2-core laptop's). Another master keeps Spark's defaults."""
    found = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\s*\d+)?\])?", master.strip())
    if not found:
        return {}
    given = found.group(1)
    cores = 1 if given is None else usable_cores() if given == "*" else int(given)
    tasks = str(max(4, 2 * cores))
    return {"spark.sql.shuffle.partitions": tasks, "spark.default.parallelism": tasks}


def spark_defaults_keys() -> set[str]:
    """The settings named in the ``spark-defaults.conf`` a local session reads (``$SPARK_CONF_DIR``, else
    ``$SPARK_HOME/conf``): Java properties, a key ended by a space, ``=`` or ``:``."""
    folder = os.environ.get("SPARK_CONF_DIR") or (
        os.path.join(os.environ["SPARK_HOME"], "conf") if os.environ.get("SPARK_HOME") else None)
    if not folder:
        return set()
    try:
        text = Path(folder, "spark-defaults.conf").read_text(errors="replace")
    except OSError:
        return set()
    lines = (line.strip() for line in text.splitlines())
    return {re.split(r"[\s=:]", line, maxsplit=1)[0] for line in lines if line and line[0] not in "#!"}


def local_settings(master: str, conf: Optional[dict[str, str]] = None) -> dict[str, str]:
    """A local session's settings: ours (``LOCAL_DEFAULTS``, ``local_parallelism``, a quiet log: errors only, see
    the file), but those the operator's ``spark-defaults.conf`` names (driver memory on a large machine, say: the
    file would otherwise lose to the settings given here), then ``conf``, which wins over both."""
    ours = {**LOCAL_DEFAULTS, **local_parallelism(master),
            "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{QUIET_LOG4J}"}
    tuned = spark_defaults_keys()
    return {**{k: v for k, v in ours.items() if k not in tuned}, **(conf or {})}


def jvm_locale() -> dict[str, str]:
    """The locale a local JVM needs beside the operator's: in UTF-8 mode (PEP 540: under a C or POSIX locale, or
    ``PYTHONUTF8=1``) Python names files in UTF-8 where Java 17 follows the locale's charset (ASCII under C), so a lake
    under ``lac_santé`` was written by the archive and not found by Spark. ``C.UTF-8`` then (glibc 2.35 and later
    always have it); nothing when both name files alike."""
    try:
        charset = codecs.lookup(locale.nl_langinfo(locale.CODESET)).name
    except (AttributeError, LookupError):
        return {}
    if codecs.lookup(sys.getfilesystemencoding()).name != "utf-8" or charset == "utf-8":
        return {}
    return {"LC_ALL": "C.UTF-8"}


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in this process's environment while a child (the JVM) is started, then as they were."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def build_session(master: str = "local[*]", remote: Optional[str] = None, conf: Optional[dict[str, str]] = None,
                  app_name: str = "snds_assets") -> SparkSession:
    """Get (or reuse) this process's session; static settings only apply to the first session of a process."""
    from pyspark.sql import SparkSession

    if remote:
        check_spark_connect(remote)
        builder = SparkSession.builder.remote(remote).appName(app_name)
        session = builder.getOrCreate()
        settings = {key: LOCAL_DEFAULTS[key] for key in REMOTE_SETTINGS}
        settings.update({key: value for key, value in (conf or {}).items()
                         if key in REMOTE_SETTINGS or key == "spark.sql.shuffle.partitions"})
        for key, value in settings.items():
            session.conf.set(key, value)
        return session
    settings = local_settings(master, conf)
    check_java()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # bound to the loopback: no warning about the host name
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    with _environment(jvm_locale()):
        session = builder.getOrCreate()
    session.sparkContext.setLogLevel(os.environ.get("SNDS_SPARK_LOG_LEVEL") or "ERROR")
    answer_promptly(session)
    return session


class JavaMissing(RuntimeError):
    """No Java, or one older than Spark 4 needs, to start a local Spark session: a mistake the operator fixes, told
    in one line (exit status 2 on the command line) rather than PySpark's "Java gateway process exited before
    sending its port number"."""


MIN_JAVA = 17  # Spark 4's classes are compiled for Java 17: an older JVM cannot load them


def java_version(java: Path) -> Optional[int]:
    """The major version written in the ``release`` file of the installation ``java`` belongs to (links resolved;
    ``jre/bin/java`` of a Java 8 JDK too), or None when there is no such file to read: reading it costs nothing,
    where ``java -version`` would start a JVM before the session starts its own."""
    home = Path(os.path.realpath(java)).parent.parent
    for folder in (home, home.parent) if home.name == "jre" else (home,):
        try:
            text = (folder / "release").read_text(errors="replace")
        except OSError:
            continue
        found = re.search(r'^JAVA_VERSION="?([0-9]+)(?:\.([0-9]+))?', text, re.MULTILINE)
        if found:
            return _major(found)
    return None


def _major(found: re.Match) -> int:
    """The major version of a matched "MAJOR.MINOR": "1.8.0_292" is Java 8."""
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def reported_java_version(java: Path) -> Optional[int]:
    """The major version ``java -version`` reports (``openjdk version "11.0.22"``, ``java version "1.8.0_292"``),
    or None when it reports none."""
    try:
        shown = subprocess.run([str(java), "-version"], capture_output=True, text=True, errors="replace", timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r'version "([0-9]+)(?:\.([0-9]+))?', shown.stderr + shown.stdout)
    return _major(found) if found else None


def check_java() -> None:
    """Fail at once, in one line, when a local Spark session could not start its JVM (no Java, or one older than
    ``MIN_JAVA``): PySpark runs ``$JAVA_HOME/bin/java`` when JAVA_HOME is set, else the ``java`` on PATH
    (``spark-class``)."""
    home = os.environ.get("JAVA_HOME")
    if home:
        java = Path(home) / "bin" / "java"
        if not (java.is_file() and os.access(java, os.X_OK)):
            raise JavaMissing(f"JAVA_HOME={home} holds no bin/java: set JAVA_HOME to a Java 17 (or later) installation, "
                              "or unset it to use the java on PATH")
        where = f"JAVA_HOME={home}"
    else:
        found = shutil.which("java")
        if found is None:
            raise JavaMissing("no java on PATH and JAVA_HOME is not set: Spark needs Java 17 or later; install it "
                              "(Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME")
        java, where = Path(found), f"the java on PATH ({found})"
    version = java_version(java)
    if version is None:  # no release file (a hand-made or unusual installation): asked, a JVM started once
        version = reported_java_version(java)
    if version is not None and version < MIN_JAVA:
        raise JavaMissing(f"{where} is Java {version}: Spark needs Java {MIN_JAVA} or later; install it (Debian: "
                          f"apt-get install openjdk-17-jre-headless) and set JAVA_HOME to it")


class SparkConnectUnreachable(ConnectionError):
    """Nothing answers at the Spark Connect server's address: a mistake the operator fixes (start the server, or
    correct SPARK_REMOTE), told in one line (exit status 2 on the command line)."""


def check_spark_connect(url: str, timeout: float = PROBE_SECONDS) -> None:
    """Fail at once, in one line, when no Spark Connect server answers at ``url``: Spark Connect's client retries
    an unanswered connection with backoff for about five minutes, without a word, before failing.

    The probe opens and closes a TCP connection to the address the client dials (Spark's own parser: port 15002
    when the URL gives none), or to the HTTP CONNECT proxy gRPC would go through (see ``_grpc_proxy``); a TLS URL
    (``use_ssl=true``) connects over TCP first too. A server that is up answers it in milliseconds: nothing else
    changes for it. gRPC then sets its connection up, as the client would (``_grpc_handshake``): a server that
    accepts TCP connections but does not answer gRPC's handshake within ``HANDSHAKE_SECONDS``, or refuses it (another
    service, TLS on one side only), is reported too. No call is made, so no token is sent.

    The message shows the host and port, never the URL: its parameters (after ``/;``) may hold a token, and a
    user-info part (``user:password@``, which Spark ignores) a password. The host and port are an address, not a
    credential (every machine on the path sees them, and they give no access without the token), and they are
    exactly what the operator must check; the message could not say what to fix without them. Likewise only the
    host and port of a proxy's URL are shown, never its user-info."""
    host, port = spark_connect_address(url)
    target = _host_port(host, port)
    proxy = _grpc_proxy(host)
    if proxy:
        dial_host, dial_port, variable = proxy
        through = f"the proxy {{}} of {variable}, through which gRPC reaches {target},"
        unknown = f"{through.format('host ' + dial_host)} cannot be resolved ({{}}); is {variable} right?"
        silent = (f"{through.format(_host_port(dial_host, dial_port))} does not answer ({{}}); is the proxy up, or "
                  f"should {host} be listed in no_grpc_proxy or no_proxy?")
    else:
        dial_host, dial_port = host, port
        unknown = f"the host {host} of the Spark Connect server cannot be resolved ({{}}); is its name right?"
        silent = f"no Spark Connect server answers at {target} ({{}}); is the server started, and is that its address?"
    try:
        addresses = socket.getaddrinfo(dial_host, dial_port, type=socket.SOCK_STREAM)
    except OSError as exc:  # socket.gaierror: the name is unknown, or no resolver answers
        raise SparkConnectUnreachable("SPARK_REMOTE: " + unknown.format(exc.strerror or exc)) from None
    deadline = time.monotonic() + timeout
    problem: Optional[OSError] = None
    for family, kind, proto, _, address in addresses:  # an address each, as gRPC does, within one deadline
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(left)
                sock.connect(address)
        except OSError as exc:  # refused, timed out, no route to the host, network unreachable...
            problem = exc
            continue
        failure = _grpc_handshake(url, HANDSHAKE_SECONDS)
        if failure is None:
            return
        raise SparkConnectUnreachable("SPARK_REMOTE: " + _handshake_message(url, failure, target, proxy)) from None
    if problem is None or (isinstance(problem, TimeoutError) and not problem.errno):
        reason = f"no answer within {timeout:g} s"
    else:
        reason = (problem.strerror or str(problem)).lower()
    raise SparkConnectUnreachable("SPARK_REMOTE: " + silent.format(reason)) from None


def _grpc_handshake(url: str, timeout: float) -> Optional[str]:
    """None when gRPC sets up a connection to the server of ``url`` within ``timeout``, through the channel Spark
    Connect's client builds (TLS and proxy included); else ``"refused"`` (the handshake failed) or ``"silent"`` (no
    answer in time). The channel's states are watched so that a refused handshake is told at once."""
    import threading

    import grpc
    from pyspark.sql.connect.client import DefaultChannelBuilder

    settled = threading.Event()
    seen: list = []

    def follow(state: grpc.ChannelConnectivity) -> None:
        seen.append(state)
        if state in (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE):
            settled.set()

    channel = DefaultChannelBuilder(url).toChannel()
    try:
        channel.subscribe(follow, try_to_connect=True)
        settled.wait(timeout)
    finally:
        channel.close()
    if grpc.ChannelConnectivity.READY in seen:
        return None
    return "refused" if grpc.ChannelConnectivity.TRANSIENT_FAILURE in seen else "silent"


def _handshake_message(url: str, failure: str, target: str, proxy: Optional[tuple[str, int, str]]) -> str:
    from pyspark.sql.connect.client import DefaultChannelBuilder

    tls = ("TLS (use_ssl or a token in SPARK_REMOTE)" if DefaultChannelBuilder(url).secure
           else "plain text (neither use_ssl nor a token in SPARK_REMOTE)")
    if proxy:
        answers = f"the proxy {_host_port(proxy[0], proxy[1])} of {proxy[2]} answers, but"
        if failure == "refused":
            return (f"{answers} no Spark Connect (gRPC) connection over {tls} could be set up through it to {target}; "
                    "is the server up behind the proxy, and does it use TLS as SPARK_REMOTE says?")
        return (f"{answers} {target} does not answer a Spark Connect (gRPC) connection through it within "
                f"{HANDSHAKE_SECONDS:g} s; is the server hung, or is that the address of another service?")
    if failure == "refused":
        return (f"{target} accepts connections but refuses a Spark Connect (gRPC) connection over {tls}; is it the "
                "Spark Connect server, and does it use TLS as SPARK_REMOTE says?")
    return (f"{target} accepts connections but does not answer a Spark Connect (gRPC) connection within "
            f"{HANDSHAKE_SECONDS:g} s; is the server hung, or is that the address of another service?")


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def spark_connect_address(url: str) -> tuple[str, int]:
    """The host (without IPv6 brackets) and port that Spark Connect's client dials for ``url``, by its own parser
    (port 15002 when none is given). The URL is checked first: Spark's parser quotes it, token included, in its
    errors."""
    from pyspark.sql.connect.client import DefaultChannelBuilder

    from .config import check_spark_remote

    check_spark_remote(url)
    host, _, port = DefaultChannelBuilder(url).endpoint.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _grpc_proxy(host: str) -> Optional[tuple[str, int, str]]:
    """The HTTP CONNECT proxy that gRPC (its C core, which the Spark Connect client uses) goes through to reach
    ``host``, as (proxy host, proxy port, variable), or None when it connects directly. gRPC's rules: the first of
    ``grpc_proxy``, ``https_proxy``, ``http_proxy`` that is set (lower case only; an empty value means no proxy)
    and an ``http://`` URL; ``no_grpc_proxy``, else ``no_proxy``, lists host name suffixes and CIDR ranges that
    are reached directly; a proxy without a port is dialled on 443."""
    name = next((var for var in ("grpc_proxy", "https_proxy", "http_proxy") if var in os.environ), None)
    if name is None or not os.environ[name]:
        return None
    proxy = urllib.parse.urlsplit(os.environ[name])
    try:
        proxy_port = proxy.port or 443
    except ValueError:  # gRPC cannot parse it either, and connects directly
        return None
    if proxy.scheme != "http" or not proxy.hostname:
        return None
    direct = os.environ.get("no_grpc_proxy", os.environ.get("no_proxy"))
    if direct is not None and any(_reached_directly(host, entry.strip()) for entry in direct.split(",") if entry):
        return None
    return proxy.hostname, proxy_port, name


def _reached_directly(host: str, entry: str) -> bool:
    """gRPC's match of a no_proxy entry: the host name ends with it (case aside), or the host is an address in
    the entry's CIDR range."""
    if host.lower().endswith(entry.lower()):
        return True
    if "/" not in entry:
        return False
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False


def interrupt(session: SparkSession) -> None:
    """Cancel the session's running queries (local or Spark Connect): an interrupted run's families stop their
    Spark work at once. Dagster's own handling of Ctrl-C and SIGTERM keeps PySpark's, which would, from running."""
    try:
        session.interruptAll()
    except Exception as exc:  # a session already stopped, a server gone: nothing left to stop
        _LOG.debug("the session's queries were not interrupted: %s", exc)
    try:  # a local session: also a job whose query is not yet an operation, and no log of the tasks it aborts
        session.sparkContext.setLogLevel("OFF")
        session.sparkContext.cancelAllJobs()
    except Exception:  # noqa: BLE001 - a Spark Connect session has no context here, and logs on its server
        pass


JOB_DESCRIPTION = "spark.job.description"  # a local property: the thread's jobs' Description in Spark's UI


@contextlib.contextmanager
def described(session: SparkSession | None, text: str) -> Iterator[None]:
    """Name the Spark jobs and queries this thread starts meanwhile (the Description of Spark's UI, which showed
    call sites such as ``parquet at NativeMethodAccessorImpl.java:0``): an operator watching a cluster sees which
    delivery or project, which family and which step each one is. A Spark Connect session has no such property
    here: nothing is named."""
    context = getattr(session, "_sc", None)
    if context is None:
        yield
        return
    earlier = context.getLocalProperty(JOB_DESCRIPTION)
    context.setLocalProperty(JOB_DESCRIPTION, text)
    try:
        yield
    finally:
        context.setLocalProperty(JOB_DESCRIPTION, earlier)  # None removes it


def answer_promptly(session: SparkSession) -> None:
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

    def give_back_connection(connection: object) -> None:
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

    def get_session(self) -> SparkSession:
        # ABFS credentials and SPARK_REMOTE (a Databricks URL holds a token) are read at run time, never stored
        # in the resource's config, which the UI shows.
        from .azure import lake_session_conf
        from .config import Settings

        settings = Settings.from_env()
        remote = self.remote or settings.spark_remote
        conf = {**lake_session_conf(settings.lake, remote), **self.conf}
        return build_session(self.master, remote, conf)
