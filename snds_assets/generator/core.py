"""``generate``: a complete synthetic CNAM delivery, data files first and ``manifest.json`` last."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .. import domain
from ..catalog import Catalog
from ..config import Settings
from ..reception.manifest import MANIFEST, DeliveredFile, DeliveredTable, Format, Manifest
from .defects import DefectInjector
from .engine import Engine, Progress
from .options import GenerateError, GenerateOptions, GenerateResult


def _selection(catalog: Catalog, tables: list[str] | None, years: list[int]) -> dict[str, set]:
    """Family -> delivered years (None for a non-yearly table) from families or delivered names.

    A PMSI table is delivered for the years its schema's history says it existed (some column in use), as CNAM
    would: all tables leave out the others, naming a table for such a year only is an error."""
    out: dict[str, set] = {}
    # CNAM's archives (IR_BEN_R_ARC) are generated only when asked for: a delivery holds the current tables.
    names = [n for n in catalog.tables if n not in domain.ARCHIVES] if tables is None else list(tables)
    unknown = []
    for name in names:
        if name not in catalog.tables:
            try:
                table, year = catalog.resolve(name)
            except KeyError:
                unknown.append(name)
                continue
            if year is None:  # a family spelt otherwise (er_prs_f)
                name = table.name
        if name in catalog.tables:
            t = catalog[name]
            existing = [y for y in years if t.columns_in(y)] if t.is_yearly else [None]
            if existing:
                out.setdefault(name, set()).update(existing)
            elif tables is not None:
                raise GenerateError(f"table {name}: none of its columns is in use in {years[0]}-{years[-1]} by its "
                                    "schema's history (dateCreated/dateDeleted)")
            continue
        if year not in years:
            raise GenerateError(f"table {name}: year {year} is outside the care period {years[0]}-{years[-1]}")
        if not table.columns_in(year):
            raise GenerateError(f"table {name}: none of its columns is in use in {year} by its schema's history "
                                "(dateCreated/dateDeleted)")
        out.setdefault(table.name, set()).add(year)
    if unknown:
        raise GenerateError(f"unknown tables (neither a family of the catalog nor a delivered name): "
                            f"{', '.join(sorted(unknown))}")
    if not out:
        raise GenerateError("no table to generate")
    return out


def generate(opts: GenerateOptions, progress: Progress | None = None) -> GenerateResult:
    """Write ``<out>/<delivery_id>/`` (and, with defects, ``<out>/<delivery_id>.defects.json`` beside it).

    The same options always give the same bytes: every random draw comes from the seed, chunks of patients
    have a fixed size, and ``created_at`` is derived from the delivery id.
    """
    opts.validate()
    catalog = opts.catalog or Catalog.load(Settings.from_env().schemas)
    start, end = opts.care_window()
    years = list(range(start.year, end.year + 1))
    selection = _selection(catalog, opts.tables, years)
    out = Path(opts.out)
    delivery_dir = out / opts.delivery_id
    truth_path = out / f"{opts.delivery_id}.defects.json"
    if delivery_dir.exists() and any(delivery_dir.iterdir()):
        if not opts.overwrite:
            raise GenerateError(f"{delivery_dir} already exists: choose another delivery id, or remove that folder")
        shutil.rmtree(delivery_dir)
    if truth_path.exists():
        truth_path.unlink()
    made = next((p for p in reversed((delivery_dir, *delivery_dir.parents)) if not p.exists()), None)
    delivery_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = _write(opts, catalog, selection, delivery_dir, truth_path, progress)
    except BaseException:
        _remove_written(made, delivery_dir, truth_path)
        raise
    if progress:
        progress("manifest", 1, 1)
    return result


def _remove_written(made: Path | None, delivery_dir: Path, truth_path: Path) -> None:
    """After a failure (Ctrl-C, a full disk): a delivery folder without manifest would stay in the landing zone,
    which the sensor reports on every tick. The outermost folder made here goes; a delivery folder that existed
    (empty, or its content replaced) is emptied, and no folder that existed is removed."""
    truth_path.unlink(missing_ok=True)
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
        return
    for child in delivery_dir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _write(opts: GenerateOptions, catalog: Catalog, selection: dict[str, set], delivery_dir: Path, truth_path: Path,
           progress: Progress | None) -> GenerateResult:
    """The data files, the ground truth of the defects, and the manifest last."""
    engine = Engine(opts, catalog, selection, delivery_dir)
    injector = DefectInjector(engine) if opts.defects else None
    engine.injector = injector
    engine.run(progress)

    delivered: list[DeliveredTable] = []
    rows: dict[str, int] = {}
    for (family, year), writer in engine.writers.items():
        files = writer.close()
        name = catalog.delivered_name(family, year)
        rows[name] = sum(f.rows for f in files)
        delivered.append(DeliveredTable(
            name, tuple(DeliveredFile(f.path, f.rows, f.sha256, f.bytes) for f in files),
            domain.default_mode(catalog[family])))
    delivered.sort(key=lambda t: t.table)
    if injector is not None:
        delivered = injector.tamper(delivered)
    manifest = Manifest(
        delivery_id=opts.delivery_id,
        tables=tuple(delivered),
        producer="CNAM",
        created_at=f"{opts.delivery_id[:10]}T06:00:00Z",
        format=Format(delimiter=opts.delimiter, encoding=opts.encoding_name, date_format=opts.date_format),
    )
    ground_truth = None
    if injector is not None:
        truth = {"delivery_id": opts.delivery_id, "seed": int(opts.seed), "defects": injector.ground_truth()}
        truth_path.write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        ground_truth = truth_path
    temporary = delivery_dir / (MANIFEST + ".part")
    temporary.write_text(manifest.to_json(), encoding="utf-8")
    os.replace(temporary, delivery_dir / MANIFEST)  # last, and atomically: the delivery is complete
    return GenerateResult(delivery_dir=delivery_dir, manifest=manifest, ground_truth=ground_truth, rows=rows)
