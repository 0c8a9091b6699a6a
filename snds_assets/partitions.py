"""Every raw and curated table is partitioned by delivery; every per-project asset by project.

Their asset checks carry the same partitions (a preview feature of Dagster 1.13), so that the UI shows each
check's verdict per delivery or project; the preview warning is said once here rather than per check.
"""
import warnings

from dagster import DynamicPartitionsDefinition, PreviewWarning

warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=PreviewWarning)

deliveries = DynamicPartitionsDefinition(name="deliveries")
projects = DynamicPartitionsDefinition(name="projects")
