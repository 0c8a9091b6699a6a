"""Shared fixtures: one local Spark session for the whole test run, and the reference schemas of ../shared."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from snds_assets.catalog import Catalog
from snds_assets.config import PACKAGED_SCHEMAS

# Fixtures that start services (Azurite, Spark Connect, PostgreSQL) and the shared reference ingestion: one
# registration, so that session-scoped fixtures are shared by every test module.
pytest_plugins = ["snds_assets_tests.services"]

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SNDS_SHARED", REPO.parent / "shared"))
SCHEMA_SNDS = SHARED / "schema-snds"


@pytest.fixture(scope="session")
def reference_schemas() -> Path:
    path = SCHEMA_SNDS / "schemas"
    if not path.is_dir():
        pytest.fail(f"reference schemas not found at {path}: set SNDS_SHARED to the shared folder")
    return path


@pytest.fixture(scope="session")
def reference_nomenclatures() -> Path:
    return SCHEMA_SNDS / "nomenclatures"


@pytest.fixture(scope="session")
def spark():
    from snds_assets.spark import build_session

    session = build_session("local[2]", conf={"spark.sql.shuffle.partitions": "2", "spark.driver.memory": "2g"})
    yield session


@pytest.fixture(autouse=True)
def _environment_restored():
    """`cli.prepare_environment` exports the settings to os.environ for Dagster's runs: a test that calls the CLI
    in this process must not hand its SNDS_LANDING (say) to the tests after it."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture()
def snds_env(tmp_path, monkeypatch):
    """An isolated SNDS_HOME (and Dagster instance) per test."""
    home = tmp_path / "snds"
    for var in ("SNDS_LANDING", "SNDS_LAKE", "SNDS_PROJECTS", "SNDS_SCHEMAS", "SNDS_NOMENCLATURES", "DAGSTER_HOME",
                "SPARK_REMOTE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SNDS_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def reference_catalog(reference_schemas: Path) -> Catalog:
    """The 188 reference schemas of ../shared/schema-snds, loaded by our catalog."""
    return Catalog.load(reference_schemas)


@pytest.fixture(scope="session")
def packaged_catalog() -> Catalog:
    """The catalog the package ships (the default SNDS_SCHEMAS)."""
    return Catalog.load(PACKAGED_SCHEMAS)
