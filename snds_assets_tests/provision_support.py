"""The cohort asset materialised without Spark, for tests of what the asset does around the cohort's own work."""
from __future__ import annotations

from pathlib import Path

from dagster import DagsterInstance, materialize

from snds_assets.config import Settings
from snds_assets.resources import SndsResource


class NoSpark:
    def get_session(self):
        return None


def materialize_cohort_without_spark(monkeypatch, home: Path, persons: int = 0, project_id: str = "p",
                                     checks: list | None = None):
    """(instance, result) of the cohort asset of ``project_id`` under ``home``, its request, the current state and
    the cohort's own work (``run_cohort``, which finds ``persons`` and gives ``checks``) replaced."""
    from snds_assets.curation import state as state_mod
    from snds_assets.provision import request as request_mod, run as run_mod
    from snds_assets.provision.assets import build_cohort_asset
    from snds_assets.reception.assets import curated_key
    from snds_assets.resources import load_catalog

    monkeypatch.setattr(request_mod, "load_request", lambda settings, catalog, pid: pid)
    monkeypatch.setattr(state_mod, "CurrentState", lambda *args: None)
    monkeypatch.setattr(run_mod, "run_cohort", lambda *args: {"project": project_id, "persons": persons,
                                                             "checks": checks or []})
    settings = Settings.from_env(env={}, home=str(home))
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("projects", [project_id])
    result = materialize([build_cohort_asset(load_catalog(settings.schemas), curated_key)], partition_key=project_id,
                         instance=instance, resources={"snds": SndsResource(home=str(home)), "spark": NoSpark()})
    return instance, result
