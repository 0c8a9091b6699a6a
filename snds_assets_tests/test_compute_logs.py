"""The local instance's compute logs: a step's output still reaches the terminal, Ctrl-C no longer a traceback."""
import subprocess
import sys
import textwrap

from snds_assets.cli import _COMPUTE_LOGS_CONFIG, INSTANCE_CONFIG

from .services import EARLIER_INSTANCE_CONFIGS, ingest_in_process

# A run in its own process group, as `snds ingest` in a terminal: its step prints, then Ctrl-C reaches the whole
# group (the terminal sends SIGINT to every process of the foreground group, Dagster's terminal mirrors included)
# once the mirror (tail -F, reading the step's log file every second) has copied the line to the terminal, a file,
# and once the watchers' Python has its SIGINT handler (before, a SIGINT ends a watcher silently).
RUN = textwrap.dedent("""
    import os, signal, sys, time
    from dagster import DagsterInstance, Definitions, asset, define_asset_job

    def watchers_catch_sigint():
        catching = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline") as cmdline, open(f"/proc/{pid}/status") as status:
                    command, fields = cmdline.read(), dict(line.split(":", 1) for line in status)
            except OSError:
                continue
            if "watch_orphans" in command and int(fields["PPid"]) == os.getpid():
                catching.append(int(fields["SigCgt"], 16) >> (signal.SIGINT - 1) & 1)
        return bool(catching) and all(catching)

    @asset
    def step():
        print("printed by the step", flush=True)
        deadline = time.monotonic() + 60  # a hang guard only
        with open(os.environ["TERMINAL"]) as terminal:
            while not ("printed by the step" in terminal.read() and watchers_catch_sigint()):
                if time.monotonic() > deadline:
                    break
                terminal.seek(0)
                time.sleep(0.1)
        os.killpg(0, signal.SIGINT)
        time.sleep(3)

    job = Definitions(assets=[step], jobs=[define_asset_job("j")]).resolve_job_def("j")
    result = job.execute_in_process(instance=DagsterInstance.get(), raise_on_error=False)
    print("run succeeded" if result.success else "run interrupted", file=sys.stderr, flush=True)
""")


def _instance_home(tmp_path, config: str):
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(config)
    return home


def _run_interrupted(home) -> tuple[str, str]:
    """What the run interrupted by Ctrl-C printed: its terminal (standard output), its standard error. Standard
    error is read to its end, which comes when every process holding it has exited, the mirrors included: a
    traceback of theirs is in it, if printed within the second Dagster is told to give them after the step."""
    terminal = home.parent / "terminal.txt"
    env = {"PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(home), "HOME": str(home), "TERMINAL": str(terminal),
           # by default Dagster ends the mirrors as the step ends: a watcher slow to print would be ended first
           "DAGSTER_COMPUTE_LOG_TAIL_WAIT_AFTER_FINISH": "1"}
    with terminal.open("w") as out:
        done = subprocess.run([sys.executable, "-c", RUN], env=env, stdout=out, stderr=subprocess.PIPE, text=True,
                              timeout=120, start_new_session=True)
    return terminal.read_text(), done.stderr


def test_ctrl_c_leaves_the_terminal_mirrors_silent(tmp_path):
    """Ctrl-C during `snds ingest` printed a `KeyboardInterrupt` traceback of Dagster's watcher (one per mirrored
    stream) under the command's own one-line message."""
    home = _instance_home(tmp_path, INSTANCE_CONFIG)
    terminal, stderr = _run_interrupted(home)
    assert "printed by the step" in terminal, stderr  # the mirror still copies the step's output to the terminal
    assert "run interrupted" in stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    logs = [p.read_text() for p in (home / "storage").rglob("*.out")]
    assert any("printed by the step" in text for text in logs), "the step's output is kept where the UI reads it"


def test_dagster_default_mirrors_print_a_traceback(tmp_path):
    """What the test above guards against, with Dagster's own local compute logs."""
    dagsters = INSTANCE_CONFIG.replace(_COMPUTE_LOGS_CONFIG, "")  # no compute_logs: Dagster's local ones
    assert "compute_logs" not in dagsters
    terminal, stderr = _run_interrupted(_instance_home(tmp_path, dagsters))
    assert "printed by the step" in terminal, stderr
    assert "run interrupted" in stderr
    assert "KeyboardInterrupt" in stderr


def _instance_file_after_a_command(home, config: str) -> str:
    """The instance file of SNDS_HOME ``home`` once a command ran over it, as ``config`` left it."""
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text(config)
    ingest_in_process(home, "2026-01-01")
    return (home / "dagster" / "dagster.yaml").read_text()


def test_an_instance_configured_by_an_earlier_version_gets_the_compute_logs(tmp_path):
    for commit, earlier in EARLIER_INSTANCE_CONFIGS.items():
        assert _instance_file_after_a_command(tmp_path / commit, earlier) == INSTANCE_CONFIG, commit


def test_an_instance_file_of_its_operator_is_left_as_it_is(tmp_path):
    config = INSTANCE_CONFIG.replace("InterruptSafeComputeLogManager", "Other")
    assert _instance_file_after_a_command(tmp_path, config) == config
