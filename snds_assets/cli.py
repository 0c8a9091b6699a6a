"""The `snds` command (SPEC §4). Its runs go through the Dagster instance at DAGSTER_HOME (``INSTANCE_COMMANDS``).

Exit status: 0 done and accepted; 1 done but data rejected; 2 could not do the work (one-line message).
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
import traceback
from contextlib import contextmanager, nullcontext
from datetime import date
from pathlib import Path
from typing import Iterator, NoReturn

from . import problems
from .config import Settings
from .problems import one_line

EXIT_OK, EXIT_REJECTED, EXIT_ERROR = 0, 1, 2
# The commands that run Spark: with SPARK_REMOTE set they first check that its server answers (a down server made
# them wait about five minutes in silence). `snds ui` does not: the UI is useful while the server is down.
SPARK_COMMANDS = ("ingest", "extract", "demo")
# The commands that read the nomenclatures (SNDS_NOMENCLATURES): a missing folder is refused before they start, as
# the run's checks found it only after Spark had started and a failed run had been recorded. `snds ui` does not check
# it: the UI then shows the failing runs' messages.
NOMENCLATURE_COMMANDS = ("generate", *SPARK_COMMANDS)
# The commands that read the schema folder (SNDS_SCHEMAS), `snds ui` included: its code location's definitions are
# built from it and did not load without it.
SCHEMA_COMMANDS = (*NOMENCLATURE_COMMANDS, "ui")
# The folders each command writes, by setting: one that cannot be created is refused at the start, naming its setting
# (the lake's was found by Spark, in a failed run). `snds generate` checks its own, --out or SNDS_LANDING.
WRITTEN_FOLDERS = {"ingest": ("lake",), "extract": ("lake",), "demo": ("landing", "lake", "projects")}
# Folders a command reads: one that is a file was told as "[Errno 20] Not a directory" about a path below it.
READ_FOLDERS = {"ingest": ("landing",), "extract": ("projects",), "report": ("lake", "projects"),
                "ui": ("landing", "lake", "projects")}
# PySpark logs each analysis error it raises, with its whole Java stack, to stderr through loggers of its own that do
# not propagate (pyspark.errors.exceptions.base); the error itself still reaches the one-line message.
PYSPARK_ERROR_LOGGERS = ("DataFrameQueryContextLogger", "SQLQueryContextLogger")
# The commands that run through the Dagster instance: they make SNDS_HOME and DAGSTER_HOME. `snds report` and
# `snds generate` read or write only their own folders: run from any directory, they left a `./.snds` behind.
INSTANCE_COMMANDS = ("ingest", "extract", "demo", "ui")
# Dagster's SQLite storage puts DAGSTER_HOME's path in a ``sqlite:///`` URL unescaped: a ``?`` ends the path there and
# ``%41`` is read as ``A``, so the instance's database went beside the home, under another name.
URL_SIGNS = re.compile(r"\?|%[0-9A-Fa-f]{2}")


class UsageError(Exception):
    """A mistake the user can fix; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse prints the whole usage (a dozen lines for generate) before its error: SPEC §4 wants one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("configuration (option > environment variable > default under SNDS_HOME)")
    g.add_argument("--home", default=argparse.SUPPRESS, help="root of the embedded set-up (SNDS_HOME, ./.snds)")
    g.add_argument("--landing", default=argparse.SUPPRESS, help="where CNAM drops deliveries (SNDS_LANDING)")
    g.add_argument("--lake", default=argparse.SUPPRESS, help="the lake written by Spark (SNDS_LAKE)")
    g.add_argument("--projects", default=argparse.SUPPRESS, help="folder of project requests (SNDS_PROJECTS)")
    g.add_argument("--schemas", default=argparse.SUPPRESS, help="Table Schema folder (SNDS_SCHEMAS)")
    g.add_argument("--nomenclatures", default=argparse.SUPPRESS, help="nomenclature CSV folder (SNDS_NOMENCLATURES)")
    g.add_argument("--log-format", choices=("text", "json"), default=argparse.SUPPRESS,
                   help="text (default) or json: one JSON object per line with run id, asset, partition and event")
    return common


def _port(text: str) -> int:
    """A TCP port: the webserver took 70000 as 70000 % 65536 = 4464 while announcing 70000."""
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1 to 65535)")
    return int(text)


def _iso_date(text: str) -> date:
    """A calendar date written YYYY-MM-DD: argparse said "invalid fromisoformat value", and Python takes 20220101."""
    from .patterns import iso_day

    day = iso_day(text)
    if day is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)")
    return day


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(
        prog="snds", parents=[common],
        description="Receive, verify and curate CNAM deliveries of the SNDS, and extract research projects' data.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    gen = sub.add_parser("generate", parents=[common], help="write a synthetic CNAM delivery to LANDING/<ID>/")
    gen.add_argument("--out", help="landing folder to write into (default: SNDS_LANDING)")
    gen.add_argument("--delivery-id", default=date.today().isoformat(), help="YYYY-MM-DD[_suffix] (default: today)")
    gen.add_argument("--patients", type=int, default=1000,
                     help="persons alive on any day (default 1000; IR_BEN_R also holds those dead since 2006)")
    gen.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    gen.add_argument("--defects", action="store_true", help="inject documented defects; ground truth written beside")
    gen.add_argument("--start", type=_iso_date, default=date(2022, 1, 1), help="care period start (ISO date)")
    gen.add_argument("--end", type=_iso_date, default=date(2023, 12, 31), help="care period end (ISO date)")
    gen.add_argument("--tables", help="comma-separated families or delivered names (default: the whole catalog "
                     "but IR_BEN_R_ARC)")
    gen.add_argument("--gzip", action="store_true", help="write .csv.gz files")
    gen.add_argument("--rows-per-file", type=int, help="split large tables into part files of this many rows")
    gen.add_argument("--delimiter", default=";", help="field delimiter (default ;)")
    gen.add_argument("--encoding", default="utf-8", choices=("utf-8", "latin-1"), help="file encoding")
    gen.add_argument("--date-format", default="default", help="strftime format of ISO date fields, e.g. %%d/%%m/%%Y")

    ing = sub.add_parser("ingest", parents=[common], help="receive, verify and curate one delivery")
    ing.add_argument("delivery_id", metavar="DELIVERY_ID",
                     help="the delivery's folder name in the landing zone: YYYY-MM-DD or YYYY-MM-DD_<suffix>")

    ext = sub.add_parser("extract", parents=[common], help="identify a project's cohort and extract its tables")
    ext.add_argument("project_id", metavar="PROJECT_ID", help="the request <PROJECT_ID>.yaml in SNDS_PROJECTS")

    sub.add_parser("demo", parents=[common], help="generate, ingest and extract a demo project under SNDS_HOME")

    ui = sub.add_parser("ui", parents=[common], help="the Dagster UI and daemon (sensors, automation)")
    ui.add_argument("--port", type=_port, default=3000, help="TCP port of the webserver (default 3000)")
    ui.add_argument("--host", default="127.0.0.1",
                    help="address the webserver listens on (default 127.0.0.1, this machine only; 0.0.0.0: every "
                         "interface, reachable from other machines)")

    rep = sub.add_parser("report", parents=[common], help="print the summary of a delivery or project report")
    rep.add_argument("target", metavar="DELIVERY_ID|PROJECT_ID",
                     help="a delivery (YYYY-MM-DD[_suffix]) or a project id")
    return parser


# Where the demo must not write (SPEC §4: "all under $SNDS_HOME"): a production landing zone, lake, projects
# folder or Dagster instance set in the environment. Options given to `snds demo` still apply.
DEMO_IGNORES = ("SNDS_LANDING", "SNDS_LAKE", "SNDS_PROJECTS", "DAGSTER_HOME")


def resolve_settings(args: argparse.Namespace) -> Settings:
    overrides = {k: getattr(args, k, None) for k in ("home", "landing", "lake", "projects", "schemas", "nomenclatures")}
    env = None
    if args.command == "demo":
        ignored = [v for v in DEMO_IGNORES if os.environ.get(v)]
        if ignored:
            print(f"snds demo: everything under SNDS_HOME; {', '.join(ignored)} not used", file=sys.stderr)
        env = {k: v for k, v in os.environ.items() if k not in DEMO_IGNORES}
    settings = Settings.from_env(env=env, **overrides)
    for commands, option, what in ((SCHEMA_COMMANDS, "schemas", "schema"),
                                   (NOMENCLATURE_COMMANDS, "nomenclatures", "nomenclature")):
        folder = getattr(settings, option)
        if args.command in commands and folder:
            setting = setting_name(args, option)
            refused = not_a_folder(setting, folder)
            if refused is None and not Path(folder).is_dir():
                refused = UsageError(f"{setting} {folder}: {what} folder not found")
            if refused is not None:
                raise refused
    return settings


# The folders that default to one under SNDS_HOME.
HOME_FOLDERS = ("landing", "lake", "projects")


def setting_name(args: argparse.Namespace, option: str) -> str:
    """How the user gave a setting: its option when given, else its variable; a folder left to its default under
    the home folder is named by how the home was given (the user set no SNDS_LAKE to fix)."""
    if getattr(args, option, None) is not None:
        return f"--{option}"
    variable = f"SNDS_{option.upper()}"
    ignored = getattr(args, "command", None) == "demo" and variable in DEMO_IGNORES
    shell = getattr(args, "environ", os.environ)  # main() exports the resolved settings after saving the shell's
    if option in HOME_FOLDERS and (ignored or not shell.get(variable)):
        return "--home" if getattr(args, "home", None) is not None else "SNDS_HOME"
    return variable


def not_a_folder(setting: str, folder: str) -> UsageError | None:
    """The error for a folder setting that is, or lies under, a file (Python says "[Errno 20] Not a directory"
    about a path below it, not which setting to fix); None when nothing is in the way."""
    path = Path(folder)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    return None if blocker is None else UsageError(f"{setting} {folder} must be a folder, but {blocker} is a file")


def cannot_create(setting: str, folder: str, exc: OSError) -> UsageError:
    """The error for a folder setting whose folder the system refused to make ("[Errno 2] No such file or
    directory: '/proc/nope'" named neither the setting nor what to fix)."""
    where = f"{exc.filename}: " if exc.filename and str(exc.filename) != folder else ""
    return UsageError(f"{setting} {folder} cannot be created: {where}{exc.strerror or exc}")


def unusable_folder(setting: str, folder: str) -> UsageError | None:
    """The error for a local folder setting that is, or lies under, a file, or that cannot be created; None when
    it exists or can be made. Nothing is left behind: the outermost missing folder is made, then removed."""
    if "://" in folder:
        return None
    blocked = not_a_folder(setting, folder)
    path = Path(folder)
    missing = next((p for p in reversed((path, *path.parents)) if not p.exists()), None)
    if blocked or missing is None:
        return blocked
    try:
        missing.mkdir()
    except FileExistsError:  # made meanwhile, by another command
        return None
    except OSError as exc:
        return cannot_create(setting, folder, exc)
    try:
        missing.rmdir()
    except OSError:  # another command wrote into it meanwhile: it is theirs now
        pass
    return None


def check_folders(settings: Settings, args: argparse.Namespace) -> None:
    """Refuse, before anything runs, a folder the command writes that cannot be made (``WRITTEN_FOLDERS``) and a
    folder it reads that is a file (``READ_FOLDERS``)."""
    for option in WRITTEN_FOLDERS.get(args.command, ()):
        refused = unusable_folder(setting_name(args, option), getattr(settings, option))
        if refused is not None:
            raise refused
    for option in READ_FOLDERS.get(args.command, ()):
        folder = getattr(settings, option)
        refused = None if "://" in folder else not_a_folder(setting_name(args, option), folder)
        if refused is not None:
            raise refused


def prepare_environment(settings: Settings, instance: bool = True) -> None:
    """Make every Dagster run of this process (and its resources) see the resolved settings; with ``instance``,
    make the home folders and the local Dagster instance's configuration."""
    os.environ.update(settings.as_env())
    if not instance:
        return
    if URL_SIGNS.search(settings.dagster_home):
        raise UsageError(f"DAGSTER_HOME {settings.dagster_home} holds '?' or a '%' and two hex digits, which Dagster's "
                         "SQLite storage reads as part of a URL (its database would be written elsewhere): choose a "
                         "folder without them")
    for name, folder in (("SNDS_HOME", settings.home), ("DAGSTER_HOME", settings.dagster_home)):
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # said "[Errno 17] File exists" or "[Errno 2] No such file…", not which setting
            raise not_a_folder(name, folder) or cannot_create(name, folder, exc) from exc
    config = Path(settings.dagster_home) / "dagster.yaml"
    if not config.exists() or config.read_text() in _EARLIER_INSTANCE_CONFIGS:
        config.write_text(INSTANCE_CONFIG)
    create_instance_once(settings.dagster_home)


INSTANCE_MADE = ".snds-instance-made"  # in DAGSTER_HOME: its storage exists, made by a command of ours


def _local_storage(config: Path) -> bool:
    """Whether the instance keeps its storage in SQLite files under DAGSTER_HOME (no storage named, or SQLite's):
    a database server's (PostgreSQL) is made by Dagster there, and a server that cannot be reached is told where
    the command opens the instance."""
    import yaml

    try:
        data = yaml.safe_load(config.read_text()) if config.exists() else {}
    except (OSError, yaml.YAMLError):
        return False
    data = data if isinstance(data, dict) else {}
    named = [data[k] for k in ("storage", "run_storage", "event_log_storage", "schedule_storage") if data.get(k)]
    return all("sqlite" in str(s).lower() for s in named)


def create_instance_once(dagster_home: str) -> None:
    """Make the Dagster instance's storage, one command at a time: two commands making a brand-new instance at
    once both created its SQLite tables, and the second failed with "table alembic_version already exists"."""
    import fcntl

    home = Path(dagster_home)
    if (home / INSTANCE_MADE).exists() or not _local_storage(home / "dagster.yaml"):
        return
    with open(home / ".snds-instance.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released with the file
        if (home / INSTANCE_MADE).exists():
            return
        from dagster import DagsterInstance

        DagsterInstance.get().dispose()
        (home / INSTANCE_MADE).touch()


_FIRST_INSTANCE_CONFIG = "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"
# No telemetry, no first-visit pop-up in the UI over the asset graph, never two queued runs (sensors, UI) on one
# delivery or project at once (they would write the same folders), and one reception at a time, whatever its
# delivery (runs.RECEPTION_TAG). deploy/dagster.yaml does the same.
_PARTITION_LIMITS_CONFIG = """concurrency:
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
"""
_RECEPTION_LIMIT_CONFIG = """      - key: snds/reception
        limit: 1
"""
# The steps of a reception declare a pool (runs.RECEPTION_POOL): at run granularity the queue holds any run of them
# while another is in progress, asset-graph runs included, instead of launching one to wait in a run slot.
_POOLS_CONFIG = """  pools:
    granularity: run
    default_limit: 1
"""
_CONCURRENCY_CONFIG = _PARTITION_LIMITS_CONFIG + _RECEPTION_LIMIT_CONFIG + _POOLS_CONFIG
# Compute logs where Dagster keeps them ($DAGSTER_HOME/storage), their terminal copy spared by Ctrl-C.
_COMPUTE_LOGS_CONFIG = """compute_logs:
  module: snds_assets.compute_logs
  class: InterruptSafeComputeLogManager
"""
# Every run's events as JSON lines under SNDS_HOME (logs.RunLogFiles), whoever launched it.
_RUN_LOGS_CONFIG = """python_logs:
  dagster_handler_config:
    handlers:
      run_log_files:
        class: snds_assets.logs.RunLogFiles
"""
INSTANCE_CONFIG = _FIRST_INSTANCE_CONFIG + _CONCURRENCY_CONFIG + _COMPUTE_LOGS_CONFIG + _RUN_LOGS_CONFIG
# What earlier versions wrote, replaced as they are; a file edited by its operator is left as it is.
_EARLIER_INSTANCE_CONFIGS = (
    _FIRST_INSTANCE_CONFIG, _FIRST_INSTANCE_CONFIG + _PARTITION_LIMITS_CONFIG,
    _FIRST_INSTANCE_CONFIG + _PARTITION_LIMITS_CONFIG + _COMPUTE_LOGS_CONFIG,
    _FIRST_INSTANCE_CONFIG + _PARTITION_LIMITS_CONFIG + _RECEPTION_LIMIT_CONFIG + _COMPUTE_LOGS_CONFIG,
    _FIRST_INSTANCE_CONFIG + _CONCURRENCY_CONFIG + _COMPUTE_LOGS_CONFIG,
)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log_format = getattr(args, "log_format", "text")
    stray = None
    terminated_as = _sigterm_as_interrupt() if args.command != "ui" else None
    try:
        settings = resolve_settings(args)
        args.environ = dict(os.environ)  # the shell's, before the settings are exported: `snds demo` tells its UI
        prepare_environment(settings, instance=args.command in INSTANCE_COMMANDS)
        check_folders(settings, args)
        stray = _stray_warnings_to_details_log(settings)
        if settings.spark_remote and args.command in SPARK_COMMANDS:
            from .spark import check_spark_connect

            check_spark_connect(settings.spark_remote)  # before a delivery is generated or a run is launched
        elif args.command in SPARK_COMMANDS:
            from .spark import check_java

            check_java()  # likewise: a run without Java failed with "Java gateway process exited…"
        from . import commands

        handler = getattr(commands, f"cmd_{args.command}")
        with pyspark_errors_to_details_log(settings) if args.command in SPARK_COMMANDS else nullcontext():
            code = handler(settings, args, log_format)
    except KeyboardInterrupt:
        print("snds: interrupted", file=sys.stderr)
        code = EXIT_ERROR
    except BrokenPipeError:
        # The reader of the output went away (`snds report X | head -1`): not a failure worth a traceback. Later
        # writes, the final flush included, go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the contract is one line, never a traceback
        code = EXIT_ERROR
        refused = _azure_refusal(exc, args, locals().get("settings"))
        message = f"snds: error: {one_line(refused, 400) if refused else _one_line(exc)}"
        if not _is_user_error(exc):
            log = _write_traceback(exc)
            if log:
                message += f" (details in {log})"
        print(message, file=sys.stderr)
    finally:
        if stray is not None:
            logging.getLogger().removeHandler(stray)
            stray.close()
        if terminated_as is not None:
            signal.signal(signal.SIGTERM, terminated_as)
    sys.stdout.flush()
    return code


def _sigterm_as_interrupt():
    """SIGTERM (`timeout`, a service manager) as Ctrl-C for the whole command, as Dagster maps it once a run is under
    way: before (or without) a run it killed the command, so `snds generate` left its half-written delivery in the
    landing zone. Returns the handler to put back, None when SIGTERM is already handled or ignored."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    return signal.signal(signal.SIGTERM, signal.default_int_handler)


def details_log(home: str) -> Path:
    """Where tracebacks and libraries' warnings go, so that stderr keeps one line."""
    return Path(home) / "logs" / "snds-error.log"


def _stray_warnings_to_details_log(settings: Settings) -> logging.Handler:
    """Libraries' warnings through the root logger went to stderr through logging's last resort, several lines
    each (Dagster's "Retrying failed database connection" on an unreachable PostgreSQL): they go to the details
    log, so that stderr keeps the one-line message of SPEC §4."""
    handler = _details_handler(settings)
    logging.getLogger().addHandler(handler)
    return handler


class _LazyFileHandler(logging.FileHandler):
    """A file handler that makes its folder when it first writes: a command that logs nothing leaves none."""

    def _open(self):  # noqa: ANN202 - logging.FileHandler's own hook
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def _details_handler(settings: Settings) -> logging.Handler:
    """A logging handler writing warnings and errors to the details log."""
    handler = _LazyFileHandler(details_log(settings.home), encoding="utf-8", delay=True)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


@contextmanager
def pyspark_errors_to_details_log(settings: Settings) -> Iterator[None]:
    """While a command runs Spark, PySpark's records of the analysis errors it raises go to the details log, not to
    stderr (``PYSPARK_ERROR_LOGGERS``): the stack they hold is not the one line SPEC §4 allows."""
    from pyspark.logger import PySparkLogger

    handler = _details_handler(settings)
    saved = []
    for name in PYSPARK_ERROR_LOGGERS:
        logger = PySparkLogger.getLogger(name)
        saved.append((logger, list(logger.handlers)))
        for existing in saved[-1][1]:
            logger.removeHandler(existing)
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, handlers in saved:
            logger.removeHandler(handler)
            for existing in handlers:
                logger.addHandler(existing)
        handler.close()


def _azure_refusal(exc: BaseException, args: argparse.Namespace, settings: Settings | None) -> str | None:
    """What to fix when Azure Storage refused the credentials of a landing zone or lake on Azure (``exc`` or an
    exception it arose from); None otherwise."""
    from .reception.storage import azure_refusal

    if settings is None:
        return None
    urls = {setting_name(args, "landing"): settings.landing, setting_name(args, "lake"): settings.lake,
            "--out": getattr(args, "out", None) or ""}
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        told = azure_refusal(type(error).__name__, str(error), urls)
        if told:
            return told
        error = error.__cause__ or error.__context__
    return None


def _is_user_error(exc: BaseException) -> bool:
    from .catalog import CatalogError
    from .reception.manifest import ManifestError

    names = {"DeliveryNotFound", "RequestError", "UsageError", "ProjectNotFound", "SparkConnectUnreachable",
             "JavaMissing", "RunInterrupted"}
    return isinstance(exc, (UsageError, ManifestError, CatalogError, FileNotFoundError, ValueError)) or \
        type(exc).__name__ in names


def _one_line(exc: BaseException) -> str:
    """The error's message on one line: whole when it is ours to the user (the problems of a manifest or a request
    told together, ``problems.LIMIT``), cut after 400 characters otherwise (a library's, such as a Java trace)."""
    return one_line(str(exc), problems.LIMIT if _is_user_error(exc) else 400) or type(exc).__name__


def _write_traceback(exc: BaseException) -> str | None:
    try:
        log = details_log(os.environ.get("SNDS_HOME", ".snds"))
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as fh:
            fh.write("".join(traceback.format_exception(exc)))
        return str(log)
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
