"""The lake layout of SPEC §5, for a local folder or a URI (``abfss://`` on a cluster)."""
from __future__ import annotations

import posixpath
from dataclasses import dataclass


def join(root: str, *parts: str) -> str:
    """Join a local path or a URI with ``/``-separated parts (manifest paths always use ``/``)."""
    if "://" in root:
        return posixpath.join(root.rstrip("/"), *parts)
    return posixpath.join(root, *parts)


@dataclass(frozen=True)
class Lake:
    root: str

    @property
    def is_local(self) -> bool:
        return "://" not in self.root or self.root.startswith("file://")

    def raw(self, delivery_id: str, *path: str) -> str:
        return join(self.root, "raw", delivery_id, *path)

    def curated(self, family: str, delivery_id: str | None = None) -> str:
        base = join(self.root, "curated", family)
        return base if delivery_id is None else join(base, f"delivery_id={delivery_id}")

    def rejects(self, family: str, delivery_id: str | None = None) -> str:
        base = join(self.root, "rejects", family)
        return base if delivery_id is None else join(base, f"delivery_id={delivery_id}")

    def delivery_report(self, delivery_id: str, suffix: str = "json") -> str:
        return join(self.root, "reports", "deliveries", f"{delivery_id}.{suffix}")

    def project_report(self, project_id: str, suffix: str = "json") -> str:
        return join(self.root, "reports", "projects", f"{project_id}.{suffix}")

    def project(self, project_id: str, *path: str) -> str:
        return join(self.root, "projects", project_id, *path)

    def restricted(self, project_id: str, *path: str) -> str:
        return join(self.root, "restricted", "projects", project_id, *path)

    def withheld(self, project_id: str, *path: str) -> str:
        """Where an extract that failed an ERROR check is kept for the operator, out of the project's space."""
        return self.restricted(project_id, "withheld", *path)

    def staging(self, *path: str) -> str:
        """Scratch space for writes that are published by rename, so no half-written partition is visible."""
        return join(self.root, "_staging", *path)


def staging_beside(target: str, token: str) -> str:
    """A hidden scratch folder in ``target``'s own folder, for a write published by renaming it to ``target``.

    Not the lake's ``_staging``: a file takes its folder's access rights when it is created and keeps them when
    renamed (ADLS Gen2 default ACLs; a local ``restricted/`` folder is owner-only), so a correspondence staged
    elsewhere would be readable wherever it was written, during the write and after a killed run. The leading dot
    keeps it out of Spark's reads and of folder listings (``provision.storage.list_dirs``)."""
    parent, name = posixpath.split(target.rstrip("/"))
    return posixpath.join(parent, f".{name}.staging-{token}")
