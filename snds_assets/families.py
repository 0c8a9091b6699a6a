"""Families worked on a few at a time (``SNDS_PARALLEL_FAMILIES``), parents before children.

On a small cluster or a laptop one family rarely keeps every core busy: Spark compiles each family's plan on
the driver and small tables are one or two tasks. Working on two independent families at once overlaps that
with the other's tasks. A reception starts a child family only once its parents in the same delivery are
curated, since its foreign-key checks read them; a project's extracts are independent of one another.
"""
from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

_worker = threading.local()  # the stop event of the run whose family this thread works on
# How often the run's thread wakes while its families work: a signal (Ctrl-C, SIGTERM) that reaches it between its
# check of pending signals and its blocking wait is handled at the next wake, not when a family ends (minutes).
WAKE_SECONDS = 0.5


class WorkStopped(RuntimeError):
    """Raised in a family's thread once the run was interrupted: the run's own interruption is what is told."""


def check_stop() -> None:
    """Called between long pieces of a family's work (the archive's reads): stop there once the run was interrupted."""
    stop = getattr(_worker, "stop", None)
    if stop is not None and stop.is_set():
        raise WorkStopped("the run was interrupted")


def in_dependency_order(families: list[str], parents: dict[str, list[str]], work: Callable[[str], T],
                        workers: int = 2, started: Callable[[str, int, int, list[str]], None] | None = None,
                        on_interrupt: Callable[[], None] | None = None) -> Iterator[tuple[str, T]]:
    """Run ``work(family)`` for every family, at most ``workers`` at once, a family after its ``parents`` that
    are in ``families``; yield (family, result) as each finishes. ``started(family, finished, total, under_way)``
    is called (in the caller's thread) as a family starts, ``under_way`` the families still at work beside it (the
    progress bar names them: a long family would otherwise hide behind the last small one started). On a failure,
    the families running finish, none starts, and the first error is raised. On an interruption (Ctrl-C, SIGTERM:
    an exception that is no ``Exception``), none starts and the running ones are stopped, by ``on_interrupt``
    (which cancels their Spark jobs) and ``check_stop``: else the run went on to the end of their work."""
    pending = list(families)
    wanted = set(families)
    finished: set[str] = set()
    running: dict[Future, str] = {}
    stop = threading.Event()

    def guarded(family: str) -> T:
        _worker.stop = stop
        try:
            return work(family)
        finally:
            _worker.stop = None

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="snds-family") as pool:
        try:
            while pending or running:
                for family in [f for f in pending if all(p in finished for p in parents.get(f, []) if p in wanted)]:
                    if len(running) >= max(1, workers):
                        break
                    pending.remove(family)
                    if started is not None:
                        started(family, len(finished), len(families), sorted(running.values()))
                    running[pool.submit(guarded, family)] = family
                if not running:
                    raise ValueError(f"families waiting on parents that never come: {', '.join(pending)}")
                done: set[Future] = set()
                while not done:  # woken each half second: Ctrl-C arriving just as the wait began waited with it
                    done, _ = wait(running, timeout=WAKE_SECONDS, return_when=FIRST_COMPLETED)
                for future in done:
                    family = running.pop(future)
                    if future.exception() is not None:
                        while not all(f.done() for f in running):
                            wait(running, timeout=WAKE_SECONDS)
                        raise future.exception()
                    finished.add(family)
                    yield family, future.result()
        except BaseException as exc:
            if not isinstance(exc, Exception) and running:
                stop.set()
                # again until they end: a family's next query may start after the first cancellation
                while on_interrupt is not None and not all(f.done() for f in running):
                    on_interrupt()
                    wait(running, timeout=WAKE_SECONDS)
            raise
