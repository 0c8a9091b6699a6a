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
                        on_interrupt: Callable[[], None] | None = None,
                        ahead: Callable[[str], None] | None = None,
                        ahead_started: Callable[[str, list[str]], None] | None = None) -> Iterator[tuple[str, T]]:
    """Run ``work(family)`` for every family, at most ``workers`` at once, a family after its ``parents`` that
    are in ``families``; yield (family, result) as each finishes. ``started(family, finished, total, under_way)``
    is called (in the caller's thread) as a family starts, ``under_way`` the families still at work beside it (the
    progress bar names them: a long family would otherwise hide behind the last small one started). On a failure,
    the families running finish, none starts, and the first error is raised. On an interruption (Ctrl-C, SIGTERM:
    an exception that is no ``Exception``), none starts and the running ones are stopped, by ``on_interrupt``
    (which cancels their Spark jobs) and ``check_stop``: else the run went on to the end of their work.

    ``ahead(family)`` is the part of a family's work that needs no parent (a reception's archive): a worker that no
    family is ready for runs it for the next family still waiting, so that a child's archive is not paid for after
    its parent's curation, with a core idle meanwhile (``ahead_started(family, under_way)`` is called as it
    starts). A family's ``work`` starts once its ``ahead`` has ended; the caller keeps what ``ahead`` made."""
    pending = list(families)
    wanted = set(families)
    finished: set[str] = set()
    prepared: set[str] = set()  # families whose ``ahead`` ran or is running
    running: dict[Future, tuple[str, bool]] = {}  # -> (family, whether it is its ``ahead``)
    stop = threading.Event()
    slots = max(1, workers)

    def guarded(fn: Callable[[str], T], family: str) -> T:
        _worker.stop = stop
        try:
            return fn(family)
        finally:
            _worker.stop = None

    def under_way() -> list[str]:
        return sorted(f for f, _ in running.values())

    with ThreadPoolExecutor(max_workers=slots, thread_name_prefix="snds-family") as pool:
        try:
            while pending or running:
                preparing = {f for f, is_ahead in running.values() if is_ahead}
                for family in [f for f in pending if f not in preparing
                               and all(p in finished for p in parents.get(f, []) if p in wanted)]:
                    if len(running) >= slots:
                        break
                    pending.remove(family)
                    if started is not None:
                        started(family, len(finished), len(families), under_way())
                    running[pool.submit(guarded, work, family)] = family, False
                for family in [f for f in pending if f not in prepared] if ahead is not None else []:
                    if len(running) >= slots:
                        break
                    prepared.add(family)
                    if ahead_started is not None:
                        ahead_started(family, under_way())
                    running[pool.submit(guarded, ahead, family)] = family, True
                if not running:
                    raise ValueError(f"families waiting on parents that never come: {', '.join(pending)}")
                done: set[Future] = set()
                while not done:  # woken each half second: Ctrl-C arriving just as the wait began waited with it
                    done, _ = wait(running, timeout=WAKE_SECONDS, return_when=FIRST_COMPLETED)
                for future in done:
                    family, is_ahead = running.pop(future)
                    if future.exception() is not None:
                        while not all(f.done() for f in running):
                            wait(running, timeout=WAKE_SECONDS)
                        raise future.exception()
                    if not is_ahead:
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
