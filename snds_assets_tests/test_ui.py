"""End to end through the Dagster webserver: `snds ui` on a free port, driven over its GraphQL API as the UI is.

One server for the module (fixtures in ui_support.py): a small delivery lands, the test adds its partition,
launches the reception run of that delivery, waits for it and reads what the UI shows: assets, groups, sensors,
partitions and check results.
"""
import gzip
import json
from pathlib import Path

import pytest

from snds_assets.checks import CURATED_CHECKS, RAW_RULES, RULE_DESCRIPTIONS
from snds_assets.reception.report import load_report
from snds_assets.reception.storage import read_manifest
from snds_assets.resources import load_catalog

from .ui_support import DELIVERY_ID, delivery_run, generate_delivery, ui  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(1800)  # the first test waits for the server, the delivery and its Spark run

ASSET_NODES = """{ assetNodes { assetKey { path } groupName kinds description owners { ... on TeamAssetOwner { team } }
  partitionDefinition { name } } }"""

PARTITIONS = """query($key: AssetKeyInput!, $partition: String!) { assetNodeOrError(assetKey: $key) {
  ... on AssetNode { partitionKeysByDimension { name partitionKeys } partitionStats { numMaterialized numPartitions }
    assetMaterializations(partitions: [$partition]) { runId partition metadataEntries { label __typename
      ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } } } } } }"""


STOPPED_BY_TESTS: set[str] = set()  # sensors a test of this module switched off, whatever order the tests run in


def _nodes(ui):
    return {"/".join(n["assetKey"]["path"]): n for n in ui.graphql(ASSET_NODES)["assetNodes"]}


def test_assets_read_as_the_flow(ui):
    nodes = _nodes(ui)
    catalog = load_catalog(ui.settings.schemas)
    families = [t.name for t in catalog]
    assert {n["groupName"] for n in nodes.values()} == {"landing", "raw", "curated", "reports", "projects"}
    assert nodes["landing/delivery"]["groupName"] == "landing"
    for family in families:
        assert nodes[f"raw/{family}"]["groupName"] == "raw"
        assert nodes[f"curated/{family}"]["groupName"] == "curated"
    for key in ("projects/cohort", "projects/ER_PRS_F", "projects/T_MCOaaB", "reports/reception", "reports/project"):
        assert key in nodes, key
    assert sum(k.startswith("raw/") for k in nodes) == len(families)
    curated = nodes["curated/ER_PRS_F"]
    assert {"spark", "parquet"} <= set(curated["kinds"])
    assert curated["owners"] == [{"team": "snds-reception"}]
    assert "ER_PRS_F" in curated["description"]
    for key, node in nodes.items():
        assert node["description"], f"{key} has no description"
        expected = "projects" if key.startswith("projects/") or key == "reports/project" else "deliveries"
        assert node["partitionDefinition"]["name"] == expected, key


def test_code_location_and_instance_are_set_up_for_operators(ui):
    assert ui.location == "snds_assets"
    assert ui.graphql("{ shouldShowNux }")["shouldShowNux"] is False


def test_sensors_are_on_by_default_and_can_be_switched_off(ui):
    assert ui.initial_sensor_status == {
        "cnam_deliveries": "RUNNING", "project_requests": "RUNNING", "refresh_extracts": "RUNNING",
    }
    sensors = ui.sensors()
    assert sensors["cnam_deliveries"]["status"] == "STOPPED"
    assert sensors["project_requests"]["status"] == "STOPPED"
    assert sensors["refresh_extracts"]["status"] == (
        "STOPPED" if "refresh_extracts" in STOPPED_BY_TESTS else "RUNNING")  # the fixture left it on
    assert "manifest.json" in sensors["cnam_deliveries"]["description"]


def test_curated_checks_are_declared_with_their_rule(ui):
    checks = ui.checks(["curated", "ER_PRS_F"])
    assert set(checks) == {name for name, _ in CURATED_CHECKS}
    for name, rule in CURATED_CHECKS:
        assert checks[name]["description"] == RULE_DESCRIPTIONS.get(name, RULE_DESCRIPTIONS[rule])
    assert set(ui.checks(["raw", "ER_PRS_F"])) == set(RAW_RULES)


def test_delivery_partition_is_listed(ui, delivery_run):
    data = ui.graphql(PARTITIONS, {"key": {"path": ["curated", "ER_PRS_F"]}, "partition": DELIVERY_ID})
    dimensions = data["assetNodeOrError"]["partitionKeysByDimension"]
    assert [d["partitionKeys"] for d in dimensions] == [[DELIVERY_ID]]


def test_launched_delivery_run_succeeds(ui, delivery_run):
    assert delivery_run["status"] == "SUCCESS", "\n".join(delivery_run["failures"]) or ui.log_tail()
    tags = {t["key"]: t["value"] for t in delivery_run["tags"]}
    assert tags["dagster/partition"] == DELIVERY_ID
    assert sorted(a["path"] for a in delivery_run["assetSelection"]) == sorted(delivery_run["selection"])

    manifest = read_manifest(ui.settings.landing, DELIVERY_ID)
    data = ui.graphql(PARTITIONS, {"key": {"path": ["landing", "delivery"]}, "partition": DELIVERY_ID})
    node = data["assetNodeOrError"]
    assert node["partitionStats"] == {"numMaterialized": 1, "numPartitions": 1}
    [materialization] = node["assetMaterializations"]
    assert materialization["runId"] == delivery_run["runId"]
    assert materialization["partition"] == DELIVERY_ID
    metadata = {e["label"]: e.get("intValue", e.get("text")) for e in materialization["metadataEntries"]}
    assert metadata["tables"] == len(manifest.tables)
    assert metadata["rows announced"] == sum(f.rows for t in manifest.tables for f in t.files)


def test_check_results_show_in_the_ui(ui, delivery_run):
    assert delivery_run["status"] == "SUCCESS", "\n".join(delivery_run["failures"])
    raw = ui.checks(["raw", "ER_PRS_F"])
    for rule in RAW_RULES:
        result = raw[rule]
        assert result["runId"] == delivery_run["runId"], rule
        assert result["status"] == "SUCCEEDED" and result["success"] is True, (rule, result)
        assert result["metadata"]["failures"] == 0
        assert rule in result["metadata"]["explanation"]
    curated = ui.checks(["curated", "ER_PRS_F"])
    reported = {c["name"]: c for c in load_report(ui.settings, DELIVERY_ID)["tables"]["ER_PRS_F"]["checks"]}
    skipped = ["nomenclature", "primary_key_state"]  # SNDS_NOMENCLATURES unset; the family's first delivery
    assert sorted(name for name, _ in CURATED_CHECKS if not reported[name]["evaluated"]) == skipped
    for name, rule in CURATED_CHECKS:
        result = curated[name]
        assert result["runId"] == delivery_run["runId"], name
        if name in skipped:  # not evaluated: Skipped, not green
            assert (result["status"], result["success"]) == ("SKIPPED", None), (name, result)
            continue
        assert result["status"] in ("SUCCEEDED", "FAILED"), (name, result)
        assert isinstance(result["metadata"]["failures"], int)
        assert rule in result["metadata"]["explanation"]
    data = ui.graphql(NOT_EVALUATED, {"key": {"path": ["curated", "ER_PRS_F"]}, "partition": DELIVERY_ID})
    [materialization] = data["assetNodeOrError"]["assetMaterializations"]
    [why] = [e["mdStr"] for e in materialization["metadataEntries"] if e["label"] == "checks not evaluated"]
    assert sorted(line.split("**")[1] for line in why.splitlines()) == skipped, why
    assert "**nomenclature**: SNDS_NOMENCLATURES not set" in why
    assert curated["rows_reconciled"]["success"] is True
    assert curated["primary_key"]["success"] is True
    for result in [*raw.values(), *curated.values()]:
        assert result["partitions"] == "deliveries" and result["partition"] == DELIVERY_ID
        assert result["evaluated_partition"] == (None if result["status"] == "SKIPPED" else DELIVERY_ID)


NOT_EVALUATED = """query($key: AssetKeyInput!, $partition: String!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
  assetMaterializations(partitions: [$partition]) { metadataEntries { label ... on MarkdownMetadataEntry { mdStr } } } } } }"""


COLUMNS = """query($key: AssetKeyInput!, $partition: String!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
  assetMaterializations(partitions: [$partition]) { metadataEntries { label
    ... on TableSchemaMetadataEntry { schema { columns { name type description } } } } } } } }"""


def test_materialisations_describe_their_columns(ui, delivery_run):
    data = ui.graphql(COLUMNS, {"key": {"path": ["curated", "ER_PRS_F"]}, "partition": DELIVERY_ID})
    [materialization] = data["assetNodeOrError"]["assetMaterializations"]
    [schema] = [e["schema"] for e in materialization["metadataEntries"] if e["label"] == "dagster/column_schema"]
    columns = {c["name"]: c for c in schema["columns"]}
    catalog = load_catalog(ui.settings.schemas)
    for field in catalog["ER_PRS_F"].fields:
        assert columns[field.name]["description"] == (field.description or None), field.name
    assert columns["EXE_SOI_DTD"]["type"] == "date"
    assert columns["EXE_SOI_DTD"]["description"]
    # the raw files' columns too, as the text they are, in the order of their header
    data = ui.graphql(COLUMNS, {"key": {"path": ["raw", "ER_PRS_F"]}, "partition": DELIVERY_ID})
    [materialization] = data["assetNodeOrError"]["assetMaterializations"]
    [schema] = [e["schema"] for e in materialization["metadataEntries"] if e["label"] == "dagster/column_schema"]
    manifest = read_manifest(ui.settings.landing, DELIVERY_ID)
    [delivered] = [t for t in manifest.tables if t.table == "ER_PRS_F"]
    path = Path(ui.settings.landing, DELIVERY_ID, delivered.files[0].path)
    with (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)) as text:
        header = text.readline().strip().upper().split(";")
    assert [c["name"] for c in schema["columns"]] == header
    assert {c["type"] for c in schema["columns"]} == {"string"}
    described = {c["name"]: c["description"] for c in schema["columns"]}
    assert described["EXE_SOI_DTD"] == columns["EXE_SOI_DTD"]["description"]


def test_the_ui_and_the_report_give_the_same_verdicts(ui, delivery_run):
    """SPEC: every check of the reception report is an asset check of the same name with the same verdict (one not
    evaluated, Skipped)."""
    assert delivery_run["status"] == "SUCCESS", "\n".join(delivery_run["failures"])
    report = load_report(ui.settings, DELIVERY_ID)
    assert report is not None, "the reception report was not written"
    for name in ("ER_PRS_F", "IR_BEN_R", "ER_PHA_F"):
        table = report["tables"][name]
        ui_checks = {**ui.checks(["raw", name]), **ui.checks(["curated", name])}
        for check in table["checks"]:
            shown = ui_checks[check["name"]]
            if not check["evaluated"]:  # not evaluated: Skipped in the UI, no verdict
                assert (shown["status"], shown["success"]) == ("SKIPPED", None), (name, check["name"])
                continue
            assert shown["success"] == check["passed"], (name, check["name"])
            assert shown["metadata"]["failures"] == check["failures"], (name, check["name"])
    accepted = ui.checks(["reports", "reception"])["delivery_accepted"]
    assert accepted["runId"] == delivery_run["runId"]
    assert accepted["success"] == (report["status"] == "accepted")
    assert report["status"] == "accepted", {n: t["status"] for n, t in report["tables"].items()}


def test_backfill_over_two_deliveries(ui, delivery_run):
    """A second delivery lands; one backfill receives the landing asset of both (no Spark: the manifest step)."""
    second = "2024-02-15"
    generate_delivery(ui.home, second, patients=5, tables=("IR_BEN_R",))
    before = ui.graphql(PARTITIONS, {"key": {"path": ["landing", "delivery"]}, "partition": second})
    ui.add_partition("deliveries", second)
    backfill = ui.wait_for_backfill(ui.launch_backfill([DELIVERY_ID, second], [["landing", "delivery"]]))
    assert backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), backfill
    runs = {next(t["value"] for t in r["tags"] if t["key"] == "dagster/partition"): r["status"] for r in backfill["runs"]}
    assert runs == {DELIVERY_ID: "SUCCESS", second: "SUCCESS"}
    data = ui.graphql(PARTITIONS, {"key": {"path": ["landing", "delivery"]}, "partition": second})
    node = data["assetNodeOrError"]
    earlier = before["assetNodeOrError"]["partitionStats"]  # other tests of the module may add deliveries too
    assert node["partitionStats"] == {"numMaterialized": earlier["numMaterialized"] + 1,
                                      "numPartitions": earlier["numPartitions"] + 1}
    assert earlier["numMaterialized"] == earlier["numPartitions"]  # DELIVERY_ID's landing was received already
    [materialization] = node["assetMaterializations"]
    metadata = {e["label"]: e.get("intValue", e.get("text")) for e in materialization["metadataEntries"]}
    assert metadata["tables"] == len(read_manifest(ui.settings.landing, second).tables)


def test_a_delivery_materialised_from_the_asset_graph_waits_in_the_queue(ui, delivery_run):
    """Runs of the asset graph carry no tag of the reception job: one launched while another delivery was being
    received started at once, only to wait for its turn in a run slot. The queue now holds it (pool
    snds_reception) until the other ends."""
    import time

    curating, landing = "2023-12-15", "2023-12-20"  # before DELIVERY_ID, whose state later tests read
    for delivery_id in (curating, landing):
        generate_delivery(ui.home, delivery_id, patients=5, tables=("IR_BEN_R",))
        ui.add_partition("deliveries", delivery_id)
    first = ui.launch("__ASSET_JOB", curating, [["landing", "delivery"], ["raw", "IR_BEN_R"], ["curated", "IR_BEN_R"]])
    deadline = time.monotonic() + 300
    while ui.run(first)["status"] in ("QUEUED", "NOT_STARTED", "STARTING") and time.monotonic() < deadline:
        time.sleep(0.5)
    second = ui.launch("__ASSET_JOB", landing, [["landing", "delivery"]])
    runs = [ui.wait_for_run(run_id) for run_id in (first, second)]
    assert [r["status"] for r in runs] == ["SUCCESS", "SUCCESS"], [ui.run_failures(r["runId"]) for r in runs]
    (start_first, end_first), (start_second, _) = (
        (t["startTime"], t["endTime"]) for t in (ui.graphql(
            """query($id: ID!) { runOrError(runId: $id) { ... on Run { startTime endTime } } }""",
            {"id": run_id})["runOrError"] for run_id in (first, second)))
    assert start_first < end_first <= start_second


def test_project_partition_launched_from_the_ui(ui, delivery_run):
    """A project request lands in SNDS_PROJECTS; its partition is added and the whole `provision` job launched on
    it, as the UI's "Materialize all" does (the project sensors are off: the test launches). The run succeeds with
    the project's extracts and its report: the report, a step of its own downstream of every family's extract, was
    skipped by Dagster for the families the project is not granted, in a green run that left it incomplete."""

    from snds_assets.catalog import Catalog
    from snds_assets.commands import DEMO_PROJECT, write_demo_project
    from snds_assets.lake import Lake
    from snds_assets.provision.assets import COHORT_KEY, build_extract_assets
    from snds_assets.reception.assets import curated_key

    assert delivery_run["status"] == "SUCCESS", "\n".join(delivery_run["failures"])
    STOPPED_BY_TESTS.add("refresh_extracts")
    ui.stop_sensor("refresh_extracts")  # else a late tick on the reception report could extract it too
    write_demo_project(ui.settings, DELIVERY_ID)
    catalog = Catalog.load(ui.settings.schemas)
    every_asset = [COHORT_KEY.path, *(k.path for k in build_extract_assets(catalog, curated_key).keys)]
    ui.add_partition("projects", DEMO_PROJECT)
    run = ui.wait_for_run(ui.launch("provision", DEMO_PROJECT, every_asset, tags={"snds/project": DEMO_PROJECT}))
    assert run["status"] == "SUCCESS", "\n".join(ui.run_failures(run["runId"])) or ui.log_tail()
    report = json.loads(open(Lake(ui.settings.lake).project_report(DEMO_PROJECT), encoding="utf-8").read())
    assert report["status"] == "complete" and report["cohort"]["size"] > 0, report["status"]
    # the daemon's run, as every run, wrote its events as JSON lines under the home
    log = Path(ui.settings.home, "logs", "runs", f"{run['runId']}.jsonl").read_text(encoding="utf-8")
    events = [json.loads(line) for line in log.splitlines()]
    assert events[-1]["event"] == "PIPELINE_SUCCESS" and {e["partition"] for e in events} == {DEMO_PROJECT}
    assert any(e["event"] == "ASSET_MATERIALIZATION" and e["asset"] == "reports/project" for e in events)
    checks = ui.checks(["projects", "cohort"])
    assert checks and all(c["partition"] == DEMO_PROJECT and c["partitions"] == "projects" for c in checks.values())
    _checks_executed_alone(ui, DEMO_PROJECT, [(["projects", "ER_PRS_F"], "row_count"),
                                              (["projects", "ER_PRS_F"], "in_period"),
                                              (["projects", "cohort"], "no_snds_pseudonym")],
                           tags={"snds/project": DEMO_PROJECT})


def test_a_check_executed_alone_gives_the_verdict_of_its_last_materialisation(ui, delivery_run):
    """The "Execute" button of one check runs it without its asset: it gave no result (Dagster showed the check
    skipped, a failed ERROR verdict hidden). Ours are computed as their asset is written: the verdict the last
    materialisation recorded is given again, and says so."""
    assert delivery_run["status"] == "SUCCESS", "\n".join(delivery_run["failures"])
    _checks_executed_alone(ui, DELIVERY_ID, [(["curated", "ER_PRS_F"], "primary_key"),
                                             (["curated", "ER_PRS_F"], "foreign_key"),
                                             (["raw", "ER_PHA_F"], "checksum"),
                                             (["reports", "reception"], "delivery_accepted")])


def test_a_check_not_evaluated_executed_alone_stays_skipped(ui, delivery_run):
    """A check its asset's materialisation left not evaluated, executed alone, is Skipped again, its run's log
    saying why: not a verdict made up for it."""
    assert delivery_run["status"] == "SUCCESS", "\n".join(delivery_run["failures"])
    run = ui.wait_for_run(ui.launch_checks(DELIVERY_ID, [(["curated", "ER_PRS_F"], "nomenclature")]))
    assert run["status"] == "SUCCESS", "\n".join(ui.run_failures(run["runId"])) or ui.log_tail()
    now = ui.checks(["curated", "ER_PRS_F"])["nomenclature"]
    assert (now["runId"], now["status"], now["success"]) == (run["runId"], "SKIPPED", None), now
    log = Path(ui.settings.home, "logs", "runs", f"{run['runId']}.jsonl").read_text(encoding="utf-8")
    [line] = [json.loads(x)["message"] for x in log.splitlines() if "check nomenclature not evaluated" in x]
    assert line.startswith("curated/ER_PRS_F check nomenclature not evaluated: executed alone") and (
        line.endswith("SNDS_NOMENCLATURES not set")), line


def _checks_executed_alone(ui, partition: str, checks: list[tuple[list[str], str]], tags: dict | None = None) -> None:
    before = {(tuple(k), n): ui.checks(k)[n] for k, n in checks}
    run = ui.wait_for_run(ui.launch_checks(partition, checks, tags))
    assert run["status"] == "SUCCESS", "\n".join(ui.run_failures(run["runId"])) or ui.log_tail()
    for key, name in checks:
        earlier, now = before[(tuple(key), name)], ui.checks(key)[name]
        assert earlier["status"] in ("SUCCEEDED", "FAILED"), (key, name, earlier)
        assert (now["runId"], now["status"], now["partition"]) == (run["runId"], earlier["status"], partition), (
            key, name, now)
        assert (now["success"], now["severity"]) == (earlier["success"], earlier["severity"]), (key, name)
        assert now["metadata"]["failures"] == earlier["metadata"]["failures"], (key, name)
        assert "executed alone, the verdict of" in now["metadata"]["explanation"], (key, name)
