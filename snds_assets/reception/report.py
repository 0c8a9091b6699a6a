"""The reception report of a delivery (SPEC §6) and its readable twin.

The raw and curated steps of each family run separately, so each saves a *fragment* per delivered table under
``<lake>/reports/deliveries/_parts/<ID>/<TABLE>.<stage>.json``; the final step assembles them:

- raw fragment: ``{"family", "year", "mode", "rows_manifest", "checks": [...]}`` (``archive.raw_fragment``);
- curated fragment: ``{"rows_read", "rows_curated", "rows_rejected", "checks": [...]}``.

A delivered table whose raw fragment is missing gets a failed ``file_present`` check, and one whose curated
fragment is missing (curation failed or never ran, or the table is unknown to the catalog) a failed
``rows_reconciled`` check: a table is never accepted without both verdicts. Saving a raw fragment discards the
table's curated fragment, because a new archive makes the previous curation verdict stale.

Once the report is written, ``_parts/<ID>/_received.json`` records the fingerprint of the manifest received; the
delivery step removes it when a reception starts over. The sensor reads it to tell a delivery already received
(by `snds ingest`, say) from a new or changed one.

An archive that replaces or removes a file of an already reported delivery, and a curation that publishes one of
its families, first withdraw that report to ``_parts/<ID>/_previous.json`` (and ``.html``): the current state
counts accepted reports only, so until the next report is written the delivery counts for nothing, rather than its
files and families changed so far standing under a verdict on other data (a reception failed or killed half-way,
or one family materialised again from the UI, would otherwise leave them so).

The JSON report (``<lake>/reports/deliveries/<ID>.json``) is exactly SPEC §6; the HTML twin beside it is the
self-contained page an operator sends back to CNAM (no script, no external asset).
"""
from __future__ import annotations

import html
import json
import posixpath
from dataclasses import asdict
from datetime import datetime, timezone

from ..charts import bar_chart
from ..charts import number as _n
from .. import domain
from ..catalog import Catalog
from ..checks import DEFAULT_SEVERITY, ERROR, RAW_RULES, RULE_DESCRIPTIONS, WARN
from ..config import Settings
from ..lake import Lake, join
from .manifest import DeliveredTable, Format, Manifest, delivery_order, manifest_fingerprint
from .storage import lake_file_versions, read_lake_bytes, remove_lake_file, write_lake_bytes

STAGES = ("raw", "curated")
ACCEPTED, REJECTED = "accepted", "rejected"
CHECK_KEYS = ("name", "rule", "columns", "severity", "passed", "failures", "sample", "evaluated", "details")
TABLE_KEYS = ("family", "status", "mode", "rows_manifest", "rows_read", "rows_curated", "rows_rejected", "checks")


# --- Fragments ----------------------------------------------------------------------------------------------
def parts_folder(settings: Settings, delivery_id: str) -> str:
    """``<lake>/reports/deliveries/_parts/<ID>``: a reception's fragments, mark and withdrawn report."""
    return join(Lake(settings.lake).root, "reports", "deliveries", "_parts", delivery_id)


def fragment_path(settings: Settings, delivery_id: str, delivered_name: str, stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"fragment stage must be one of {STAGES}, not {stage!r}")
    return join(parts_folder(settings, delivery_id), f"{delivered_name}.{stage}.json")


def save_fragment(settings: Settings, delivery_id: str, delivered_name: str, stage: str, payload: dict) -> None:
    """Store (overwrite) one step's verdict on one delivered table; a raw fragment invalidates the curated one."""
    path = fragment_path(settings, delivery_id, delivered_name, stage)
    write_lake_bytes(path, _dumps(payload).encode("utf-8"))
    if stage == "raw":
        remove_lake_file(fragment_path(settings, delivery_id, delivered_name, "curated"))


def load_fragment(settings: Settings, delivery_id: str, delivered_name: str, stage: str) -> dict | None:
    data = read_lake_bytes(fragment_path(settings, delivery_id, delivered_name, stage))
    return None if data is None else json.loads(data)


# --- The reception mark -------------------------------------------------------------------------------------
def received_mark_path(settings: Settings, delivery_id: str) -> str:
    return join(parts_folder(settings, delivery_id), "_received.json")


def mark_received(settings: Settings, manifest: Manifest, run_id: str | None = None) -> None:
    """Record which manifest a finished reception received, whoever ran it (the sensor, `snds ingest`, the UI), and
    by which run: the sensor compares it with the landing zone's and does not receive the same delivery again,
    unless that run failed after writing it (killed before Dagster recorded the report: no refresh would follow)."""
    mark = {"delivery_id": manifest.delivery_id, "manifest": manifest_fingerprint(manifest),
            "received_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **({"run_id": run_id} if run_id else {})}
    write_lake_bytes(received_mark_path(settings, manifest.delivery_id), _dumps(mark).encode("utf-8"))


def forget_received(settings: Settings, delivery_id: str) -> None:
    """A reception starts over (its manifest is archived again): until its report is written, the lake no longer
    holds what the previous mark says, so a run that fails half-way leaves the delivery to be received again."""
    remove_lake_file(received_mark_path(settings, delivery_id))


def received_mark(settings: Settings, delivery_id: str) -> tuple[str | None, str | None]:
    """The fingerprint of the manifest the last finished reception of a delivery received, and the run that
    received it: (None, None) without a mark, a run of None for a mark written before runs were named."""
    data = read_lake_bytes(received_mark_path(settings, delivery_id))
    try:
        mark = json.loads(data) if data is not None else {}
    except ValueError:
        mark = {}
    if not isinstance(mark, dict):
        return None, None
    manifest, run_id = mark.get("manifest"), mark.get("run_id")
    return (manifest if isinstance(manifest, str) else None), (run_id if isinstance(run_id, str) else None)


# --- Files the manifest does not list ----------------------------------------------------------------------
def unlisted_path(settings: Settings, delivery_id: str) -> str:
    return join(parts_folder(settings, delivery_id), "_unlisted.json")


def save_unlisted(settings: Settings, delivery_id: str, files: list[str]) -> None:
    """Record the delivery folder's files that its manifest does not list (none: the record is removed), for the
    report, which a later run may build once the landing folder is cleared."""
    path = unlisted_path(settings, delivery_id)
    if files:
        write_lake_bytes(path, _dumps(files).encode("utf-8"))
    else:
        remove_lake_file(path)


def load_unlisted(settings: Settings, delivery_id: str) -> list[str]:
    data = read_lake_bytes(unlisted_path(settings, delivery_id))
    return [] if data is None else json.loads(data)


# --- An earlier report, withdrawn ---------------------------------------------------------------------------
def previous_report_path(settings: Settings, delivery_id: str, suffix: str = "json") -> str:
    return join(parts_folder(settings, delivery_id), f"_previous.{suffix}")


def withdraw_report(settings: Settings, delivery_id: str) -> bool:
    """Move the delivery's report aside before its curated data change (see the module docstring); kept, not
    deleted, for the operator who wants the earlier verdict. True when there was one.

    Every family of a run calls it before publishing: once the JSON report is gone there is nothing to do, so the
    readable twin moves first and each later call reads one absent file (a network call on Azure)."""
    lake = Lake(settings.lake)
    report = read_lake_bytes(lake.delivery_report(delivery_id))
    if report is None:
        return False
    twin = read_lake_bytes(lake.delivery_report(delivery_id, "html"))
    for suffix, data in (("html", twin), ("json", report)):
        if data is not None:
            write_lake_bytes(previous_report_path(settings, delivery_id, suffix), data)
            remove_lake_file(lake.delivery_report(delivery_id, suffix))
    return True


def reception_started(settings: Settings, delivery_id: str) -> bool:
    """Whether a reception archived the delivery's manifest or saved a verdict of one of its tables."""
    from .manifest import MANIFEST
    from .storage import lake_exists, walk_lake_files

    return (lake_exists(Lake(settings.lake).raw(delivery_id, MANIFEST))
            or bool(walk_lake_files(parts_folder(settings, delivery_id))))


def unfinished_receptions(settings: Settings) -> list[str]:
    """Deliveries whose reception started (``reception_started``) and that have no report: a reception under way,
    or interrupted (its families, if any, out of the current state until it is run again)."""
    from .manifest import valid_delivery_id
    from .storage import fresh_filesystem

    lake = Lake(settings.lake)
    named: set[str] = set()
    for root in (posixpath.dirname(lake.raw("x")), posixpath.dirname(parts_folder(settings, "x"))):
        fs, path = fresh_filesystem(root)  # not an object store's listing cache: receptions write there meanwhile
        try:
            named |= {posixpath.basename(e.rstrip("/")) for e in fs.ls(path, detail=False)}
        except (FileNotFoundError, NotADirectoryError):
            continue
    reported = {posixpath.basename(u)[:-len(".json")]
                for u in lake_file_versions(posixpath.dirname(lake.delivery_report("x")), ".json")}
    return sorted((d for d in named if valid_delivery_id(d) and d not in reported and reception_started(settings, d)),
                  key=delivery_order)


# --- Statuses -----------------------------------------------------------------------------------------------
def table_status(checks: list[dict]) -> str:
    """``rejected`` when an evaluated ERROR check failed, else ``accepted``."""
    for check in checks:
        if check.get("severity") == ERROR and not check.get("passed", True) and check.get("evaluated", True):
            return REJECTED
    return ACCEPTED


def delivery_status(tables: dict[str, dict]) -> str:
    return ACCEPTED if tables and all(t["status"] == ACCEPTED for t in tables.values()) else REJECTED


# --- Assembly -----------------------------------------------------------------------------------------------
def build_report(settings: Settings, catalog: Catalog, manifest: Manifest) -> dict:
    """Assemble the fragments of every delivered table, decide the statuses, write the JSON and HTML reports."""
    tables = {d.table: _table_entry(settings, catalog, manifest, d) for d in manifest.tables}
    report = {"delivery_id": manifest.delivery_id, "status": delivery_status(tables), "tables": tables}
    unlisted = load_unlisted(settings, manifest.delivery_id)
    if unlisted:  # not a table: beside SPEC §6's keys, only when there are some
        report["unlisted_files"] = unlisted
    lake = Lake(settings.lake)
    write_lake_bytes(lake.delivery_report(manifest.delivery_id), _dumps(report).encode("utf-8"))
    write_lake_bytes(lake.delivery_report(manifest.delivery_id, "html"), render_html(report, manifest).encode("utf-8"))
    return report


def delivered_record(delivered: DeliveredTable, fmt: Format | None = None) -> dict:
    """A delivered table as its manifest describes it (files, mode, and the manifest's format): a raw fragment records
    the one it verified, so that its verdicts are not taken for those of another version of the manifest (CNAM
    rewrote it since)."""
    return {"files": [asdict(f) for f in delivered.files], "mode": delivered.mode,
            "format": None if fmt is None else asdict(fmt)}


def made_for(fragment: dict, delivered: DeliveredTable, fmt: Format | None = None) -> bool:
    """Whether a raw fragment verified the delivered table ``delivered`` and ``fmt`` describe (one written before
    fragments recorded it is taken as it is; a format it did not record is not compared)."""
    record = fragment.get("delivered")
    if record is None:
        return True
    return record == delivered_record(delivered, fmt if record.get("format") is not None else None)


STALE = ("its raw verdicts were made for another version of the manifest (CNAM rewrote it since, or its files were "
         "archived without it): receive the delivery again")


def _table_entry(settings: Settings, catalog: Catalog, manifest: Manifest, delivered: DeliveredTable) -> dict:
    try:
        table, _ = catalog.resolve(delivered.table)
    except KeyError:
        table = None
    raw = load_fragment(settings, manifest.delivery_id, delivered.table, "raw")
    curated = load_fragment(settings, manifest.delivery_id, delivered.table, "curated")
    stale = raw is not None and not made_for(raw, delivered, manifest.format)
    if stale:  # the files verified and curated are not those this manifest describes
        raw = curated = None
    checks: list[dict] = []
    if raw is not None:
        checks += raw.get("checks", [])
    else:
        unverified = "the raw step recorded no result for this table (it did not run or it failed): its files were "\
                     "not verified"
        checks.append(_synthetic("file_present", len(delivered.files),
                                 f"{STALE} (snds ingest {manifest.delivery_id})" if stale else unverified))
    if table is None and not any(c.get("name") == "columns" for c in checks):
        checks.append(_synthetic("columns", len(delivered.files),
                                 f"{delivered.table} is not a table of the catalog (SNDS_SCHEMAS)"))
    if curated is not None:
        checks += curated.get("checks", [])
    else:
        why = ("the table is not in the catalog, so it cannot be curated" if table is None
               else "no curated result for this table: " + ("its verdicts were of another version of the manifest"
                                                            if stale else "curation did not run or it failed"))
        rows = sum(f.rows for f in delivered.files)
        if rows == 0 and table is None:  # nothing to account for; its columns check rejects it already
            checks.append({**_synthetic("rows_reconciled", 0, f"{why}; it announced no rows"),
                           "passed": True, "evaluated": False})
        else:
            checks.append(_synthetic("rows_reconciled", rows,
                                     f"{why}; its {rows} announced rows are not accounted for"))
    checks = [_check(c) for c in checks]
    mode = (raw or {}).get("mode") or delivered.mode or (domain.default_mode(table) if table is not None else None)
    entry = {
        "family": (raw or {}).get("family") or (table.name if table is not None else None),
        "status": table_status(checks),
        "mode": mode,
        "rows_manifest": sum(f.rows for f in delivered.files),
        "rows_read": (curated or {}).get("rows_read"),
        "rows_curated": (curated or {}).get("rows_curated"),
        "rows_rejected": (curated or {}).get("rows_rejected"),
        "checks": checks,
    }
    return {k: entry[k] for k in TABLE_KEYS}


def _synthetic(rule: str, failures: int, details: str) -> dict:
    """A failed verdict standing for a step that left none (files for file rules, rows otherwise)."""
    return {"name": rule, "rule": rule, "columns": [], "severity": ERROR, "passed": False, "failures": failures,
            "sample": [], "evaluated": True, "details": details}


def _check(check: dict) -> dict:
    """A check entry with SPEC §6's keys first, in order, then evaluated and details."""
    defaults = {"rule": check.get("name"), "columns": [], "severity": DEFAULT_SEVERITY.get(check.get("name"), WARN),
                "passed": True, "failures": 0, "sample": [], "evaluated": True, "details": ""}
    out = {k: check.get(k, defaults.get(k)) for k in CHECK_KEYS}
    out.update({k: v for k, v in check.items() if k not in out})
    return out


def _dumps(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"


# --- Reading reports back -----------------------------------------------------------------------------------
def load_report(settings: Settings, delivery_id: str) -> dict | None:
    """The reception report of a delivery, or None when it has not been built."""
    data = read_lake_bytes(Lake(settings.lake).delivery_report(delivery_id))
    return None if data is None else json.loads(data)


class ReportError(ValueError):
    """A reception report of the lake that cannot be read back (truncated, edited by hand)."""


def _parse_report(url: str, data: bytes) -> dict:
    """A listed report, or a ``ReportError`` naming its file: a bare ``JSONDecodeError`` failed the reception of
    another delivery (every state reads every report) without saying which file to restore or rebuild."""
    delivery_id = posixpath.basename(url).removesuffix(".json")
    try:
        report = json.loads(data)
        if not isinstance(report, dict) or not isinstance(report.get("tables") or {}, dict):
            raise ValueError("not a JSON object with a table per delivered table")
    except ValueError as exc:
        raise ReportError(f"{url} is not a readable reception report ({type(exc).__name__}: {exc}): restore it, or "
                          f"run snds ingest {delivery_id} to write it again") from exc
    return report


def list_reports(settings: Settings, cache: dict[str, tuple[str, dict]] | None = None) -> list[dict]:
    """Every reception report of the lake, ordered by delivery id (which orders deliveries by date).

    ``cache`` (URL -> (version stamp, report)), kept by the caller across calls: the folder is listed each time,
    but only a new or rewritten report is read again (a lake on Azure holds one report per delivery)."""
    folder = posixpath.dirname(Lake(settings.lake).delivery_report("x"))
    reports = []
    versions = lake_file_versions(folder, ".json")
    for url, stamp in versions.items():
        known = cache.get(url) if cache is not None else None
        if known is not None and known[0] == stamp:
            reports.append(known[1])
            continue
        data = read_lake_bytes(url)
        if data is not None:
            report = _parse_report(url, data)
            reports.append(report)
            if cache is not None:
                cache[url] = (stamp, report)
    if cache is not None:
        for url in [u for u in cache if u not in versions]:
            del cache[url]
    return sorted(reports, key=lambda r: delivery_order(r.get("delivery_id") or ""))


# --- The readable twin --------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}
.accepted{color:#176b2c;font-weight:bold}.rejected{color:#b3261e;font-weight:bold}
.badge{display:inline-block;padding:.15em .6em;border-radius:.3em;color:#fff}
.badge.accepted{background:#2e7d32}.badge.rejected{background:#c62828}
.ERROR{color:#b3261e}.WARN{color:#9a6700}pre{background:#f7f7f7;padding:.5em;white-space:pre-wrap;word-break:break-all;font-size:.85em}
.muted{color:#666}
"""


def render_html(report: dict, manifest: Manifest | None = None) -> str:
    """The report as one self-contained HTML page: summary, per-table counts, failed checks, two bar charts."""
    e = html.escape
    tables = report["tables"]
    rejected = [n for n, t in tables.items() if t["status"] != ACCEPTED]
    totals = {k: _sum(t.get(k) for t in tables.values())
              for k in ("rows_manifest", "rows_read", "rows_curated", "rows_rejected")}
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Reception report {e(report['delivery_id'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Reception report of delivery {e(report['delivery_id'])} "
        f"<span class=\"badge {e(report['status'])}\">{e(report['status'])}</span></h1>",
    ]
    meta = [f"{len(tables)} tables delivered, {len(tables) - len(rejected)} accepted, {len(rejected)} rejected"]
    if manifest is not None:
        meta.append(f"producer {e(manifest.producer)}, manifest created {e(manifest.created_at or 'n/a')}")
    meta.append(f"report generated {now}")
    out.append("<p>" + "<br>".join(meta) + "</p>")
    out.append("<p>Rows announced " + _n(totals["rows_manifest"]) + ", read " + _n(totals["rows_read"])
               + ", curated " + _n(totals["rows_curated"]) + ", rejected " + _n(totals["rows_rejected"]) + ".</p>")
    if rejected:
        out.append("<p>Rejected tables (an ERROR check failed; they do not reach any project): "
                   + ", ".join(f"<b>{e(n)}</b>" for n in rejected) + ".</p>")
    unlisted = report.get("unlisted_files") or []
    if unlisted:
        out.append(f"<p class=\"WARN\">{len(unlisted)} file{'' if len(unlisted) == 1 else 's'} of the delivery folder "
                   "that the manifest does not list, so not received: " + e(short_list(unlisted, 50, 120)) + ".</p>")

    out.append("<h2>Tables</h2><table><tr><th>table</th><th>family</th><th>mode</th><th>status</th>"
               "<th>rows announced</th><th>read</th><th>curated</th><th>rejected</th><th>failed checks</th></tr>")
    for name, t in tables.items():
        failed = ", ".join(f"{c['name']} ({c['severity']})" for c in t["checks"] if not c["passed"])
        out.append(
            f"<tr><td>{e(name)}</td><td>{e(str(t['family'] or '—'))}</td><td>{e(str(t['mode'] or '—'))}</td>"
            f"<td class=\"{e(t['status'])}\">{e(t['status'])}</td>"
            + "".join(f"<td class=\"n\">{_n(t.get(k))}</td>"
                      for k in ("rows_manifest", "rows_read", "rows_curated", "rows_rejected"))
            + f"<td>{e(failed) or '—'}</td></tr>"
        )
    out.append("</table>")

    out.append("<h2>Charts</h2>")
    out.append(_rows_chart(tables))
    out.append(_rules_chart(tables))

    out.append("<h2>Failed checks</h2>")
    any_failed = False
    for name, t in tables.items():
        failed = [c for c in t["checks"] if not c["passed"]]
        if not failed:
            continue
        any_failed = True
        out.append(f"<h3>{e(name)} <span class=\"{e(t['status'])}\">{e(t['status'])}</span></h3>")
        for c in failed:
            unit = "file" if c["rule"] in RAW_RULES else "row"
            plural = "" if c["failures"] == 1 else "s"
            out.append(
                f"<p><b class=\"{e(c['severity'])}\">{e(c['severity'])}</b> <b>{e(c['name'])}</b> "
                f"(rule {e(c['rule'])}): {_n(c['failures'])} failing {unit}{plural}"
                + (f"; columns {e(short_list(c['columns']))}" if c["columns"] else "") + ".<br>"
                f"<span class=\"muted\">{e(RULE_DESCRIPTIONS.get(c['name'], RULE_DESCRIPTIONS.get(c['rule'], '')))}</span>"
                + (f"<br>{e(str(c['details']))}" if c.get("details") else "") + "</p>"
            )
            if c["sample"]:
                out.append("<pre>" + e("\n".join(json.dumps(s, ensure_ascii=False, default=str)
                                                   for s in c["sample"][:10])) + "</pre>")
    if not any_failed:
        out.append("<p>None: every check passed.</p>")

    skipped = [(n, c) for n, t in tables.items() for c in t["checks"] if not c.get("evaluated", True)]
    if skipped:
        out.append("<h2>Checks not evaluated</h2><ul>")
        out += [f"<li>{e(n)} — {e(c['name'])}: {e(str(c.get('details') or 'nothing to check'))}</li>" for n, c in skipped]
        out.append("</ul>")

    out.append("<h2>All checks</h2><table><tr><th>table</th><th>check</th><th>rule</th><th>severity</th>"
               "<th>verdict</th><th>failures</th></tr>")
    for name, t in tables.items():
        for c in t["checks"]:
            verdict = "not evaluated" if not c.get("evaluated", True) else ("passed" if c["passed"] else "failed")
            out.append(f"<tr><td>{e(name)}</td><td>{e(c['name'])}</td><td>{e(c['rule'])}</td>"
                       f"<td class=\"{e(c['severity'])}\">{e(c['severity'])}</td><td>{verdict}</td>"
                       f"<td class=\"n\">{_n(c['failures'])}</td></tr>")
    out.append("</table></body></html>")
    return "\n".join(out) + "\n"


def short_list(values: list, limit: int = 12, width: int = 60) -> str:
    """The first ``limit`` values, each cut to ``width`` characters, and how many more."""
    names = [str(v) if len(str(v)) <= width else str(v)[:width] + "…" for v in values[:limit]]
    more = f" … ({len(values) - limit} more)" if len(values) > limit else ""
    return ", ".join(names) + more


def _sum(values) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None



def _rows_chart(tables: dict[str, dict]) -> str:
    items = []
    for name, t in tables.items():
        if t.get("rows_curated") is not None:
            items.append((name, [(t["rows_curated"] or 0, "#2e7d32"), (t.get("rows_rejected") or 0, "#c62828")]))
        else:
            items.append((name, [(t.get("rows_manifest") or 0, "#9e9e9e")]))
    return bar_chart("Rows per table", items,
                 [("curated", "#2e7d32"), ("rejected", "#c62828"), ("announced, not curated", "#9e9e9e")])


def _rules_chart(tables: dict[str, dict]) -> str:
    by_rule: dict[str, list[int]] = {}
    for t in tables.values():
        for c in t["checks"]:
            if not c["passed"]:
                counts = by_rule.setdefault(c["rule"], [0, 0])
                counts[0 if c["severity"] == ERROR else 1] += int(c["failures"] or 0)
    items = [(f"{rule} ({'files' if rule in RAW_RULES else 'rows'})", [(err, "#c62828"), (warn, "#e0a100")])
             for rule, (err, warn) in sorted(by_rule.items())]
    return bar_chart("Failing rows (files for file rules) per rule", items, [("ERROR", "#c62828"), ("WARN", "#e0a100")])
