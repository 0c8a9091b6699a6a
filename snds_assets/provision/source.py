"""Where provision reads curated tables from: anything with ``read`` and ``deliveries``.

Production passes ``snds_assets.curation.state.CurrentState``; tests and benchmarks pass a ``FrameSource`` of
ready-made DataFrames, so identification and extraction do not depend on the reception.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from pyspark.sql import DataFrame

DELIVERY_COLUMN = "DELIVERY_ID"


@runtime_checkable
class TableSource(Protocol):
    def read(self, family: str) -> DataFrame | None:
        """The current state of a family (typed, upper-case columns, PMSI year column, DELIVERY_ID), or None."""

    def deliveries(self, family: str) -> list[str]:
        """The deliveries whose tables make up the current state of a family."""

    def receptions(self) -> dict[str, str]:
        """Delivery id -> a mark that changes when the delivery is received again (empty: none known)."""

    def absent(self, family: str) -> dict[tuple[str, int | None], frozenset[str]]:
        """(delivery id, year) -> the catalog columns that some file of that delivered table did not bring (SPEC
        §2: reported by ``columns``, never fatal), for the deliveries of the state."""

    def repeats_keys(self, family: str) -> bool:
        """Whether the state of a family may hold one key in rows of two deliveries (SPEC §6 reports it as a WARN,
        ``primary_key_state``): then a child's link may name the rows of two patients."""


class FrameSource:
    """A TableSource over DataFrames given per family (a missing DELIVERY_ID column is filled in)."""

    def __init__(self, frames: dict[str, DataFrame], delivery_id: str = "2000-01-01"):
        from pyspark.sql import functions as F

        self.frames: dict[str, DataFrame] = {}
        self._deliveries: dict[str, list[str]] = {}
        for family, df in frames.items():
            if DELIVERY_COLUMN not in df.columns:
                df = df.withColumn(DELIVERY_COLUMN, F.lit(delivery_id))
                self._deliveries[family] = [delivery_id]
            self.frames[family] = df

    def read(self, family: str) -> DataFrame | None:
        return self.frames.get(family)

    def receptions(self) -> dict[str, str]:
        return {}

    def absent(self, family: str) -> dict[tuple[str, int | None], frozenset[str]]:
        return {}

    def repeats_keys(self, family: str) -> bool:
        return True  # frames made by hand: nothing says their keys are unique

    def deliveries(self, family: str) -> list[str]:
        if family not in self.frames:
            return []
        if family not in self._deliveries:
            rows = self.frames[family].select(DELIVERY_COLUMN).distinct().collect()
            self._deliveries[family] = sorted(r[0] for r in rows if r[0] is not None)
        return self._deliveries[family]


def read_optional(source: TableSource, family: str) -> DataFrame | None:
    """``source.read`` for a family that may not be delivered (IR_BEN_R_ARC): absent means None, not an error."""
    try:
        return source.read(family)
    except (KeyError, LookupError, FileNotFoundError):
        return None
