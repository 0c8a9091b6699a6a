"""The problems of one input (a manifest, a project request) told together, in the one line a command prints and
a sensor logs: whoever mends the input (CNAM, a researcher) mends them all in one round."""
from __future__ import annotations

SHOWN = 10


def together(problems: list[str], shown: int = SHOWN, what: str = "problem(s)") -> str:
    """Each problem once, in order, the first ``shown`` of them in full and how many more ``what``."""
    distinct = list(dict.fromkeys(problems))
    more = len(distinct) - shown
    return "; ".join(distinct[:shown]) + (f"; and {more} more {what}" if more > 0 else "")
