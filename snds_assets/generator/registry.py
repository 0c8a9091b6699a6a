"""Where the modelled tables plug their semantics into the generic engine.

``SPECIAL[kind]`` builds the whole block of a kind of table (ER_PRS_F lines, its affiliated lines, ALD rows);
``ENRICHERS`` are ``(family regex, function)`` that fill modelled columns of a block the engine built.
"""
from __future__ import annotations

from typing import Callable

SPECIAL: dict[str, Callable] = {}
ENRICHERS: list[tuple[str, Callable]] = []


def special(kind: str) -> Callable[[Callable], Callable]:
    def register(fn: Callable) -> Callable:
        SPECIAL[kind] = fn
        return fn

    return register


def enricher(pattern: str) -> Callable[[Callable], Callable]:
    def register(fn: Callable) -> Callable:
        ENRICHERS.append((pattern, fn))
        return fn

    return register
