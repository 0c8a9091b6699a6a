"""The sensors: deliveries are picked up only when complete, once per manifest; projects when new or changed."""
import hashlib
import json

import pytest
from dagster import AddDynamicPartitionsRequest, AssetKey, DagsterInstance, build_sensor_context

from snds_assets.config import Settings
from snds_assets.definitions import build_definitions


def _write_delivery(landing, delivery_id, manifest=True, tables=("ER_PRS_F", "T_MCO23C")):
    folder = landing / delivery_id
    folder.mkdir(parents=True)
    entries = []
    for table in tables:
        data = b"A;B\n1;2\n"
        (folder / f"{table}.csv").write_bytes(data)
        entries.append({"table": table, "files": [{"path": f"{table}.csv", "rows": 1, "bytes": len(data),
                                                    "sha256": hashlib.sha256(data).hexdigest()}]})
    if manifest is True:
        (folder / "manifest.json").write_text(json.dumps({"delivery_id": delivery_id, "tables": entries}))
    elif manifest:
        (folder / "manifest.json").write_text(manifest)


@pytest.fixture()
def env(snds_env):
    settings = Settings.from_env()
    defs = build_definitions(settings)
    instance = DagsterInstance.ephemeral()
    return settings, defs, instance


def _tick(defs, instance, name, cursor=None):
    sensor = next(s for s in defs.sensors if s.name == name)
    context = build_sensor_context(instance=instance, cursor=cursor, resources={"snds": defs.resources["snds"]})
    return sensor(context)


def test_complete_delivery_requested_once(env, tmp_path):
    settings, defs, instance = env
    from pathlib import Path

    landing = Path(settings.landing)
    _write_delivery(landing, "2026-11-15")
    _write_delivery(landing, "2026-11-16", manifest=False)
    _write_delivery(landing, "2026-11-17", manifest="{not json")
    bad_format = {"delivery_id": "2026-11-18", "format": {"header": "false"}, "tables": [{"table": "ER_PRS_F"}]}
    _write_delivery(landing, "2026-11-18", manifest=json.dumps(bad_format))  # skipped: the manifest is unreadable
    (landing / "notes").mkdir()

    result = _tick(defs, instance, "cnam_deliveries")
    assert [r.partition_key for r in result.run_requests] == ["2026-11-15"]
    request = result.run_requests[0]
    assert set(request.asset_selection) >= {
        AssetKey(["raw", "ER_PRS_F"]), AssetKey(["curated", "ER_PRS_F"]),
        AssetKey(["raw", "T_MCOaaC"]), AssetKey(["curated", "T_MCOaaC"]), AssetKey(["reports", "reception"]),
    }
    assert AssetKey(["raw", "IR_BEN_R"]) not in request.asset_selection
    adds = [r for r in result.dynamic_partitions_requests if isinstance(r, AddDynamicPartitionsRequest)]
    assert adds and adds[0].partition_keys == ["2026-11-15"] and adds[0].partitions_def_name == "deliveries"

    again = _tick(defs, instance, "cnam_deliveries", cursor=result.cursor)
    assert not again.run_requests

    _write_delivery(landing, "2026-12-01")
    third = _tick(defs, instance, "cnam_deliveries", cursor=result.cursor)
    assert [r.partition_key for r in third.run_requests] == ["2026-12-01"]
    assert third.run_requests[0].run_key != request.run_key


def test_changed_manifest_is_requested_again(env):
    settings, defs, instance = env
    from pathlib import Path

    landing = Path(settings.landing)
    _write_delivery(landing, "2026-11-15")
    first = _tick(defs, instance, "cnam_deliveries")
    manifest = json.loads((landing / "2026-11-15" / "manifest.json").read_text())
    manifest["tables"] = manifest["tables"][:1]
    (landing / "2026-11-15" / "manifest.json").write_text(json.dumps(manifest))
    second = _tick(defs, instance, "cnam_deliveries", cursor=first.cursor)
    assert [r.partition_key for r in second.run_requests] == ["2026-11-15"]
    assert AssetKey(["raw", "T_MCOaaC"]) not in second.run_requests[0].asset_selection


def test_empty_landing_skips_without_failing(env):
    _, defs, instance = env
    result = _tick(defs, instance, "cnam_deliveries")
    assert not result.run_requests
    assert "no new complete delivery" in str(result.skip_reason)
