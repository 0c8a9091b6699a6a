"""Structured logs: one JSON object per line, with run id, asset, partition and event."""
from __future__ import annotations

import json
import logging
import re
import shutil
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO

from dagster import AssetKey, BetaWarning, DagsterEvent, DagsterEventType, Field, InitLoggerContext, logger

from .problems import LIMIT, one_line

if TYPE_CHECKING:
    from dagster._utils.error import SerializableErrorInfo


# The events whose error says why a step or a run failed. A run's failure is "PIPELINE_FAILURE", not "RUN_FAILURE":
# a run refused before its first step (a resource refusing it: another run holds the delivery) is told by it alone.
FAILURE_EVENTS = frozenset({DagsterEventType.STEP_FAILURE.value, DagsterEventType.RUN_FAILURE.value,
                            DagsterEventType.RESOURCE_INIT_FAILURE.value})


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``partition`` is the event's, else the run's (its ``dagster/partition`` tag)."""

    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        step = meta.get("step_key") or ""
        payload = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": _level_of(event) or record.levelname,
            "run_id": meta.get("run_id"),
            "job": meta.get("job_name"),
            "step": step or None,
            "asset": _asset_of(event, step),
            "partition": _partition_of(event) or (meta.get("job_tags") or {}).get("dagster/partition"),
            "event": getattr(event, "event_type_value", None) or "log",
            "message": meta.get("orig_message") or record.getMessage(),
        }
        cause = failure_cause(event) if payload["event"] in FAILURE_EVENTS else None
        if cause is not None:  # Dagster's message says "Execution of step … failed." alone, not why
            payload["error"] = {"class": cause.cls_name, "message": _failure_message(event, LIMIT)}
        return json.dumps(payload, ensure_ascii=False, default=str)


def _level_of(event) -> str | None:
    """Dagster logs every event at DEBUG: a failed check is told at its severity, for a reader filtering by level."""
    if getattr(event, "event_type_value", None) != "ASSET_CHECK_EVALUATION":
        return None
    data = event.event_specific_data
    if getattr(data, "passed", True):
        return None
    return "ERROR" if getattr(getattr(data, "severity", None), "value", "") == "ERROR" else "WARNING"


def _asset_of(event, step: str) -> str | None:
    """The event's asset; a check evaluation's is in its data (``DagsterEvent.asset_key`` is None for it, and the
    step of a multi-asset, ``receive``, is no asset)."""
    key = getattr(event, "asset_key", None) if event is not None else None
    if key is None and event is not None:
        key = getattr(getattr(event, "event_specific_data", None), "asset_key", None)
    if isinstance(key, AssetKey):
        return key.to_user_string()
    return step.replace("__", "/") if step else None


def _partition_of(event) -> str | None:
    try:
        return event.partition if event is not None else None
    except Exception:  # noqa: BLE001 - events without a partition notion
        return None


# Where every run's JSON lines go, under SNDS_HOME: one file per run, named by its run id.
RUN_LOGS = ("logs", "runs")
# Dagster calls an instance's python_logs handlers a beta feature each time it reads them, once per run and command.
warnings.filterwarnings("ignore", message="Handling yaml-defined logging configuration", category=BetaWarning)


def run_logs_folder() -> Path:
    from .config import Settings

    return Path(Settings.from_env().home, *RUN_LOGS)


class RunLogFiles(logging.Handler):
    """Every run's events as JSON lines, ``<SNDS_HOME>/logs/runs/<RUN_ID>.jsonl``, whoever launched the run (a
    command, a sensor, the UI, a backfill): the instance's ``python_logs`` (``snds``'s dagster.yaml and
    deploy/dagster.yaml) hands this handler the records of every run, where a logger would need each run's config."""

    def __init__(self, folder: str | None = None):
        super().__init__()
        self.folder = folder
        self.formatter = JsonFormatter()
        self._paths: dict[str, Path] = {}  # each run's file, its folder made once
        self._refused: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        run_id = (getattr(record, "dagster_meta", None) or {}).get("run_id")
        if not run_id or run_id in self._refused:
            return
        path = self._paths.get(run_id)
        try:  # a handler that raised would fail the run: told once instead, not per event
            if path is None:
                path = self._paths[run_id] = Path(self.folder or run_logs_folder(), f"{run_id}.jsonl")
                path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as out:
                out.write(self.format(record) + "\n")
        except Exception as exc:  # noqa: BLE001
            self._refused.add(run_id)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else one_line(exc)
            where = path or f"<SNDS_HOME>/logs/runs/{run_id}.jsonl"
            print(f"run {run_id}: its JSON log {where} cannot be written ({reason}); its events stay in Dagster's "
                  "event log", file=sys.stderr)


@logger({"log_level": Field(str, is_required=False, default_value="DEBUG")},
        description="JSON lines on stderr: one object per event with run id, asset, partition and event type.")
def json_logger(init_context: InitLoggerContext) -> logging.Logger:
    level = init_context.logger_config["log_level"]
    log = logging.Logger("snds_json", level=level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    return log


class ProgressFormatter(logging.Formatter):
    """Terse progress for the terminal: one line per step started/finished/failed, and warnings."""

    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        kind = getattr(event, "event_type_value", None)
        step = (meta.get("step_key") or "").replace("__", "/")
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        if kind == "STEP_START":
            return f"{stamp}  … {step}"
        if kind == "STEP_SUCCESS":
            return f"{stamp}  ✓ {step}"
        if kind == "STEP_FAILURE":
            return f"{stamp}  ✗ {step}: {_failure_message(event)}"
        if kind == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            if not getattr(data, "passed", True):
                return f"{stamp}    check {data.asset_key.to_user_string()}:{data.check_name} failed ({data.severity.value})"
            return ""
        if kind is None and record.levelno >= logging.WARNING:
            return f"{stamp}  ! {_steps_once(meta.get('orig_message') or record.getMessage())}"
        if kind is None and record.levelno >= logging.INFO:
            return f"{stamp}    {_checks_not_evaluated(meta.get('orig_message') or record.getMessage())}"
        return ""


# Dagster's line for the outputs a step did not yield: here the checks it did not evaluate, each named.
_NOT_YIELDED = re.compile(r"op '[^']*' did not yield or return expected outputs \{(.*)\}\.?")


def _checks_not_evaluated(message: str) -> str:
    """A step's checks not evaluated give no result, so Dagster listed them all on one line (some hundred output
    names for a reception): they are counted instead, the materialisations saying why."""
    from .checks import COHORT_CHECKS, CURATED_CHECKS, EXTRACT_CHECKS, RAW_RULES

    found = _NOT_YIELDED.fullmatch(message)
    if not found:
        return message
    names = re.findall(r"'([^']*)'", found[1])
    checks = {*RAW_RULES, *(n for n, _ in CURATED_CHECKS), *EXTRACT_CHECKS, *COHORT_CHECKS, "delivery_accepted"}
    if not names or not all(any(n.endswith(f"_{c}") for c in checks) for n in names):
        return message
    return (f"{len(names)} check(s) not evaluated, so without a result: each asset's materialisation says why "
            "(`checks not evaluated`)")


# A list of step keys in Dagster's "Dependencies for step … failed: ['receive', …] were not executed: […]".
_STEP_KEYS = re.compile(r"\['[^']*'(?:, '[^']*')*\]")


def _steps_once(message: str) -> str:
    """Dagster names a failed step once per input of the step waiting for it: the reception report's line listed
    ``receive`` 42 times. Each is named once, in order."""
    if not message.startswith("Dependencies for step "):
        return message
    return _STEP_KEYS.sub(lambda m: str(list(dict.fromkeys(re.findall(r"'([^']*)'", m[0])))), message)


# Ctrl-C or SIGTERM ending a step: Dagster's interrupt error, or PySpark's KeyboardInterrupt once a Spark session has
# put its own SIGINT handler in place (it cancels the session's jobs first).
INTERRUPTIONS = ("DagsterExecutionInterruptedError", "KeyboardInterrupt")


def _failure_message(event, limit: int = 300) -> str:
    """The user's exception under Dagster's wrappers, whose message (``dagster._core.errors.…: Error occurred
    while executing op …``) says nothing about what to fix."""
    error = failure_cause(event)
    if error is None:
        return "failed"
    if error.cls_name in INTERRUPTIONS:  # the command's own line says what to do next
        return "interrupted"
    text = java_failure(error.message) if error.cls_name == "Py4JJavaError" else _told_plainly(error)
    return one_line(text, limit)


def _told_plainly(error: SerializableErrorInfo) -> str:
    """An exception of ours is told by its message, written to say what to fix: its module path and class
    (``snds_assets.curation.state.DamagedPartition: ``) add nothing to the line. Others keep their class."""
    ours = re.match(r"snds_assets(\.\w+)*\." + re.escape(error.cls_name) + r": ", error.message)
    return error.message[ours.end():] if ours else error.message


_JAVA_CAUSE = re.compile(r"^Caused by: (.+)$")
# A file of a published partition gone under a reader: another run swapped the partition in meanwhile (the old
# one is moved aside, then deleted), a reception of that delivery alongside an extraction or another reception.
_REPLACED = re.compile(r"FileNotFoundException: .*/curated/(?P<family>[^/\s]+)/delivery_id=(?P<delivery>[^/\s]+)/")


def java_failure(message: str) -> str:
    """A Spark (JVM) failure told by its root cause first: a ``Py4JJavaError``'s message is the whole Java stack
    trace, whose first line (``An error occurred while calling o514.parquet.``) and top exception (``Task failed
    while writing rows to file:…``) ran past the line's length before its cause (``No space left on device``,
    ``Mkdirs failed to create …``: what to fix) was reached."""
    lines = message.splitlines()
    top = next((line[2:] for line in lines if line.startswith(": ")), "")
    causes = [m[1] for m in map(_JAVA_CAUSE.match, lines) if m]  # top level only: not a suppressed one's causes
    root = causes[-1] if causes else ""
    if not top and not root:
        return message
    if not root:
        return f"Spark failed: {top}"
    replaced = _REPLACED.search(root)
    if replaced:
        return (f"the curated partition of delivery {replaced['delivery']} of {replaced['family']} was replaced "
                f"while this run read it (the delivery was received again meanwhile): run again once that "
                f"reception has ended (Spark failed: {root})")
    return f"Spark failed: {root}" + (f" ({top})" if top and root not in top else "")


def failure_cause(event: DagsterEvent) -> SerializableErrorInfo | None:
    """The error info (class name, message) of the user's exception under Dagster's wrappers in a failure event
    (or under the ``Failure`` that tells it, ``problems.told_as_failure``), or None when the event carries none."""
    try:
        error = event.event_specific_data.error
        while error.cause is not None and (error.cls_name.startswith("Dagster") or error.cls_name == "Failure"):
            error = error.cause
    except AttributeError:
        return None
    return error if hasattr(error, "message") else None


class ProgressBar:
    """A one-line bar redrawn in place on a terminal; on a pipe or a CI log, plain lines (each step of a short
    count, each tenth of a long one), so that nothing is lost to carriage returns. On a terminal the bar fits its
    width (narrower, then its detail cut): a bar that wrapped would leave its first line behind at each redraw."""

    def __init__(self, stream: TextIO | None = None, width: int = 28, columns: Callable[[], int] | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.columns = columns or (lambda: shutil.get_terminal_size().columns)
        self.shown = ""  # the bar currently on screen (terminal only)
        self._last: tuple = ()

    def update(self, label: str, done: int, total: int, detail: str = "") -> None:
        done = max(0, min(done, total))
        share = done / total if total else 1.0
        tail = f" {int(100 * share):3d}% {done}/{total}" + (f"  {detail}" if detail else "")
        width = self.width
        if self.tty:  # the bar narrows (to 10) before the detail is cut
            room = max(self.columns() - 1, 20)
            width = max(10, min(width, room - len(label) - 3 - len(tail)))
        filled = int(width * share)
        text = f"{label} [{'#' * filled}{'.' * (width - filled)}]{tail}"
        if self.tty:
            text = text[:room]
            self.stream.write("\r\033[K" + text)
            self.shown = text
            if done >= total:
                self.stream.write("\n")
                self.shown = ""
        else:
            step = (label, done, detail) if total <= 50 else (label, int(10 * share))
            if step != self._last:
                self._last = step
                self.stream.write(text + "\n")
        self.stream.flush()

    def line(self, text: str) -> None:
        """A line of its own, printed above the bar (which is then redrawn)."""
        if self.tty and self.shown:
            self.stream.write("\r\033[K" + text + "\n" + self.shown)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


STEP_PROGRESS = re.compile(r"^\[(\d+)/(\d+)\] (.*)$")


def step_progress(log: logging.Logger, done: int, total: int, what: str) -> None:
    """Log the start of item ``done`` of ``total`` in a step; the CLI draws it as a progress bar."""
    log.info(f"[{done}/{total}] {what}")


class ProgressHandler(logging.Handler):
    """The CLI's view of a run: a bar per step that reports ``[i/n]`` progress, lines for the rest.

    A formatting problem must never fail a run: errors are swallowed."""

    def __init__(self, stream: TextIO | None = None):
        super().__init__()
        self.bar = ProgressBar(stream)
        self.formatter_ = ProgressFormatter()
        self.open: dict[str, tuple[str, int]] = {}  # step -> (job, total) of a bar being drawn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            meta = getattr(record, "dagster_meta", None) or {}
            event = meta.get("dagster_event")
            step = (meta.get("step_key") or "").replace("__", "/")
            label = meta.get("job_name") or "run"
            match = STEP_PROGRESS.match(str(meta.get("orig_message") or record.getMessage()))
            if event is None and match:
                done, total = int(match.group(1)), int(match.group(2))
                self.open[step] = (label, total)
                self.bar.update(label, done - 1, total, match.group(3))
                return
            kind = getattr(event, "event_type_value", None)
            if kind == "STEP_SUCCESS" and step in self.open:
                label, total = self.open.pop(step)
                self.bar.update(label, total, total, "done")
            text = self.formatter_.format(record)
            if text:
                self.bar.line(text)
        except Exception:  # noqa: BLE001
            return


@logger({"log_level": Field(str, is_required=False, default_value="DEBUG")},
        description="Progress bars and terse lines for the snds command line.")
def progress_logger(init_context: InitLoggerContext) -> logging.Logger:
    log = logging.Logger("snds_progress", level=init_context.logger_config["log_level"])
    log.addHandler(ProgressHandler())
    return log
