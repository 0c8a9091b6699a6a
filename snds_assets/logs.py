"""Structured logs: one JSON object per line, with run id, asset, partition and event."""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

from dagster import Field, logger


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        step = meta.get("step_key") or ""
        payload = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "run_id": meta.get("run_id"),
            "job": meta.get("job_name"),
            "step": step or None,
            "asset": _asset_of(event, step),
            "partition": _partition_of(event),
            "event": getattr(event, "event_type_value", None) or "log",
            "message": meta.get("orig_message") or record.getMessage(),
        }
        return json.dumps(payload, ensure_ascii=False, default=str)


def _asset_of(event, step: str) -> str | None:
    key = getattr(event, "asset_key", None) if event is not None else None
    if key is not None:
        return key.to_user_string()
    return step.replace("__", "/") if step else None


def _partition_of(event) -> str | None:
    try:
        return event.partition if event is not None else None
    except Exception:  # noqa: BLE001 - events without a partition notion
        return None


@logger({"log_level": Field(str, is_required=False, default_value="DEBUG")},
        description="JSON lines on stderr: one object per event with run id, asset, partition and event type.")
def json_logger(init_context):
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
            return f"{stamp}  ! {meta.get('orig_message') or record.getMessage()}"
        if kind is None and record.levelno >= logging.INFO:
            return f"{stamp}    {meta.get('orig_message') or record.getMessage()}"
        return ""


def _failure_message(event) -> str:
    try:
        error = event.event_specific_data.error
        while error.cause is not None and error.message.startswith("Error occurred while executing"):
            error = error.cause
        return " ".join(error.message.split())[:300]
    except AttributeError:
        return "failed"


class _SkipEmpty(logging.Filter):
    """Drops records with nothing to show; a formatting problem must never fail a run."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return bool(ProgressFormatter().format(record))
        except Exception:  # noqa: BLE001
            return False


@logger({"log_level": Field(str, is_required=False, default_value="DEBUG")},
        description="Terse progress lines for the snds command line.")
def progress_logger(init_context):
    log = logging.Logger("snds_progress", level=init_context.logger_config["log_level"])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ProgressFormatter())
    handler.addFilter(_SkipEmpty())
    log.addHandler(handler)
    return log
