"""Shared fixtures: one local Spark session for the whole test run, and the reference schemas of ../shared."""
from __future__ import annotations

import gc
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

    # 3 GB: this one JVM runs every test's queries and in-process Dagster runs; with 2 GB, and no frame left cached,
    # the heap was still collected whole twice during the provision tests in a fresh clone. Otherwise the product's
    # own settings (its shuffle partitions among them), which the first in-process run would apply anyway.
    session = build_session("local[2]", conf={"spark.driver.memory": "3g"})
    yield session


@pytest.fixture(autouse=True)
def _spark_cache_released():
    """What a test persisted and did not unpersist (a cohort built to be looked at) is dropped after it: the suite
    shares one JVM, and a cached frame keeps its physical plan with the broadcast relations built for it (a page of
    a megabyte or more each). Left, they held 900 MB of a 2 GB heap after the provision tests, and a broadcast of
    a few rows failed for want of memory. What was cached before the test (a module's fixtures) stays.

    The frames Python no longer uses hold their plans too, until its cyclic collector frees them, which a process
    as large as this one seldom runs on its own: it is run once the JVM's heap is half used."""
    before = _cached_entries()
    yield
    session = _classic_session()
    if session is None:
        return
    manager = session._jsparkSession.sharedState().cacheManager()
    for key, entry in _cached_entries().items():
        if key not in before:
            manager.uncacheQuery(session._jsparkSession, entry.plan(), False, False)
    runtime = session._jvm.java.lang.Runtime.getRuntime()
    if runtime.totalMemory() - runtime.freeMemory() > runtime.maxMemory() // 2:
        gc.collect()


def _classic_session():
    """The local session the tests started, if any (never one started here, nor a Spark Connect one)."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    if SparkContext._active_spark_context is None:
        return None
    return SparkSession._instantiatedSession


def _cached_entries() -> dict:
    """The cache manager's entries by their JVM identity."""
    session = _classic_session()
    if session is None:
        return {}
    data = session._jsparkSession.sharedState().cacheManager().cachedData()
    identity = session._jvm.java.lang.System.identityHashCode
    return {identity(data.apply(i)): data.apply(i) for i in range(data.size())}


def pytest_configure(config: pytest.Config) -> None:
    """The product's settings of the shell that started the tests are no test's: each sets those it means."""
    from .services import clear_settings  # here, once pytest_plugins imported it with its asserts rewritten

    clear_settings(os.environ)


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
    """An isolated SNDS_HOME (and Dagster instance) per test; no other setting comes from the shell (see
    pytest_configure)."""
    home = tmp_path / "snds"
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
