"""The in-memory unit of generation: a block of rows of one table (or entity), column by column."""
from __future__ import annotations

from operator import itemgetter
from typing import Iterable

import numpy as np


def take(values: list, idx: Iterable[int] | np.ndarray) -> list:
    """``[values[i] for i in idx]``, at C speed."""
    idx = idx.tolist() if isinstance(idx, np.ndarray) else list(idx)
    if not idx:
        return []
    if len(idx) == 1:
        return [values[idx[0]]]
    return list(itemgetter(*idx)(values))


class Block:
    """Rows of one table for one chunk of patients.

    ``cols`` maps column names to lists of raw values: texts (or ints) written as they are, except the
    columns listed in ``dates`` that hold day ordinals, formatted per field when the file is written.
    Columns starting with ``_`` are internal (never written). ``parent`` is the anchor row of each row.
    """

    __slots__ = ("n", "cols", "dates", "parent")

    def __init__(self, n: int, cols: dict[str, list] | None = None, dates: Iterable[str] = (),
                 parent: np.ndarray | None = None):
        self.n = n
        self.cols = cols if cols is not None else {}
        self.dates = set(dates)
        self.parent = parent

    def take(self, idx: np.ndarray) -> "Block":
        idx = np.asarray(idx, dtype=np.int64)
        return Block(len(idx), {k: take(v, idx) for k, v in self.cols.items()}, self.dates,
                     self.parent[idx] if self.parent is not None else None)

    def within(self) -> np.ndarray:
        """1, 2, 3... of each row within its anchor row (rows of one anchor are contiguous)."""
        if self.parent is None or not len(self.parent):
            return np.zeros(0, dtype=np.int64)
        return np.arange(len(self.parent)) - np.searchsorted(self.parent, self.parent) + 1

    def set(self, column: str, values: list, is_date: bool = False) -> None:
        if len(values) != self.n:
            raise ValueError(f"column {column}: {len(values)} values for {self.n} rows")
        self.cols[column] = values
        if is_date:
            self.dates.add(column)
        else:
            self.dates.discard(column)

    def append_rows(self, rows: "Block") -> None:
        """Add rows (same columns) at the end: used by defect injection."""
        for k in self.cols:
            self.cols[k] = self.cols[k] + rows.cols[k]
        if self.parent is not None and rows.parent is not None:
            self.parent = np.concatenate([self.parent, rows.parent])
        self.n += rows.n
