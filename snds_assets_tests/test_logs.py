"""The CLI's loggers: progress lines and JSON events, never failing a run (a failed check included)."""
import json

from dagster import (
    AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, DagsterInstance, Definitions, MaterializeResult, asset,
    define_asset_job,
)

from snds_assets.logs import json_logger, progress_logger


@asset(check_specs=[AssetCheckSpec("c", asset="a")])
def a(context):
    context.log.info("[1/1] doing a")
    return MaterializeResult(check_results=[AssetCheckResult(check_name="c", passed=False, severity=AssetCheckSeverity.WARN)])


DEFS = Definitions(assets=[a], jobs=[define_asset_job("j")], loggers={"progress": progress_logger, "json": json_logger})


def _run(name):
    return DEFS.resolve_job_def("j").execute_in_process(
        run_config={"loggers": {name: {"config": {"log_level": "DEBUG"}}}}, instance=DagsterInstance.ephemeral(),
        raise_on_error=False)


def test_progress_lines(capsys):
    assert _run("progress").success
    err = capsys.readouterr().err
    assert "… a" in err and "[1/1] doing a" in err and "check a:c failed (WARN)" in err and "✓ a" in err


def test_json_events_one_object_per_line(capsys):
    result = _run("json")
    assert result.success
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    kinds = {e["event"] for e in events}
    assert {"STEP_START", "ASSET_CHECK_EVALUATION", "STEP_SUCCESS", "log"} <= kinds
    assert all(e["run_id"] == result.run_id for e in events)
    assert any(e["asset"] == "a" and e["event"] == "STEP_START" for e in events)
