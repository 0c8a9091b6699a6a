"""Every raw and curated table is partitioned by delivery; every per-project asset by project."""
from dagster import DynamicPartitionsDefinition

deliveries = DynamicPartitionsDefinition(name="deliveries")
projects = DynamicPartitionsDefinition(name="projects")
