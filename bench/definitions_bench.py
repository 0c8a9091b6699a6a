"""How long the code location takes to load, with the packaged catalog and all 188 reference schemas.

Each measurement is a fresh interpreter (what `dagster dev` and every run pay): import + build_definitions +
resolving the asset graph. Usage: .venv/bin/python bench/definitions_bench.py [--runs 5]
"""
import argparse
import json
import statistics
import subprocess
import sys

from benchenv import reference_schemas

PROBE = """
import time, json
t0 = time.perf_counter()
from snds_assets.definitions import build_definitions
from snds_assets.config import Settings
s = Settings.from_env()
defs = build_definitions(s)
graph = defs.resolve_asset_graph()
n_assets = len(list(graph.get_all_asset_keys())); n_checks = len(list(graph.asset_check_keys))
print(json.dumps({"seconds": time.perf_counter() - t0, "assets": n_assets, "checks": n_checks}))
"""


def measure(schemas: str | None, runs: int) -> dict:
    env_extra = {"SNDS_SCHEMAS": schemas} if schemas else {}
    import os

    env = {**os.environ, **env_extra}
    if not schemas:
        env.pop("SNDS_SCHEMAS", None)
    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            sys.exit(f"loading the definitions failed ({schemas or 'packaged catalog'}): {out.stderr.strip()[-2000:]}")
        samples.append(json.loads(out.stdout.strip().splitlines()[-1]))
    secs = [s["seconds"] for s in samples]
    return {"median_s": round(statistics.median(secs), 2), "max_s": round(max(secs), 2),
            "assets": samples[0]["assets"], "checks": samples[0]["checks"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reference", help="Table Schema folder (default: the reference schemas under SNDS_SHARED)")
    args = parser.parse_args()
    args.reference = args.reference or str(reference_schemas())
    rows = {"packaged catalog": measure(None, args.runs), "188 reference schemas": measure(args.reference, args.runs)}
    for name, r in rows.items():
        print(f"{name}: median {r['median_s']} s, max {r['max_s']} s, {r['assets']} assets, {r['checks']} checks")


if __name__ == "__main__":
    main()
