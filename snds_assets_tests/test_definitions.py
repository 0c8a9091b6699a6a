"""The code location loads, with the packaged catalog and with all 188 reference schemas."""
import subprocess
import sys

import pytest
from dagster import AssetKey

from snds_assets.checks import CURATED_CHECKS, RAW_RULES
from snds_assets.config import Settings
from snds_assets.definitions import build_definitions


@pytest.fixture(scope="module")
def reference_defs(reference_schemas):
    return build_definitions(Settings.from_env(schemas=str(reference_schemas)))


def test_every_family_has_raw_curated_and_checks(reference_defs):
    graph = reference_defs.resolve_asset_graph()
    keys = set(graph.get_all_asset_keys())
    for family in ("ER_PRS_F", "ER_PHA_F", "IR_BEN_R", "T_MCOaaB", "T_MCOaaC", "KI_CCI_R"):
        assert AssetKey(["raw", family]) in keys
        assert AssetKey(["curated", family]) in keys
    raw_families = [k for k in keys if k.path[0] == "raw"]
    assert len(raw_families) == 189  # the 188 schemas and IR_BEN_R_ARC
    checks = {(c.asset_key, c.name) for c in graph.asset_check_keys}
    for rule in RAW_RULES:
        assert (AssetKey(["raw", "ER_PRS_F"]), rule) in checks
    for name, _ in CURATED_CHECKS:
        assert (AssetKey(["curated", "T_MCOaaC"]), name) in checks


def test_lineage_follows_the_join_graph(reference_defs):
    graph = reference_defs.resolve_asset_graph()
    parents = graph.get(AssetKey(["curated", "ER_PHA_F"])).parent_keys
    assert AssetKey(["raw", "ER_PHA_F"]) in parents
    assert AssetKey(["curated", "ER_PRS_F"]) in parents
    extract_parents = graph.get(AssetKey(["projects", "ER_PHA_F"])).parent_keys
    assert AssetKey(["curated", "ER_PRS_F"]) in extract_parents
    assert AssetKey(["projects", "cohort"]) in extract_parents


def test_partitions_groups_and_kinds(reference_defs):
    graph = reference_defs.resolve_asset_graph()
    curated = graph.get(AssetKey(["curated", "ER_PRS_F"]))
    assert curated.partitions_def.name == "deliveries"
    assert curated.group_name == "curated"
    assert {"spark", "parquet"} <= set(curated.kinds)
    assert curated.owners == ["team:snds-reception"]
    extract = graph.get(AssetKey(["projects", "ER_PRS_F"]))
    assert extract.partitions_def.name == "projects"
    assert graph.get(AssetKey(["raw", "T_MCOaaB"])).description.startswith("Description du Séjour")


def test_jobs_and_sensors(reference_defs):
    assert reference_defs.resolve_job_def("reception").partitions_def.name == "deliveries"
    assert reference_defs.resolve_job_def("provision").partitions_def.name == "projects"
    names = {s.name for s in reference_defs.sensors}
    assert {"cnam_deliveries", "project_requests", "refresh_extracts"} <= names


def test_packaged_catalog_loads_as_the_default(snds_env):
    defs = build_definitions(Settings.from_env())
    keys = set(defs.resolve_asset_graph().get_all_asset_keys())
    assert AssetKey(["curated", "ER_PRS_F"]) in keys
    assert AssetKey(["projects", "T_MCOaaB"]) in keys


def test_dagster_definitions_validate(snds_env):
    proc = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-m", "snds_assets.definitions"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
