"""Throughput of the raw archive copy (archive.archive_file) against plain copies of the same file, side by side.

For a ~200 MB CSV (ASCII, and a worst case with an accented value on every line) and its gzip, measures:
  - archive_file: stream to the lake through staging + rename, SHA-256, size, row count, header, encoding check;
  - shutil.copyfile: the OS copy (kernel copy, nothing computed) — the floor;
  - read + sha256: one read of the file with hashing only — what any verification must pay;
  - read + inflate (.gz only): decompressing the stream and nothing else — what counting rows must pay.
Ratios are taken within one run. Usage: .venv/bin/python bench/reception_copy_bench.py [--mb 200] [--runs 3]
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from snds_assets.reception.archive import CHUNK_SIZE, archive_file  # noqa: E402
from snds_assets.reception.manifest import Format  # noqa: E402


def make_csv(path: Path, megabytes: int, accented: bool) -> int:
    rng = random.Random(7)
    label = "Hôpital Sainte-Thérèse" if accented else "HOPITAL SAINTE-THERESE"
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("ETA_NUM;RSA_NUM;EXE_SOI_DTD;NIR_ANO_17;DGN_PAL;LIBELLE;MONTANT\n")
        block, size = [], 0
        while size < megabytes * 1_000_000:
            line = (f"{rng.randrange(10**8, 10**9)};{rng.randrange(10**9)};2023-{rng.randrange(1, 13):02d}-15;"
                    f"{rng.getrandbits(68):017x};U07{rng.randrange(10)};{label};{rng.random() * 1000:.2f}\n")
            block.append(line)
            size += len(line)
            rows += 1
            if len(block) == 50_000:
                out.write("".join(block))
                block = []
        out.write("".join(block))
    return rows


def timed(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def read_sha256(path: Path) -> None:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            sha.update(chunk)


def read_inflate(path: Path) -> None:
    inflate = zlib.decompressobj(31)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            while chunk:
                inflate.decompress(chunk, 8 << 20)
                chunk = inflate.unconsumed_tail


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="snds-copy-bench-") as tmp:
        tmp = Path(tmp)
        for accented in (False, True):
            csv = tmp / f"data{'-accented' if accented else ''}.csv"
            rows = make_csv(csv, args.mb, accented)
            gz = csv.with_suffix(".csv.gz")
            with open(csv, "rb") as src, gzip.open(gz, "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst, CHUNK_SIZE)
            for path in (csv, gz):
                lake = tmp / "lake"

                def archive() -> None:
                    f = archive_file(str(path), str(lake / "raw" / path.name), str(lake / "_staging" / path.name),
                                     path.name, Format(), path.suffix == ".gz")
                    assert f.readable and f.rows == rows, f

                t_archive = timed(archive, args.runs)
                t_copy = timed(lambda: shutil.copyfile(path, tmp / "plain-copy"), args.runs)
                t_hash = timed(lambda: read_sha256(path), args.runs)
                t_inflate = timed(lambda: read_inflate(path), args.runs) if path.suffix == ".gz" else None
                size = path.stat().st_size
                csv_size = csv.stat().st_size
                results.append({
                    "file": path.name, "delivered_MB": round(size / 1e6, 1), "csv_MB": round(csv_size / 1e6, 1),
                    "rows": rows, "archive_s": round(t_archive, 3), "copyfile_s": round(t_copy, 3),
                    "read_sha256_s": round(t_hash, 3),
                    "archive_MBps_delivered": round(size / 1e6 / t_archive), "archive_MBps_csv": round(csv_size / 1e6 / t_archive),
                    "archive_vs_copyfile": round(t_archive / t_copy, 2), "archive_vs_read_sha256": round(t_archive / t_hash, 2),
                })
                if t_inflate is not None:
                    results[-1].update({"read_inflate_s": round(t_inflate, 3),
                                        "archive_vs_read_inflate": round(t_archive / t_inflate, 2)})
                print(json.dumps(results[-1]), flush=True)
                (tmp / "plain-copy").unlink()
                shutil.rmtree(lake, ignore_errors=True)


if __name__ == "__main__":
    main()
