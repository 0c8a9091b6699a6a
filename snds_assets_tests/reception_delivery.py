"""Small hand-made CNAM deliveries for the reception tests: files written by the test, manifest computed from them."""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path


def csv_bytes(header: list[str] | None, rows: list[list[str]], delimiter: str = ";", encoding: str = "utf-8",
              newline: str = "\n", final_newline: bool = True) -> bytes:
    lines = ([delimiter.join(header)] if header is not None else []) + [delimiter.join(r) for r in rows]
    text = newline.join(lines) + (newline if final_newline and lines else "")
    return text.encode(encoding)


def dummy_rows(columns, n: int, start: int = 0) -> list[list[str]]:
    """``n`` rows of distinct, recognisable values (row i, column c -> ``C<i>``)."""
    return [[f"{c[:3]}{i}" for c in columns] for i in range(start, start + n)]


class Delivery:
    """A delivery folder under construction: ``add`` writes a file and its manifest entry, ``write`` the manifest."""

    def __init__(self, landing: Path, delivery_id: str, fmt: dict | None = None):
        self.landing = Path(landing)
        self.delivery_id = delivery_id
        self.folder = self.landing / delivery_id
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fmt = fmt
        self.tables: dict[str, dict] = {}

    def add(self, table: str, path: str, data: bytes, gz: bool = False, mode: str | None = None,
            rows: int | None = None) -> bytes:
        """Write ``data`` (gzipped when ``gz``) at ``path``; the manifest describes the file as written (a path
        written again is described again, not listed twice)."""
        payload = gzip.compress(data, mtime=0) if gz else data
        target = self.folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload)
        if rows is None:
            lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
            has_header = (self.fmt or {}).get("header", True)
            rows = max(lines - 1, 0) if has_header else lines
        entry = self.tables.setdefault(table, {"table": table, "files": []})
        if mode:
            entry["mode"] = mode
        entry["files"] = [f for f in entry["files"] if f["path"] != path]
        entry["files"].append({"path": path, "rows": rows, "sha256": hashlib.sha256(payload).hexdigest(),
                               "bytes": len(payload)})
        return payload

    def announce(self, table: str, path: str, **changes) -> None:
        """Change what the manifest says about a file (rows, sha256, bytes), or list a file never written."""
        entry = self.tables.setdefault(table, {"table": table, "files": []})
        for f in entry["files"]:
            if f["path"] == path:
                f.update(changes)
                return
        entry["files"].append({"path": path, "rows": 0, "sha256": "0" * 64, "bytes": 0, **changes})

    def manifest(self) -> dict:
        data = {"delivery_id": self.delivery_id, "producer": "CNAM", "created_at": f"{self.delivery_id}T06:00:00Z",
                "tables": list(self.tables.values())}
        if self.fmt is not None:
            data["format"] = self.fmt
        return data

    def write(self, text: str | None = None) -> Path:
        path = self.folder / "manifest.json"
        path.write_text(json.dumps(self.manifest(), indent=2) if text is None else text, encoding="utf-8")
        return path
