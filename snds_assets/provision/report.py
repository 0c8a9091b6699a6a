"""The extraction report of a project (SPEC §5): ``<lake>/reports/projects/<ID>.json`` and a readable .html twin.

It holds counts, never a pseudonym: unresolved identifiers are listed by their line in the project's CSV (the
values themselves are listed under restricted/ only).
"""
from __future__ import annotations

import html
from collections.abc import Collection
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from .. import domain
from ..charts import bar_chart
from ..checks import ERROR
from ..config import Settings
from ..lake import Lake
from ..reception.manifest import delivery_order
from . import storage
from .request import ProjectRequest

if TYPE_CHECKING:  # the state module imports pyspark, which a report does not need
    from ..curation.state import CurrentState

FOUND_BY = ("identified", "targeted", "both")


def _checks(items) -> list[dict]:
    return [c.to_report() if hasattr(c, "to_report") else dict(c) for c in items or []]


def build_report(request: ProjectRequest, cohort_info: dict | None, extract_infos: dict | list[dict] | None) -> dict:
    """The report as a JSON-ready dict, from what run_cohort and run_extract returned or recorded."""
    if isinstance(extract_infos, dict):
        infos = dict(extract_infos)
    else:
        infos = {i["family"]: i for i in extract_infos or []}
    report: dict = {
        "project": request.id,
        "title": request.title,
        "period": {"start": request.period_start.isoformat(), "end": request.period_end.isoformat()},
        "request_fingerprint": request.fingerprint,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    deliveries: set[str] = set()
    failed: list[str] = []
    if cohort_info:
        cohort_checks = _checks(cohort_info.get("checks"))
        report["cohort"] = {
            "size": cohort_info["persons"],
            "found_by": {k: cohort_info.get(f"{k}_only" if k != "both" else k, 0) for k in FOUND_BY},
            "identified": cohort_info["identified"],
            "targeted": cohort_info["targeted"],
            "identities": cohort_info["identities"],
            "identities_archived": cohort_info.get("identities_archived", 0),
            "targeted_before_filters": cohort_info.get("targeted_before_filters"),
            "criteria": cohort_info.get("criteria") or {},
            "criteria_tables_missing": cohort_info.get("criteria_tables_missing") or [],
            "built_at": cohort_info.get("built_at"),
            "request_fingerprint": cohort_info.get("request_fingerprint"),  # the request it was built for
            "deliveries": cohort_info.get("deliveries") or {},
            "receptions": cohort_info.get("receptions") or {},
            "checks": cohort_checks,
        }
        ids = cohort_info.get("identifiers")
        report["identifiers"] = None if not ids else {
            "rows": ids["rows"], "resolved": ids["resolved"], "ambiguous": ids["ambiguous"], "unknown": ids["unknown"],
            "by_method": ids.get("by_method", {}),
            "unresolved": cohort_info.get("unresolved") or [],
            "unresolved_not_listed": cohort_info.get("unresolved_not_listed", 0),
            "values": "listed under restricted/projects/<ID>/identifiers.json only",
        }
        for fams in (cohort_info.get("deliveries") or {}).values():
            deliveries.update(fams)
        failed += [f"cohort: {c['name']}" for c in cohort_checks if not c["passed"] and c["severity"] == ERROR]
    else:
        report["cohort"] = None
        report["identifiers"] = None
    tables = {}
    for family in request.tables:
        info = infos.get(family)
        if info is None:
            tables[family] = {"status": "not extracted", "rows": 0}
            continue
        checks = _checks(info.get("checks"))
        stale = bool(cohort_info) and info.get("cohort_run") not in (None, cohort_info.get("cohort_run"))
        tables[family] = {
            "status": "stale (extracted for an earlier cohort)" if stale else info.get("status", "extracted"),
            "rows": info.get("rows", 0),
            "columns": info.get("columns", []),
            "columns_withheld": info.get("columns_withheld", []),
            "deliveries": info.get("deliveries", []),
            "deliveries_linked": info.get("deliveries_linked", {}),
            "deliveries_read": info.get("deliveries_read", {}),
            "receptions": info.get("receptions", {}),
            "links": info.get("links", []),
            "path": info.get("path"),
            "extracted_at": info.get("extracted_at"),
            "checks": checks,
        }
        deliveries.update(info.get("deliveries") or [])
        failed += [f"{family}: {c['name']}" for c in checks if not c["passed"] and c["severity"] == ERROR]
    report["tables"] = tables
    report["rows_total"] = sum(t["rows"] for t in tables.values())
    report["deliveries_used"] = sorted(deliveries, key=delivery_order)
    complete = cohort_info is not None and all(t["status"] in ("extracted", "not delivered") for t in tables.values())
    report["status"] = "failed" if failed else ("complete" if complete else "incomplete")
    report["failed_checks"] = failed
    return report


def archive_not_requested(report: dict) -> str | None:
    """What the project misses when its cohort has identities only IR_BEN_R_ARC holds and its request lists
    IR_BEN_R_ARC nowhere: their rows in the other extracts have no IR_BEN_R row naming their person."""
    archived = (report.get("cohort") or {}).get("identities_archived") or 0
    archives = domain.archives_of(domain.BENEFICIARY_TABLE)
    if not archived or any(a in (report.get("tables") or {}) for a in archives):
        return None
    return (f"{archived:,} of the cohort's identities are only in {', '.join(archives)}, which the request does not "
            f"list: their rows in the extracts have no {domain.BENEFICIARY_TABLE} row naming their person (list "
            f"{archives[0]} in the request's tables to hand them out)")


def state_read(report: dict) -> tuple[dict[str, list[list[str]]], dict[str, str]]:
    """The current state the report's cohort and extracts were made from: family -> its deliveries as each read
    it (one list when they all read the same), and the reception marks of those deliveries. Reports written
    before the extracts recorded their own state name only their parents'."""
    cohort = report.get("cohort") or {}
    read: dict[str, list[list[str]]] = {}
    marks = dict(cohort.get("receptions") or {})
    seen = [cohort.get("deliveries") or {}]
    for table in (report.get("tables") or {}).values():
        seen += [table.get("deliveries_linked") or {}, table.get("deliveries_read") or {}]
        marks.update(table.get("receptions") or {})
    for reading in seen:
        for family, ids in reading.items():
            if list(ids) not in read.setdefault(family, []):
                read[family].append(list(ids))
    return read, marks


def received_again(now: list[str], marks: dict[str, str], marks_now: dict[str, str]) -> list[str]:
    """The deliveries of ``now`` whose reception mark is no longer the one recorded (``marks``): received again
    under their id since, though the ids making up the state stay the same."""
    return [d for d in now if d in marks and marks_now.get(d) != marks[d]]


def state_change(then: list[str], now: list[str], again: list[str], unfinished: Collection[str] = ()) -> str:
    """What became of a family's state since it was read, by delivery: those that joined it, left it (rejected,
    replaced by a full one, or withdrawn by a reception of theirs that has not finished: ``unfinished``) or were
    received again. Not its whole lists, then and now: a few years of monthly deliveries would fill the one-line
    message before the one that changed."""
    joined = [d for d in now if d not in then]
    left = [d for d in then if d not in now]
    told = [f"{', '.join(joined)} joined"] if joined else []
    if left:
        pending, why = [d for d in left if d in unfinished], ""
        if pending == left:
            why = " (its reception has not finished)" if len(left) == 1 else " (their receptions have not finished)"
        elif pending:
            why = f" ({', '.join(pending)}: reception not finished)"
        told.append(f"{', '.join(left)} left{why}")
    again = [d for d in again if d not in joined]  # received again before it joined: joined says it
    told += [f"{', '.join(again)} received again"] if again else []
    return ", ".join(told) or f"then {', '.join(then)}, now {', '.join(now)}"


def changes_since(read: tuple[dict[str, list[list[str]]], dict[str, str]], state: CurrentState,
                  settings: Settings | None = None) -> list[str]:
    """How the current state (``state``: ``deliveries(family)``, ``receptions()``) left the one a project was
    extracted from (``read``, from ``state_read``): a delivery accepted, rejected or received again since, per
    family; empty when it did not. With ``settings``, a delivery that left because its reception has not finished
    says so."""
    from ..reception.report import unfinished_receptions

    readings_of, marks = read
    if not readings_of:
        return []
    marks_now = state.receptions()
    changes, unfinished = [], None
    for family, readings in sorted(readings_of.items()):
        now = state.deliveries(family)
        again = received_again(now, marks, marks_now)
        then = next((ids for ids in readings if ids != now), None)
        if then is not None or again:
            if unfinished is None:  # listed once, and only for a state that changed
                unfinished = unfinished_receptions(settings) if settings is not None else []
            changes.append(f"{family}: {state_change(now if then is None else then, now, again, unfinished)}")
    return changes


def withdraw_project_report(settings: Settings, project_id: str) -> None:
    """Remove the project's report before its cohort changes: a run failing (or killed) after the new cohort was
    published left the earlier ``complete`` report beside extracts made for the earlier cohort. The readable twin
    goes first, so that a JSON report never stands without it."""
    lake = Lake(settings.lake)
    for suffix in ("html", "json"):
        storage.remove(lake.project_report(project_id, suffix))


def write_project_report(settings: Settings, request: ProjectRequest, cohort_info: dict | None,
                         extract_infos: dict | list[dict] | None) -> dict:
    """Write the JSON report and its HTML twin; returns the report."""
    lake = Lake(settings.lake)
    report = build_report(request, cohort_info, extract_infos)
    storage.write_json(lake.project_report(request.id), report)
    storage.write_bytes(lake.project_report(request.id, "html"), render_html(report).encode("utf-8"))
    return report


# --- HTML ---------------------------------------------------------------------------------------------------
def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _check_rows(prefix: str, checks: list[dict]) -> list[list]:
    return [[prefix, c["name"], c["severity"], "not evaluated" if not c.get("evaluated", True)
             else ("passed" if c["passed"] else "FAILED"), c.get("failures", 0), c.get("details", "")] for c in checks]


def render_html(report: dict) -> str:
    esc = html.escape
    cohort, ids = report.get("cohort"), report.get("identifiers")
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Project {esc(report['project'])}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left;font-size:.9em}th{background:#f3f3f3}"
        ".failed{color:#b00}</style></head><body>",
        f"<h1>Project {esc(report['project'])}</h1><p>{esc(report['title'])}</p>",
        f"<p>Period {esc(report['period']['start'])} to {esc(report['period']['end'])} (inclusive). "
        f"Status: <strong class='{'failed' if report['status'] == 'failed' else ''}'>{esc(report['status'])}</strong>. "
        f"Generated {esc(report['generated_at'])}.</p>",
    ]
    if report.get("failed_checks"):
        out.append("<p class='failed'>Failed checks: " + esc(", ".join(report["failed_checks"])) + "</p>")
    out.append("<h2>Cohort</h2>")
    if cohort:
        out.append(f"<p>{cohort['size']:,} persons ({cohort['identities']:,} identities).</p>")
        note = archive_not_requested(report)
        if note:
            out.append(f"<p class='failed'>{esc(note)}.</p>")
        labels = {"identified": "identified only", "targeted": "targeted only", "both": "identified and targeted"}
        out.append(bar_chart("Persons by how they were found", [(labels[k], [(cohort["found_by"].get(k, 0), "#3b7dd8")])
                                                                 for k in FOUND_BY], []))
        if cohort["criteria"]:
            out.append("<h3>Criteria</h3>" + _table(
                ["item", "codes", "persons matching (before age/sex filters)"],
                [[k, v["label"], v["persons"]] for k, v in cohort["criteria"].items()]))
            out.append(f"<p>Targeted before the age and sex filters: {cohort['targeted_before_filters']}; after: "
                       f"{cohort['targeted']}.</p>")
        if cohort["criteria_tables_missing"]:
            out.append("<p>Tables not in the current state (criteria not searched there): "
                       + esc(", ".join(cohort["criteria_tables_missing"])) + "</p>")
    else:
        out.append("<p><em>The cohort has not been identified yet.</em></p>")
    out.append("<h2>Identifiers</h2>")
    if ids:
        out.append(_table(["rows", "resolved", "ambiguous (twins, or a row without BEN_IDT_ANO)", "unknown"],
                          [[ids["rows"], ids["resolved"], ids["ambiguous"], ids["unknown"]]]))
        if ids["unresolved"]:
            more = ids.get("unresolved_not_listed", 0)
            out.append("<p>Unresolved identifiers, by line of the project's file (values under restricted/ only)"
                       + (f"; {more:,} more not listed here" if more else "") + ":</p>")
            out.append(_table(["line", "resolved by", "status", "persons"],
                              [[u["line"], u["method"], u["status"], u["persons"]] for u in ids["unresolved"]]))
    else:
        out.append("<p>The project brought no identifiers.</p>")
    out.append("<h2>Tables</h2>")
    tables = report["tables"]
    out.append(bar_chart("Rows extracted per table", [(f, [(t["rows"] or 0, "#2e9e6a")]) for f, t in tables.items()], []))
    out.append(_table(["table", "status", "rows", "deliveries used", "columns"],
                      [[f, t["status"], t["rows"], ", ".join(t.get("deliveries", [])), len(t.get("columns", []))]
                       for f, t in tables.items()]))
    withheld = [f"{f}: {', '.join(t['columns_withheld'])}" for f, t in tables.items() if t.get("columns_withheld")]
    if withheld:
        out.append("<p>Delivered columns not handed out, unknown to the catalog: " + esc("; ".join(withheld)) + "</p>")
    check_rows = _check_rows("cohort", cohort["checks"]) if cohort else []
    for f, t in tables.items():
        check_rows += _check_rows(f, t.get("checks", []))
    if check_rows:
        out.append("<h2>Checks</h2>" + _table(["on", "check", "severity", "verdict", "failures", "details"], check_rows))
    out.append("<h2>Deliveries used</h2><p>" + esc(", ".join(report["deliveries_used"]) or "none") + "</p>")
    out.append("</body></html>")
    return "\n".join(out)
