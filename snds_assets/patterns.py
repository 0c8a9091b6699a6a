"""Date patterns as delivered (strftime, SPEC §2) translated to Spark datetime patterns.

Kept apart from ``curation.columns``, which needs Spark: the manifest is validated with the very translation
curation uses, in the sensor and the CLI too, where Spark is not loaded.
"""
from __future__ import annotations

import re
from datetime import date

# Not %e, a day padded with a space (`` 5``): Spark's patterns have no pad modifier, every day before the 10th
# would be a type failure.
_STRFTIME = {
    "%d": "dd", "%m": "MM", "%Y": "yyyy", "%b": "MMM", "%B": "MMMM", "%H": "HH", "%M": "mm",
    "%S": "ss", "%j": "DDD", "%f": "SSSSSS", "%p": "a", "%I": "hh",
}
# What each directive gives: java.time refuses a pattern that gives one twice (``%d%d``).
_FIELD = {
    "%d": "day", "%m": "month", "%b": "month", "%B": "month", "%Y": "year", "%H": "hour", "%I": "hour",
    "%M": "minute", "%S": "second", "%f": "fraction", "%j": "day of the year", "%p": "AM/PM",
}
NO_EQUIVALENT = "has no Spark equivalent"
# Spark reads ``yy`` as 2000-2099: a birth in 1955 would be curated in 2055 and the 1600-01-01 of an unknown date
# (no death) in 2000.
TWO_DIGIT_YEAR = ("(a two-digit year) cannot tell 1955 from 2055 nor write the 1600-01-01 of an unknown date; "
                  "use %Y")


class UnsupportedDirective(ValueError):
    """A strftime directive that curation cannot follow: no Spark equivalent (``why``, by default), a two-digit
    year, or a part of the date given twice."""

    def __init__(self, strftime: str, token: str, why: str = NO_EQUIVALENT):
        super().__init__(f"date format {strftime!r}: {token} {why}")
        self.token = token
        self.why = why


SUPPORTED = tuple(_STRFTIME)
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def iso_day(text: str) -> date | None:
    """The calendar day ``text`` writes as YYYY-MM-DD (ASCII digits), or None: Python's ``date.fromisoformat`` also
    takes 20220101 and 2022-W01-1, which a delivery id, a request's period or a command's date is not."""
    if not _ISO_DAY.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def spark_pattern(strftime: str) -> str:
    """A strftime pattern (``%d%m%Y``, ``%d%b%Y:%H:%M:%S``) as a Spark datetime pattern. Every literal is quoted:
    java.time reads letters as fields, ``[`` and ``]`` as an optional part, and refuses ``#``, ``{`` and ``}``."""
    out: list[str] = []
    given: set[str] = set()
    for token in re.findall(r"%%|%[A-Za-z]|[^%]+|%", strftime):
        if token.startswith("%") and token != "%%" and token != "%":
            if token == "%y":
                raise UnsupportedDirective(strftime, token, TWO_DIGIT_YEAR)
            if token not in _STRFTIME:
                raise UnsupportedDirective(strftime, token)
            if _FIELD[token] in given:
                raise UnsupportedDirective(strftime, token, f"gives the {_FIELD[token]} again: give it once")
            given.add(_FIELD[token])
            out.append(_STRFTIME[token])
        else:
            literal = "%" if token in ("%%", "%") else token
            out.append("'" + literal.replace("'", "''") + "'")
    return "".join(out)


def directives(strftime: str) -> list[str]:
    """The ``%x`` directives of a strftime pattern (``%%`` is a literal percent sign, not one)."""
    return [t for t in re.findall(r"%%|%[A-Za-z]", strftime) if t != "%%"]
