"""Compute logs as Dagster keeps them, but mirrored to the terminal by helpers that Ctrl-C spares.

Dagster copies a step's output to the terminal through `tail` and a Python watcher started for each step. They
share the terminal's process group, so Ctrl-C reached them too and the watcher printed a `KeyboardInterrupt`
traceback under the command's one-line message. Started with SIGINT blocked (a mask a child keeps across exec),
they leave Ctrl-C to the run, which ends them as it ends the step; the watcher still ends `tail` should the run's
process die.
"""
from __future__ import annotations

import os
import signal
from collections.abc import Generator, Iterator, Sequence
from contextlib import ExitStack, contextmanager

from dagster import Field, StringSource
from dagster._core.storage.compute_log_manager import CapturedLogContext
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
from dagster._serdes import ConfigurableClassData


@contextmanager
def sigint_blocked() -> Iterator[None]:
    """Hold SIGINT for this thread meanwhile: a Ctrl-C then is delivered when it ends, not lost."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class MirrorsSpareCtrlC:
    """Mixed into a compute log manager: its capture (which starts the terminal mirrors) begins with SIGINT held."""

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Generator[CapturedLogContext, None, None]:
        with ExitStack() as stack:
            with sigint_blocked():  # while the mirrors start; the step itself runs with SIGINT as it was
                context = stack.enter_context(super().capture_logs(log_key))
            yield context


class InterruptSafeComputeLogManager(MirrorsSpareCtrlC, LocalComputeLogManager):
    """Dagster's local compute logs (same files, same UI), their terminal mirrors started with SIGINT blocked."""

    @classmethod
    def config_type(cls) -> dict:
        return {"base_dir": Field(StringSource, is_required=False),
                "polling_timeout": Field(float, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: dict
                          ) -> InterruptSafeComputeLogManager:
        """Without ``base_dir``, Dagster's default one: ``$DAGSTER_HOME/storage``."""
        config = dict(config_value)
        if "base_dir" not in config:
            if not os.environ.get("DAGSTER_HOME"):
                raise ValueError(f"compute_logs: {cls.__name__} needs a base_dir when DAGSTER_HOME is not set")
            config["base_dir"] = os.path.join(os.environ["DAGSTER_HOME"], "storage")
        return cls(inst_data=inst_data, **config)
