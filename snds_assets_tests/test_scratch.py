"""The scratch of killed runs (staged writes, partitions moved aside) is removed by the next run of the partition."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, materialize
from dagster._core.test_utils import create_run_for_test

from snds_assets.catalog import Catalog
from snds_assets.config import Settings
from snds_assets.lake import Lake
from snds_assets.resources import SndsResource
from snds_assets.runs import PROCESS_TAG, process_tags, unfinished_runs
from snds_assets.scratch import hidden_scratch

from .provision_support import materialize_cohort_without_spark
from .reception_delivery import Delivery, csv_bytes, dummy_rows
from .services import queued_run

DID = "2026-11-15"


@pytest.fixture(scope="module")
def catalog(reference_schemas) -> Catalog:
    return Catalog.load(reference_schemas)


def _plant(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "part-00000.parquet").write_bytes(b"scratch")
    return path


def _hex() -> str:
    return uuid.uuid4().hex


def _messages(instance: DagsterInstance, run_id: str) -> str:
    return "\n".join(e.user_message for e in instance.all_logs(run_id))


def test_hidden_scratch_names_only_staged_writes_of_the_name_asked(tmp_path):
    for name in (f".delivery_id={DID}.old-{_hex()}", f".delivery_id={DID}.staging-{_hex()}",
                 f".delivery_id=2026-12-01.old-{_hex()}", "delivery_id=2026-11-15", ".hidden", f".x.old-{_hex()[:8]}"):
        _plant(tmp_path / name)
    (tmp_path / f".report.json.{_hex()}.tmp").write_text("{}")
    assert [Path(p).name.rsplit("-", 1)[0] for p in hidden_scratch(str(tmp_path), f"delivery_id={DID}")] == [
        f".delivery_id={DID}.old", f".delivery_id={DID}.staging"]
    assert len(hidden_scratch(str(tmp_path))) == 4
    rewritten = [Path(p).name for p in hidden_scratch(str(tmp_path), rewritten={"delivery_id=2026-12-01"})]
    assert len(rewritten) == 3 and not any(n.startswith(f".delivery_id={DID}.old-") for n in rewritten)
    assert hidden_scratch(str(tmp_path / "absent")) == []


def test_unfinished_runs_of_a_partition_by_any_of_its_tags_but_this_one():
    instance = DagsterInstance.ephemeral()
    mine = create_run_for_test(instance, job_name="reception", status=DagsterRunStatus.STARTED,
                               tags={"dagster/partition": DID})
    ui = create_run_for_test(instance, job_name="__ASSET_JOB", status=DagsterRunStatus.NOT_STARTED,
                             tags={"dagster/partition": DID})
    cli = create_run_for_test(instance, job_name="reception", status=DagsterRunStatus.STARTED,
                              tags={"snds/delivery": DID})
    create_run_for_test(instance, job_name="reception", status=DagsterRunStatus.FAILURE,
                        tags={"dagster/partition": DID})
    create_run_for_test(instance, job_name="reception", status=DagsterRunStatus.STARTED,
                        tags={"dagster/partition": "2026-12-01"})
    found = unfinished_runs(instance, {"dagster/partition": DID, "snds/delivery": DID}, mine.run_id)
    assert sorted(r.run_id for r in found) == sorted([ui.run_id, cli.run_id])


def test_a_reception_removes_what_killed_runs_of_its_delivery_left_once_no_other_run_is_unfinished(tmp_path, catalog,
                                                                                                   spark):
    """Staged writes always; a partition moved aside (the last published copy, were the run killed before the new
    one was put in place) only by a run that curates that family again."""
    from snds_assets.reception.assets import build_reception_assets
    from snds_assets.spark import SparkResource

    settings = Settings.from_env(env={}, home=str(tmp_path / "snds"))
    lake = Path(settings.lake)
    ben = list(catalog["IR_BEN_R"].columns)
    d = Delivery(Path(settings.landing), DID)
    d.add("IR_BEN_R", "IR_BEN_R.csv", csv_bytes(ben, dummy_rows(ben, 3)))
    d.write()
    left = [_plant(lake / "_staging" / "raw" / DID / _hex()),
            _plant(lake / "_staging" / "curation" / DID / "IR_BEN_R" / _hex())]
    parts = lake / "reports" / "deliveries" / "_parts" / DID
    parts.mkdir(parents=True)
    left.append(parts / f".IR_BEN_R.raw.json.{_hex()}.tmp")
    left[-1].write_text("{")
    aside = [_plant(lake / "curated" / "IR_BEN_R" / f".delivery_id={DID}.old-{_hex()}"),
             _plant(lake / "rejects" / "IR_BEN_R" / f".delivery_id={DID}.old-{_hex()}")]
    kept = [_plant(lake / "_staging" / "raw" / "2026-12-01" / _hex()),
            _plant(lake / "curated" / "IR_BEN_R" / f".delivery_id=2026-12-01.old-{_hex()}")]

    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("deliveries", [DID])
    # A run of the delivery waiting in the queue (one started before would refuse this one: runs.take_turn)
    other = queued_run(instance, "__ASSET_JOB", DagsterRunStatus.QUEUED, {"dagster/partition": DID})
    snds = SndsResource(home=settings.home, landing=settings.landing, lake=settings.lake, schemas=settings.schemas)

    def receive(*kinds: str) -> str:
        result = materialize([build_reception_assets(catalog)], selection=[AssetKey([k, "IR_BEN_R"]) for k in kinds],
                             partition_key=DID, instance=instance, resources={"snds": snds, "spark": SparkResource()})
        assert result.success
        return _messages(instance, result.run_id)

    said = receive("raw")
    assert all(p.exists() for p in left + aside + kept)
    runs = instance.get_runs()
    assert runs[0].tags[PROCESS_TAG] == process_tags(runs[0].run_id)[PROCESS_TAG]  # names the process running it
    assert f"3 staged writes of earlier runs on delivery {DID} left in place: run {other.run_id}" in said

    instance.report_run_canceled(other)
    said = receive("raw")  # archives IR_BEN_R again, curates nothing: the partitions moved aside stay
    assert [p for p in left if p.exists()] == [] and all(p.exists() for p in aside + kept)
    assert f"removed 3 staged writes left by killed runs on delivery {DID}" in said
    assert (lake / "raw" / DID / "IR_BEN_R.csv").exists()
    assert not (lake / "_staging" / "raw" / DID).exists()  # nor the empty folders its own writes were staged in

    said = receive("raw", "curated")
    assert [p for p in aside if p.exists()] == [] and all(p.exists() for p in kept)
    assert f"removed 2 staged writes left by killed runs on delivery {DID}" in said
    assert (lake / "curated" / "IR_BEN_R" / f"delivery_id={DID}").is_dir()


def test_a_project_run_removes_what_killed_runs_of_the_project_left(tmp_path, monkeypatch):
    """The cohort step: staged writes, and the folders it writes moved aside; not another family's."""
    settings = Settings.from_env(env={}, home=str(tmp_path))
    lake = Lake(settings.lake)
    space, restricted = Path(lake.project("p")), Path(lake.restricted("p"))
    left = [_plant(space / f".ER_PRS_F.staging-{_hex()}"), _plant(space / f".cohort.old-{_hex()}"),
            _plant(restricted / f".correspondence.staging-{_hex()}"), _plant(restricted / f".identifiers.old-{_hex()}")]
    (restricted / "info").mkdir()
    left.append(restricted / "info" / f".cohort.json.{_hex()}.tmp")
    left[-1].write_text("{")
    kept = [_plant(space / "cohort"), _plant(space / ".not-ours"), _plant(space / f".ER_PRS_F.old-{_hex()}"),
            _plant(Path(lake.project("q")) / f".cohort.old-{_hex()}")]  # ER_PRS_F: not written by the cohort step

    instance, result = materialize_cohort_without_spark(monkeypatch, tmp_path)
    assert result.success
    assert [p for p in left if p.exists()] == []
    assert all(p.exists() for p in kept)
    assert "removed 5 staged writes left by killed runs on project p" in _messages(instance, result.run_id)
