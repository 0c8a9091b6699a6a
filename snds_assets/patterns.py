"""Date patterns as delivered (strftime, SPEC §2) translated to Spark datetime patterns.

Kept apart from ``curation.columns``, which needs Spark: the manifest is validated with the very translation
curation uses, in the sensor and the CLI too, where Spark is not loaded.
"""
from __future__ import annotations

import re

_STRFTIME = {
    "%d": "dd", "%m": "MM", "%Y": "yyyy", "%y": "yy", "%b": "MMM", "%B": "MMMM", "%H": "HH", "%M": "mm",
    "%S": "ss", "%j": "DDD", "%f": "SSSSSS", "%p": "a", "%I": "hh", "%e": "d",
}


class UnsupportedDirective(ValueError):
    """A strftime directive that has no Spark equivalent."""

    def __init__(self, strftime: str, token: str):
        super().__init__(f"date format {strftime!r}: {token} has no Spark equivalent")
        self.token = token


SUPPORTED = tuple(_STRFTIME)


def spark_pattern(strftime: str) -> str:
    """A strftime pattern (``%d%m%Y``, ``%d%b%Y:%H:%M:%S``) as a Spark datetime pattern; letters are quoted."""
    out: list[str] = []
    for token in re.findall(r"%%|%[A-Za-z]|[A-Za-z]+|[^%A-Za-z]+|%", strftime):
        if token == "%%" or token == "%":
            out.append("%")
        elif token.startswith("%"):
            if token not in _STRFTIME:
                raise UnsupportedDirective(strftime, token)
            out.append(_STRFTIME[token])
        elif token[0].isalpha():
            out.append("'" + token + "'")
        else:
            out.append(token.replace("'", "''"))
    return "".join(out)


def directives(strftime: str) -> list[str]:
    """The ``%x`` directives of a strftime pattern (``%%`` is a literal percent sign, not one)."""
    return [t for t in re.findall(r"%%|%[A-Za-z]", strftime) if t != "%%"]
