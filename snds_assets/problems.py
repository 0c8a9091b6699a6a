"""The problems of one input (a manifest, a project request) told together, in the one line a command prints and
a sensor logs: whoever mends the input (CNAM, a researcher) mends them all in one round."""
from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager
from typing import Callable, Iterator

SHOWN = 10
PROBLEM_LIMIT = 300  # characters of one problem (a file name or a value in it can be any length)
LIMIT = SHOWN * (PROBLEM_LIMIT + 2) + 60  # characters of the problems told together, "and N more" included


def together(problems: list[str], shown: int = SHOWN, what: str = "problem(s)") -> str:
    """Each problem once, in order, the first ``shown`` of them (each on one line of at most ``PROBLEM_LIMIT``
    characters) and how many more ``what``: a command prints them whole (``LIMIT``)."""
    distinct = list(dict.fromkeys(one_line(p, PROBLEM_LIMIT) for p in problems))
    more = len(distinct) - shown
    return "; ".join(distinct[:shown]) + (f"; and {more} more {what}" if more > 0 else "")


def one_line(text: str, limit: int) -> str:
    """``text`` on one line of at most ``limit`` characters. A longer one is cut after a whole word, as a URL or a
    path cut in its middle reads as another one, and ends with "…", to say that it was cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    if text[limit - 1] != " " and cut.rfind(" ") > limit // 2:
        cut = cut[:cut.rfind(" ")]
    return cut.rstrip(" ,;:(") + "…"


def operator_errors() -> tuple[type[BaseException], ...]:
    """Our errors that say what to fix (a manifest's or a request's problems, a damaged partition...), as opposed to
    a bug's or a library's."""
    from .catalog import CatalogError
    from .curation.state import DamagedPartition
    from .provision.links import MissingTable
    from .provision.pseudonymize import SecretError
    from .provision.request import RequestError
    from .provision.run import StateChanged
    from .reception.archive import NotArchived
    from .reception.manifest import ManifestError
    from .reception.storage import StorageError

    return (ManifestError, CatalogError, StorageError, DamagedPartition, RequestError, MissingTable, StateChanged,
            NotArchived, SecretError)


def told_as_failure(step: Callable) -> Callable:
    """A step's body (a function, or a generator of outputs) whose ``operator_errors`` fail it as a Dagster
    ``Failure`` described by their message: the UI shows that line first, not "Error occurred while executing op" over
    Dagster's frames with the message beneath. The error stays the failure's cause, where the command line and the
    JSON logs read it."""
    from dagster import Failure

    @contextmanager
    def telling() -> Iterator[None]:
        try:
            yield
        except operator_errors() as exc:
            raise Failure(description=one_line(str(exc), LIMIT), allow_retries=False) from exc

    if inspect.isgeneratorfunction(step):
        @functools.wraps(step)
        def outputs(*args, **kwargs):
            with telling():
                yield from step(*args, **kwargs)
        return outputs

    @functools.wraps(step)
    def body(*args, **kwargs):
        with telling():
            return step(*args, **kwargs)
    return body
