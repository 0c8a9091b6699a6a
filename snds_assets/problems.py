"""The problems of one input (a manifest, a project request) told together, in the one line a command prints and
a sensor logs: whoever mends the input (CNAM, a researcher) mends them all in one round."""
from __future__ import annotations

SHOWN = 10


def together(problems: list[str], shown: int = SHOWN) -> str:
    """Each problem once, in order, the first ``shown`` of them in full and how many more."""
    distinct = list(dict.fromkeys(problems))
    more = len(distinct) - shown
    return "; ".join(distinct[:shown]) + (f"; and {more} more problem(s)" if more > 0 else "")
