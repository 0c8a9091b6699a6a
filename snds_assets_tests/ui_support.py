"""Run `snds ui` for real in a temporary SNDS_HOME and talk to it the way the Dagster UI does (GraphQL over HTTP).

Used by test_ui.py (GraphQL) and test_browser.py (headless Chromium). The server is `snds ui` as an operator
starts it (`dagster dev`: webserver, daemon, code server), in its own process group so that stopping it stops
every process it started, run workers and Spark included.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from snds_assets.config import Settings

from .services import clean_environment, snds_command

DELIVERY_ID = "2024-01-15"
PATIENTS = 50
# A few families, enough for lineage (ER_PHA_F joins ER_PRS_F), identities and yearly PMSI tables, small enough
# for one Spark run of a minute or so on two shared cores.
TABLES = ("IR_BEN_R", "ER_PRS_F", "ER_PHA_F", "T_MCOaaB", "T_MCOaaC")
REPOSITORY = "__repository__"
START_TIMEOUT = 300  # seconds for `dagster dev` to serve the loaded code location (2 shared cores)
RUN_TIMEOUT = 600  # seconds for one reception run, queueing included
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


class UiError(AssertionError):
    """The UI did not do what an operator expects; the message carries the server's last log lines."""


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def generate_delivery(home: Path, delivery_id: str = DELIVERY_ID, patients: int = PATIENTS,
                      tables: tuple[str, ...] | None = TABLES, defects: bool = False) -> Path:
    """A small synthetic delivery in the landing zone, written by `snds generate` as an operator would."""
    selection = (["--tables", ",".join(tables)] if tables else []) + (["--defects"] if defects else [])
    proc = subprocess.run(
        [*snds_command(), "--home", str(home), "generate", "--delivery-id", delivery_id, "--patients", str(patients),
         "--seed", "7", *selection],
        env=clean_environment(home), capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0:
        raise UiError(f"snds generate failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    folder = Path(Settings.from_env({"SNDS_HOME": str(home)}).landing) / delivery_id
    if not (folder / "manifest.json").exists():
        raise UiError(f"snds generate wrote no manifest in {folder}: {proc.stdout}")
    return folder


def ground_truth(home: Path, delivery_id: str = DELIVERY_ID) -> dict:
    """The defects `snds generate --defects` injected, as it wrote them beside the delivery."""
    import json

    path = Path(Settings.from_env({"SNDS_HOME": str(home)}).landing) / f"{delivery_id}.defects.json"
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass
class UiServer:
    """A running `snds ui`: its address, settings, process and log."""

    home: Path
    port: int
    process: subprocess.Popen
    log_path: Path
    settings: Settings
    location: str = ""
    initial_sensor_status: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- talking to the webserver ------------------------------------------------------------------------
    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 120) -> dict:
        """The `data` of a GraphQL answer; GraphQL errors raise with the message."""
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}},
                                 timeout=timeout)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise UiError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def repository_selector(self) -> dict:
        return {"repositoryLocationName": self.location, "repositoryName": REPOSITORY}

    def sensors(self) -> dict[str, dict]:
        """Sensor name -> {id, status, description} as the Sensors page lists them."""
        data = self.graphql(
            """query($selector: RepositorySelector!) { sensorsOrError(repositorySelector: $selector) {
                 __typename ... on Sensors { results { name description sensorState { id status } } }
                 ... on PythonError { message } } }""",
            {"selector": self.repository_selector()},
        )["sensorsOrError"]
        if data["__typename"] != "Sensors":
            raise UiError(f"sensors not listed: {data}")
        return {s["name"]: {"id": s["sensorState"]["id"], "status": s["sensorState"]["status"],
                            "description": s["description"]} for s in data["results"]}

    def stop_sensor(self, name: str, timeout: float = 60) -> str:
        """Switch a sensor off, as the toggle on the Sensors page does; returns its status once it stays off.

        The daemon saves a sensor's whole state after each tick, so a tick that read the state before the toggle
        can write RUNNING back (a race in Dagster itself): the toggle is repeated until the status holds."""
        deadline = time.monotonic() + timeout
        while True:
            sensor = self.sensors()[name]
            if sensor["status"] != "STOPPED":
                data = self.graphql(
                    """mutation($id: String) { stopSensor(id: $id) { __typename
                         ... on StopSensorMutationResult { instigationState { status } }
                         ... on PythonError { message } } }""",
                    {"id": sensor["id"]},
                )["stopSensor"]
                if data["__typename"] != "StopSensorMutationResult":
                    raise UiError(f"could not stop sensor {name}: {data}")
            time.sleep(5)
            status = self.sensors()[name]["status"]
            if status == "STOPPED" and sensor["status"] == "STOPPED":
                return status
            if time.monotonic() > deadline:
                raise UiError(f"sensor {name} did not stay stopped: {status}")

    def add_partition(self, partitions_def: str, key: str) -> None:
        """Add a dynamic partition, as 'Add partition' in the launch dialog does."""
        data = self.graphql(
            """mutation($selector: RepositorySelector!, $name: String!, $key: String!) {
                 addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
                   __typename ... on AddDynamicPartitionSuccess { partitionKey } ... on PythonError { message }
                   ... on DuplicateDynamicPartitionError { partitionName } } }""",
            {"selector": self.repository_selector(), "name": partitions_def, "key": key},
        )["addDynamicPartition"]
        if data["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
            raise UiError(f"could not add partition {key} to {partitions_def}: {data}")

    def launch(self, job: str, partition: str, asset_keys: list[list[str]], tags: dict | None = None) -> str:
        """Launch one partition of a job on a subset of its assets, through the documented GraphQL client."""
        from dagster_graphql import DagsterGraphQLClient

        client = DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=120)
        return client.submit_job_execution(
            job, repository_location_name=self.location, repository_name=REPOSITORY,
            tags={"dagster/partition": partition, **(tags or {})},
            asset_selection=[tuple(k) for k in asset_keys],
        )

    def launch_checks(self, partition: str, checks: list[tuple[list[str], str]], tags: dict | None = None) -> str:
        """Execute some asset checks alone on one partition, as a check's "Execute" button does: the implicit asset
        job, no asset selected."""
        data = self.graphql(
            """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
                 ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
                 ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }""",
            {"params": {
                "selector": {**self.repository_selector(), "jobName": "__ASSET_JOB", "assetSelection": [],
                             "assetCheckSelection": [{"assetKey": {"path": k}, "name": n} for k, n in checks]},
                "executionMetadata": {"tags": [{"key": k, "value": v}
                                               for k, v in {"dagster/partition": partition, **(tags or {})}.items()]},
            }},
        )["launchRun"]
        if data["__typename"] != "LaunchRunSuccess":
            raise UiError(f"checks not launched: {data}")
        return data["run"]["runId"]

    def launch_backfill(self, partitions: list[str], asset_keys: list[list[str]]) -> str:
        """A backfill of some assets over several partitions, as 'Materialize' on a partition range does."""
        data = self.graphql(
            """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
                 __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
                 ... on InvalidSubsetError { message } ... on PartitionSetNotFoundError { message } } }""",
            {"params": {"partitionNames": partitions, "assetSelection": [{"path": k} for k in asset_keys],
                        "title": "test backfill"}},
        )["launchPartitionBackfill"]
        if data["__typename"] != "LaunchBackfillSuccess":
            raise UiError(f"backfill not launched: {data}")
        return data["backfillId"]

    def wait_for_backfill(self, backfill_id: str, timeout: float = RUN_TIMEOUT) -> dict:
        """Poll a backfill until the daemon has run all its partitions; returns its status and runs."""
        deadline = time.monotonic() + timeout
        while True:
            backfill = self.graphql(
                """query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
                     ... on PartitionBackfill { id status partitionNames
                       runs(limit: 100) { runId status tags { key value } } } } }""",
                {"id": backfill_id},
            )["partitionBackfillOrError"]
            if backfill.get("status") in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"):
                return backfill
            if time.monotonic() > deadline:
                raise UiError(f"backfill {backfill_id} still {backfill.get('status')} after {timeout}s:\n"
                              f"{self.log_tail()}")
            time.sleep(2)

    def run(self, run_id: str) -> dict:
        return self.graphql(
            """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run {
                 runId status tags { key value } assetSelection { path } } } }""",
            {"id": run_id},
        )["runOrError"]

    def wait_for_run(self, run_id: str, timeout: float = RUN_TIMEOUT) -> dict:
        """Poll a run until it ends (queued runs wait for the daemon); a run still going at timeout fails."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run.get("status") in TERMINAL:
                return run
            if self.process.poll() is not None:
                raise UiError(f"snds ui exited ({self.process.returncode}) while run {run_id} was "
                              f"{run.get('status')}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise UiError(f"run {run_id} still {run.get('status')} after {timeout}s:\n{self.log_tail()}")
            time.sleep(2)

    def run_failures(self, run_id: str) -> list[str]:
        """The error messages of a run's failed steps, to say why a run failed."""
        data = self.graphql(
            """query($id: ID!) { logsForRun(runId: $id) { __typename ... on EventConnection { events {
                 __typename ... on ExecutionStepFailureEvent { stepKey error { message } }
                 ... on RunFailureEvent { message } } } } }""",
            {"id": run_id},
        )["logsForRun"]
        messages = []
        for event in data.get("events", []):
            if event["__typename"] == "ExecutionStepFailureEvent":
                messages.append(f"{event['stepKey']}: {(event.get('error') or {}).get('message', '').strip()}")
            elif event["__typename"] == "RunFailureEvent":
                messages.append(event.get("message", ""))
        return messages

    def checks(self, asset_key: list[str]) -> dict[str, dict]:
        """Check name -> {description, status, success, severity, metadata, runId} of the latest materialisation."""
        data = self.graphql(
            """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { __typename ... on AssetNode {
                 assetChecksOrError { __typename ... on AssetChecks { checks { name description
                   partitionDefinition { name }
                   executionForLatestMaterialization { runId status partition evaluation { success severity partition
                     metadataEntries { label __typename ... on IntMetadataEntry { intValue }
                       ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr }
                       ... on BoolMetadataEntry { boolValue } } } } } } } } } }""",
            {"key": {"path": asset_key}},
        )["assetNodeOrError"]
        if data["__typename"] != "AssetNode":
            raise UiError(f"asset {'/'.join(asset_key)} not found: {data}")
        checks = data["assetChecksOrError"]
        if checks["__typename"] != "AssetChecks":
            raise UiError(f"checks of {'/'.join(asset_key)} not listed: {checks}")
        out = {}
        for check in checks["checks"]:
            execution = check["executionForLatestMaterialization"] or {}
            evaluation = execution.get("evaluation") or {}
            metadata = {}
            for entry in evaluation.get("metadataEntries", []):
                values = [v for k, v in entry.items() if k not in ("label", "__typename")]
                metadata[entry["label"]] = values[0] if values else None
            out[check["name"]] = {
                "description": check["description"], "status": execution.get("status"),
                "runId": execution.get("runId"), "success": evaluation.get("success"),
                "severity": evaluation.get("severity"), "metadata": metadata,
                "partitions": (check["partitionDefinition"] or {}).get("name"),
                "partition": execution.get("partition"), "evaluated_partition": evaluation.get("partition"),
            }
        return out

    # --- lifecycle ----------------------------------------------------------------------------------------
    def wait_until_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the webserver answers and serves the code location loaded (not a load error)."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise UiError(f"snds ui exited with status {self.process.returncode}:\n{self.log_tail()}")
            try:
                data = self.graphql(
                    """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
                         locationOrLoadError { __typename ... on PythonError { message } } } } } }""",
                    timeout=10,
                )
                entries = data["workspaceOrError"].get("locationEntries") or []
                if entries:
                    entry = entries[0]
                    loaded = entry["locationOrLoadError"] or {}
                    if loaded.get("__typename") == "PythonError":
                        raise UiError(f"code location {entry['name']} failed to load: {loaded['message']}")
                    if entry["loadStatus"] == "LOADED" and loaded.get("__typename") == "RepositoryLocation":
                        self.location = entry["name"]
                        return
                    last = f"location {entry['name']} {entry['loadStatus']}"
            except (requests.RequestException, ValueError) as exc:
                last = type(exc).__name__
            time.sleep(1)
        raise UiError(f"snds ui not ready after {timeout}s ({last}):\n{self.log_tail()}")

    def stop(self, timeout: float = 60) -> None:
        """Interrupt the whole process group (Ctrl-C), then kill what is left, strays included."""
        pgid = self.process.pid
        if self.process.poll() is None:
            _signal_group(pgid, signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(pgid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=30)
        for pid in processes_using(self.home):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _default_interrupts() -> None:
    """Ctrl-C and SIGTERM stop `snds ui` even when the test runner was started with them ignored (a background
    job of a script), as a terminal's Ctrl-C would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def processes_using(home: Path) -> list[int]:
    """Processes whose environment points at this SNDS_HOME: only ever the ones this server started."""
    marker = f"SNDS_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def start_ui(home: Path, timeout: float = START_TIMEOUT) -> UiServer:
    """`snds ui` on a free port of 127.0.0.1, in its own process group, ready to answer GraphQL."""
    home.mkdir(parents=True, exist_ok=True)
    home = home.resolve()  # as `snds` resolves it, so that its processes can be found by their SNDS_HOME
    port = free_port()
    log_path = home / "snds-ui.log"
    log = log_path.open("w", encoding="utf-8")
    process = subprocess.Popen(
        [*snds_command(), "--home", str(home), "ui", "--host", "127.0.0.1", "--port", str(port)],
        env=clean_environment(home), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=_default_interrupts,
    )
    log.close()
    server = UiServer(home=home, port=port, process=process, log_path=log_path,
                      settings=Settings.from_env({"SNDS_HOME": str(home)}))
    try:
        server.wait_until_ready(timeout)
    except BaseException:
        server.stop()
        raise
    return server


def reception_selection(settings: Settings, delivery_id: str) -> list[list[str]]:
    """What an operator materialises for one delivery: its landing asset, raw and curated tables and report."""
    from snds_assets.reception.assets import delivery_selection
    from snds_assets.reception.storage import read_manifest
    from snds_assets.resources import load_catalog

    keys = delivery_selection(load_catalog(settings.schemas), read_manifest(settings.landing, delivery_id))
    return [list(k.path) for k in keys]


# --- fixtures (imported by test_ui.py and test_browser.py) ------------------------------------------------------
@pytest.fixture(scope="module")
def ui(request, tmp_path_factory) -> UiServer:
    """`snds ui` on a fresh SNDS_HOME. The delivery and project sensors are switched off through the UI before a
    delivery lands, so that the test, not the sensor, launches the run (one Spark run at a time). A test module
    with ``DEFECTS = True`` receives a delivery with the generator's documented defects."""
    home = tmp_path_factory.mktemp("ui") / "snds"
    server = start_ui(home)
    try:
        server.initial_sensor_status = {name: s["status"] for name, s in server.sensors().items()}
        for name in ("cnam_deliveries", "project_requests"):
            server.stop_sensor(name)
        generate_delivery(home, defects=getattr(request.module, "DEFECTS", False))
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def delivery_run(ui: UiServer) -> dict:
    """The delivery's partition added and its reception run launched through GraphQL, waited for to its end."""
    ui.add_partition("deliveries", DELIVERY_ID)
    selection = reception_selection(ui.settings, DELIVERY_ID)
    run_id = ui.launch("reception", DELIVERY_ID, selection, tags={"snds/delivery": DELIVERY_ID, "snds/source": "test"})
    run = ui.wait_for_run(run_id)
    run["selection"] = selection
    run["failures"] = ui.run_failures(run_id) if run["status"] != "SUCCESS" else []
    return run


# --- the UI in headless Chromium (test_browser.py and docs/screenshots/make.py) ----------------------------------
CHROMIUM = os.environ.get("SNDS_CHROMIUM", "/usr/bin/chromium")  # Debian's package; Playwright downloads nothing
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1600, "height": 1000}
REPORT_VIEWPORT = {"width": 1280, "height": 1000}
PAGE_TIMEOUT = 120_000  # ms: the first page of the UI compiles its queries on two shared cores
SETTLE = 1500  # ms after the awaited element, for the graph layout and the charts to finish drawing


def launch_chromium(playwright):
    """Debian's Chromium driven by Playwright: the executable path is given, no browser is ever downloaded."""
    if not Path(CHROMIUM).exists():
        raise UiError(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium), "
                      "as `make services` (run by `make test`) does")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def new_ui_page(browser, server: UiServer):
    """A page on the UI; the instance `snds` set up disables the first-visit pop-up (see test_ui)."""
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(PAGE_TIMEOUT)
    return page


def graph_nodes(page) -> list[str]:
    """The text of every node the asset graph draws (groups and assets are SVG foreignObjects)."""
    return page.evaluate("() => Array.from(document.querySelectorAll('foreignObject'), e => e.textContent.trim())")


def show_asset_graph(page, server: UiServer, path: Path) -> list[str]:
    """The global lineage: the groups in the order the data flows. Returns the group nodes drawn."""
    page.goto(f"{server.url}/asset-groups", wait_until="load")
    page.locator("foreignObject").nth(4).wait_for(state="attached")
    page.wait_for_timeout(SETTLE)
    page.screenshot(path=str(path))
    return graph_nodes(page)


def show_lineage(page, server: UiServer, asset_key: list[str], path: Path) -> list[str]:
    """One asset with its neighbours (its raw table, the tables its foreign keys read, what it feeds)."""
    page.goto(f"{server.url}/assets/{'/'.join(asset_key)}?view=lineage", wait_until="load")
    page.locator("foreignObject").nth(2).wait_for(state="attached")
    page.wait_for_timeout(SETTLE)
    page.screenshot(path=str(path))
    return graph_nodes(page)


CHECK_STATUSES = ("Succeeded", "Failed", "Not Evaluated", "Skipped", "In progress", "Execution failed")


def show_checks(page, server: UiServer, asset_key: list[str], check: str, path: Path) -> str:
    """An asset's check dashboard with one check opened; returns the page's text."""
    page.goto(f"{server.url}/assets/{'/'.join(asset_key)}?view=checks&checkDetail={check}", wait_until="load")
    page.get_by_text("Evaluation result").first.wait_for()
    page.get_by_text("explanation", exact=True).first.wait_for()
    page.wait_for_timeout(SETTLE)
    page.screenshot(path=str(path))
    return page.inner_text("body")


def check_statuses(text: str, names) -> dict[str, str]:
    """Check name -> the status the dashboard's list shows under it (the line after its name)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    out = {}
    for name in names:
        for i, line in enumerate(lines[:-1]):
            if line == name and lines[i + 1] in CHECK_STATUSES:
                out[name] = lines[i + 1]
                break
    return out


def show_check_explanation(page, path: Path) -> str:
    """The opened check's markdown explanation (rule, failing count, sample) in its dialog; returns its text."""
    page.get_by_text("[Show Markdown]").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("explanation").first.wait_for()
    page.wait_for_timeout(SETTLE)
    page.screenshot(path=str(path))
    text = dialog.inner_text()
    page.keyboard.press("Escape")
    return text


def show_report(browser, report: Path, path: Path) -> tuple[str, list[str]]:
    """A reception report opened from the lake as a file, in a page of its own (its header, table and charts
    fill the screenshot); returns its text and every URL the page requested."""
    requested: list[str] = []
    page = browser.new_page(viewport=REPORT_VIEWPORT)
    try:
        page.on("request", lambda request: requested.append(request.url))
        page.goto(report.resolve().as_uri(), wait_until="load")
        page.wait_for_timeout(SETTLE)
        page.screenshot(path=str(path))
        text = page.inner_text("body")
    finally:
        page.close()
    return text, requested


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file, from its IHDR chunk."""
    data = path.read_bytes()[:24]
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise UiError(f"{path} is not a PNG file")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
