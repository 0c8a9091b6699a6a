"""CSV files as CNAM delivers them: streamed by chunks, split into parts, optionally gzipped, hashed as written.

Rows are rendered from column lists with one ``%``-template per row: the columns the generator models are
substituted, the others (the filler) are baked into a few hundred templates drawn per chunk. That keeps the
cost per row at one string formatting whatever the number of columns of the table.
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .values import FieldSpec, Window, date_texts, sample

TEMPLATES = 256  # filler variants per rendered block
EMPTY_SHARE = 0.1  # share of empty values in nullable filler columns


@dataclass(frozen=True)
class WrittenFile:
    path: str  # relative to the delivery folder, '/'-separated
    rows: int
    sha256: str
    bytes: int


class _Part:
    def __init__(self, path: Path, gzip: bool):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "wb")
        self.sha = hashlib.sha256()
        self.size = 0
        self.rows = 0
        self.zip = zlib.compressobj(6, zlib.DEFLATED, 31) if gzip else None  # gzip header with mtime 0

    def write(self, data: bytes) -> None:
        if self.zip is not None:
            data = self.zip.compress(data)
        self._raw(data)

    def _raw(self, data: bytes) -> None:
        if data:
            self.handle.write(data)
            self.sha.update(data)
            self.size += len(data)

    def close(self) -> None:
        if self.zip is not None:
            self._raw(self.zip.flush())
        self.handle.close()


class TableWriter:
    """Appends rows to the files of one delivered table."""

    def __init__(self, root: Path, name: str, header: list[str], delimiter: str, encoding: str, gzip: bool,
                 rows_per_file: int | None):
        self.root = root
        self.name = name
        self.header = list(header)
        self.delimiter = delimiter
        self.encoding = encoding
        self.gzip = gzip
        self.rows_per_file = rows_per_file
        self.extra: tuple[str, str] | None = None  # (column, value) appended to the first file only
        self.rows_total = 0
        self._part: _Part | None = None
        self._files: list[WrittenFile] = []

    def _path(self, number: int) -> str:
        return f"{self.name}/part-{number:04d}.csv" + (".gz" if self.gzip else "")

    def _open(self) -> None:
        number = len(self._files) + 1
        self._part = _Part(self.root / self._path(number), self.gzip)
        header = self.header + ([self.extra[0]] if self.extra and number == 1 else [])
        self._part.write((self.delimiter.join(header) + "\n").encode(self.encoding))

    def _close_part(self) -> None:
        part = self._part
        part.close()
        self._files.append(WrittenFile(self._path(len(self._files) + 1), part.rows, part.sha.hexdigest(), part.size))
        self._part = None

    def write(self, lines: list[str]) -> None:
        start = 0
        while start < len(lines):
            if self._part is None:
                self._open()
            room = len(lines) - start
            if self.rows_per_file:
                room = min(room, self.rows_per_file - self._part.rows)
            chunk = lines[start:start + room]
            if self.extra and not self._files:
                suffix = self.delimiter + self.extra[1]
                chunk = [line + suffix for line in chunk]
            self._part.write(("\n".join(chunk) + "\n").encode(self.encoding))
            self._part.rows += len(chunk)
            self.rows_total += len(chunk)
            start += room
            if self.rows_per_file and self._part.rows >= self.rows_per_file:
                self._close_part()

    @property
    def files(self) -> list[WrittenFile]:
        return list(self._files)

    def file_of_row(self, row: int) -> str:
        """The file holding the n-th data row of the table (0-based), once the writer is closed."""
        seen = 0
        for f in self._files:
            seen += f.rows
            if row < seen:
                return f.path
        raise IndexError(row)

    def close(self) -> list[WrittenFile]:
        if self._part is None and not self._files:
            self._open()  # an empty table is still delivered, as a header-only file
        if self._part is not None:
            self._close_part()
        return list(self._files)


def render(columns: Sequence[str], specs: dict[str, FieldSpec], cols: dict[str, list], n: int,
           rng: np.random.Generator, window: Window, hints: dict[str, list[str] | None], delimiter: str) -> list[str]:
    """The CSV lines of ``n`` rows: modelled columns from ``cols``, random valid filler for the others."""
    if n == 0:
        return []
    modelled = [c for c in columns if c in cols]
    filler = [c for c in columns if c not in cols]
    k = min(TEMPLATES, n) if filler else 1
    filler_texts: dict[str, list[str]] = {}
    for c in filler:
        spec = specs[c]
        values = sample(spec, rng, k, window, hints.get(c))
        if spec.is_date:
            table = date_texts(spec.pattern)
            texts = [table[v] for v in values]
        else:
            texts = [str(v).replace("%", "") for v in values]
        if not spec.required and spec.enum is None and len(columns) > 1:  # a lone empty value is a blank line, no row
            blanks = rng.random(k) < EMPTY_SHARE
            texts = ["" if b else t for t, b in zip(texts, blanks.tolist())]
        filler_texts[c] = texts
    templates = []
    for i in range(k):
        templates.append(delimiter.join("%s" if c in cols else filler_texts[c][i] for c in columns))
    if not modelled:
        idx = rng.integers(0, k, n).tolist()
        return [templates[i].replace("%%", "%") for i in idx]
    data = []
    for c in modelled:
        values = cols[c]
        spec = specs[c]
        if spec.is_date:
            table = date_texts(spec.pattern)
            values = [table.get(v, v) for v in values]
        data.append(values)
    rows = zip(*data)
    if k == 1:
        template = templates[0]
        return [template % r for r in rows]
    idx = rng.integers(0, k, n).tolist()
    return [templates[i] % r for i, r in zip(idx, rows)]
