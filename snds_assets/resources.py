"""The settings and catalog every asset reads, as one Dagster resource."""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

from dagster import ConfigurableResource, InitResourceContext

from .catalog import Catalog
from .config import Settings


@lru_cache(maxsize=8)
def load_catalog(schemas: str) -> Catalog:
    """Catalogs are read once per process: definitions and every step share the same one."""
    return Catalog.load(schemas)


class SndsResource(ConfigurableResource):
    """SNDS settings (SPEC §1). Unset fields fall back to the environment, then to defaults under SNDS_HOME."""

    home: Optional[str] = None
    landing: Optional[str] = None
    lake: Optional[str] = None
    projects: Optional[str] = None
    schemas: Optional[str] = None
    nomenclatures: Optional[str] = None

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """In a run, name the process executing it (``runs.claim``), so that its death does not leave it started,
        then take its turn (``runs.take_turn``)."""
        from .runs import claim, take_turn

        claim(context.instance, context.dagster_run)
        lake = self.settings().lake
        if lake.lower().startswith("az://"):  # Spark has no az:// file system: the run failed once it had archived
            from .reception.storage import StorageError

            raise StorageError(f"SNDS_LAKE {lake}: Spark writes a lake on Azure at abfss://<container>@<account>.dfs."
                               "core.windows.net/<path> (az:// serves the landing zone, and `snds report`)")
        take_turn(context.instance, context.dagster_run, context.log)

    def settings(self) -> Settings:
        return Settings.from_env(
            home=self.home, landing=self.landing, lake=self.lake, projects=self.projects,
            schemas=self.schemas, nomenclatures=self.nomenclatures,
        )

    def catalog(self) -> Catalog:
        return load_catalog(self.settings().schemas)
