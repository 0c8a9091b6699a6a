"""The production instance's compute logs (deploy/dagster.yaml): dagster-azure's, whose steps mirror their output
to the terminal through the same local helpers, so Ctrl-C of `snds ingest` on that instance spares them too.

A module of its own: the Azure SDK is imported only by an instance that names this class.
"""
from __future__ import annotations

from dagster_azure.blob.compute_log_manager import AzureBlobComputeLogManager

from .compute_logs import MirrorsSpareCtrlC


class InterruptSafeAzureBlobComputeLogManager(MirrorsSpareCtrlC, AzureBlobComputeLogManager):
    """dagster-azure's blob compute logs (same configuration), their terminal mirrors started with SIGINT blocked."""
