"""What the benches share: the environment of the `snds` commands they run, and where ../shared is."""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cli_env(workdir: Path) -> dict[str, str]:
    """The shell's environment without its snds settings (``SNDS_*``, ``DAGSTER_HOME``, ``SPARK_REMOTE``), then
    the bench's home and landing zone: an operator's ``SNDS_LAKE`` or ``DAGSTER_HOME`` must never receive a bench's
    synthetic deliveries, nor ``SNDS_SCHEMAS`` change what it measures. The checkout's code runs, not an install."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SNDS_") and k not in ("DAGSTER_HOME", "SPARK_REMOTE")}
    env.update(SNDS_HOME=str(workdir / "home"), SNDS_LANDING=str(workdir / "landing"),
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return env


def reference_schemas() -> Path:
    """The 188 reference schemas, under ``SNDS_SHARED`` as the tests find them (../shared by default)."""
    path = Path(os.environ.get("SNDS_SHARED") or REPO.parent / "shared") / "schema-snds" / "schemas"
    if not path.is_dir():
        sys.exit(f"reference schemas not found at {path}: set SNDS_SHARED to the shared folder")
    return path


def generator_version() -> str:
    """A digest of the generator's code, of the SNDS facts it reads (``domain.py``) and of the packaged catalog it
    generates from (the columns of each year's files), for a bench's stamp: files made by an earlier generator or
    catalog are made again (run 23 of ``ingest_bench.py`` measured files that broke a rule added since, and so the
    samples of a failed check)."""
    package = REPO / "snds_assets"
    digest = hashlib.sha256()
    schemas = sorted((package / "catalog" / "schemas").rglob("*.json"))
    for path in sorted([*(package / "generator").glob("*.py"), package / "domain.py"]) + schemas:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]
