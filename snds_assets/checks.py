"""Check vocabulary shared by the reception report (SPEC §6) and the Dagster asset checks.

Every rule a table is checked by appears under the same name in the report and as an asset check, so the UI
and the report always agree.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from dagster import AssetCheckResult, AssetKey, MetadataValue

ERROR, WARN = "ERROR", "WARN"

RAW_RULES: tuple[str, ...] = ("file_present", "checksum", "row_count", "columns")
CURATED_RULES: tuple[str, ...] = (
    "type", "not_null", "primary_key", "foreign_key", "nomenclature", "range", "domain", "rows_reconciled",
)
ALL_RULES = RAW_RULES + CURATED_RULES

# Rows of other families that a full delivery leaves without their parent (``curation.orphaned``).
ORPHANS_CHECK = "orphaned_children"
# (check name, rule) declared on every curated asset: one verdict each per delivered table.
CURATED_CHECKS: tuple[tuple[str, str], ...] = (
    ("type", "type"), ("not_null", "not_null"), ("primary_key", "primary_key"),
    ("primary_key_state", "primary_key"), ("foreign_key", "foreign_key"), ("nomenclature", "nomenclature"),
    ("range", "range"), ("domain", "domain"), ("rows_reconciled", "rows_reconciled"),
    (ORPHANS_CHECK, "foreign_key"),
)
# Checks on every project extract and on the cohort.
EXTRACT_CHECKS: dict[str, str] = {
    "belongs_to_cohort": "Every extracted row belongs to a person of the project's cohort.",
    "in_period": "Every dated extracted row lies in the project's period.",
    "granted_columns": "Only the tables and columns granted to the project are present.",
    "no_snds_pseudonym": "No SNDS pseudonym column (BEN_NIR_PSA, NIR_ANO_17, BEN_IDT_ANO, BEN_NIR_ANO...) is in the "
                         "extract, and no text column holds a pseudonym of any identity of IR_BEN_R or its archive.",
    "row_count": "The rows written to the project's space are the rows selected for it.",
}
COHORT_CHECKS: dict[str, str] = {
    "unresolved_identifiers": "Identifiers the project brought that resolve to no person (unknown) or not to one "
                              "alone (twins, or an IR_BEN_R row without BEN_IDT_ANO).",
    "no_snds_pseudonym": "The cohort holds project pseudonyms only.",
}

DEFAULT_SEVERITY: dict[str, str] = {
    "file_present": ERROR, "checksum": ERROR, "row_count": ERROR, "primary_key": ERROR, "rows_reconciled": ERROR,
    "columns": WARN, "type": WARN, "not_null": WARN, "foreign_key": WARN, "nomenclature": WARN,
    "range": WARN, "domain": WARN, "primary_key_state": WARN, "orphaned_children": WARN,
}

RULE_DESCRIPTIONS: dict[str, str] = {
    "file_present": "Every file listed in the manifest was delivered and is readable.",
    "checksum": "Each file's SHA-256 and size match the manifest.",
    "row_count": "Each file holds the number of data rows the manifest announces (header excluded).",
    "columns": "The file's columns match the catalog: missing, unknown and reordered columns are reported; "
               "a missing key or identifier column is an ERROR. A column is missing only if files of the data's "
               "year carry it (the schema's dateCreated/dateDeleted).",
    "type": "Every value parses to its column's type and format (dates, numbers, booleans).",
    "not_null": "Key and identifier columns are filled; rows without them cannot be linked and go to rejects.",
    "primary_key": "The key is unique within the delivery (duplicates beyond the first are counted). "
                   "Duplicates against the current state of the family are a warning.",
    "foreign_key": "Rows point to an existing parent row (DCIR nine keys, PMSI stay keys, identities in IR_BEN_R). "
                   "A parent absent from both the delivery and the current state is not evaluated.",
    "nomenclature": "Coded values exist in their nomenclature (needs SNDS_NOMENCLATURES).",
    "range": "Values are plausible: dates between 1900 and the delivery date, or the 1600-01-01 convention; "
             "DCIR flows released within the 19 years plus the current one the base keeps; numeric bounds of the "
             "schema.",
    "domain": "Documented SNDS business rules (PMSI return codes, DPN_QLF, care dates...).",
    "rows_reconciled": "Rows in the files (the archive's count) = rows read = rows curated + rows rejected: nothing "
                       "delivered is lost.",
    "primary_key_state": "Keys already present in the current state of the family (earlier accepted deliveries).",
    "orphaned_children": "Rows of other families' current state (earlier deliveries) whose parent row a full "
                         "delivery of this family removes: not delivered again, nor in an archive (IR_BEN_R_ARC).",
    "delivery_accepted": "Every table of the delivery passed its ERROR checks; the failures are its rejected tables.",
}


@dataclass
class CheckOutcome:
    """One rule's verdict on one delivered table (a report entry), or on a family (an asset check)."""

    name: str
    rule: str
    severity: str
    passed: bool
    failures: int = 0
    columns: list[str] = field(default_factory=list)
    sample: list = field(default_factory=list)
    evaluated: bool = True
    details: str = ""

    def to_report(self) -> dict:
        return asdict(self)


def restated(name: str, outcome: CheckOutcome | None, asset: str) -> CheckOutcome:
    """A check executed without its asset (the UI's "Execute" on one check) is not evaluated again: each of ours is
    computed as its asset is materialised (in the write pass, or against the table just written). Its verdict as
    last recorded is emitted again, said so; none emitted, Dagster would show it skipped, a failure hidden."""
    if outcome is None:
        return CheckOutcome(name, name, DEFAULT_SEVERITY.get(name, WARN), True, evaluated=False,
                            details=f"no verdict recorded for this partition: materialise {asset} to evaluate it")
    note = f"executed alone, the verdict of {asset}'s last materialisation (materialise it to evaluate it again)"
    return replace(outcome, details="; ".join(x for x in (note, outcome.details) if x))


def combine(name: str, checked: list[tuple[str, CheckOutcome]]) -> CheckOutcome:
    """One family-level verdict from the verdicts of its delivered tables, ``(table, outcome)`` (PMSI years share
    one asset): when several were delivered, the details name those that failed."""
    outcomes = [o for _, o in checked]
    if not outcomes:
        return CheckOutcome(name, name, DEFAULT_SEVERITY.get(name, WARN), True, evaluated=False,
                            details="no delivered table of this family")
    failed = [o for o in outcomes if not o.passed]
    where = ""
    if failed and len({table for table, _ in checked}) > 1:
        where = "failed in " + ", ".join(f"{table} ({o.failures})" for table, o in checked if not o.passed)
    severity = ERROR if any(o.severity == ERROR for o in failed) else (failed[0].severity if failed else outcomes[0].severity)
    columns: list[str] = []
    for o in outcomes:
        columns += [c for c in o.columns if c not in columns]
    return CheckOutcome(
        name=name,
        rule=outcomes[0].rule,
        severity=severity,
        passed=not failed,
        failures=sum(o.failures for o in outcomes),
        columns=columns,
        sample=[s for o in outcomes for s in o.sample][:10],
        evaluated=any(o.evaluated for o in outcomes),
        # years often say the same: each reason once
        details="; ".join(dict.fromkeys([where] * bool(where) + [o.details for o in outcomes if o.details])),
    )


def tolerate(outcomes: list[CheckOutcome], rows_read: int, rows_rejected: int, tolerance: float) -> None:
    """A failed WARN check becomes an ERROR when the table's rejected share passes the tolerance (SPEC §6)."""
    if not rows_read or rows_rejected / rows_read <= tolerance:
        return
    share = 100.0 * rows_rejected / rows_read
    for c in outcomes:
        if c.severity == WARN and not c.passed:
            c.severity = ERROR
            c.details = (c.details + "; " if c.details else "") + (
                f"ERROR because {share:.2f}% of the table's rows were rejected (tolerance {100 * tolerance:g}%)")


def markdown_sample(outcome: CheckOutcome, asset_key: AssetKey | None = None) -> str:
    """A short markdown explanation of the verdict, for the check page in the UI."""
    rule = f" (rule `{outcome.rule}`)" if outcome.rule != outcome.name else ""
    description = rule_description(outcome, asset_key)
    lines = [f"**{outcome.name}**{rule} — {description}", ""]
    state = "passed" if outcome.passed else f"**{outcome.failures} failing**"
    lines.append(f"{state} (columns: {', '.join(outcome.columns)})." if outcome.columns else f"{state}.")
    if outcome.details:
        lines += ["", outcome.details]
    if outcome.sample:
        lines += ["", "Sample:", ""] + [f"- `{s}`" for s in outcome.sample[:5]]
    return "\n".join(lines)


def rule_description(outcome: CheckOutcome, asset_key: AssetKey | None = None) -> str:
    """What the check verifies: a project's cohort and extracts (``projects/…``) have checks of their own, one of
    them named like a raw file's (``row_count``)."""
    if asset_key is not None and asset_key.path[0] == "projects":
        return (COHORT_CHECKS if asset_key.path[-1] == "cohort" else EXTRACT_CHECKS).get(outcome.name, "")
    return RULE_DESCRIPTIONS.get(outcome.name, RULE_DESCRIPTIONS.get(outcome.rule, ""))


def asset_check_results(outcomes: Iterable[CheckOutcome], asset_key: AssetKey | None = None) -> list[AssetCheckResult]:
    """The Dagster view of the verdicts that were evaluated. A check not evaluated is left out: Dagster then shows it
    *Skipped* (its run succeeded, the check did not execute), where a result would show it passed, green. Why it was
    not evaluated is in the materialisation's metadata (``not_evaluated``) and in the report."""
    return [_asset_check_result(o, asset_key) for o in outcomes if o.evaluated]


def emitted(outcome: CheckOutcome, asset_key: AssetKey, log: logging.Logger) -> list[AssetCheckResult]:
    """One check emitted without its asset's materialisation (held to the end of the run, or executed alone): its
    result when evaluated, else none (Dagster shows it *Skipped*) and the run's log says why."""
    if outcome.evaluated:
        return [_asset_check_result(outcome, asset_key)]
    log.info(f"{asset_key.to_user_string()} check {outcome.name} not evaluated: {outcome.details or 'nothing to check'}")
    return []


def not_evaluated(outcomes: Iterable[CheckOutcome]) -> dict[str, MetadataValue]:
    """The materialisation's ``checks not evaluated`` entry: the checks ``asset_check_results`` left out, and why."""
    from dagster import MetadataValue

    lines = [f"- **{o.name}**: {o.details or 'nothing to check'}" for o in outcomes if not o.evaluated]
    return {"checks not evaluated": MetadataValue.md("\n".join(lines))} if lines else {}


def _asset_check_result(outcome: CheckOutcome, asset_key: AssetKey | None = None) -> AssetCheckResult:
    """The Dagster view of an evaluated verdict: same name, counts, sample and rule, severity as decided by the rule."""
    from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

    summary = "passed" if outcome.passed else f"{outcome.failures} failing ({outcome.severity})"
    return AssetCheckResult(
        asset_key=asset_key,
        description=summary[:500],
        check_name=outcome.name,
        passed=bool(outcome.passed),
        severity=AssetCheckSeverity.ERROR if outcome.severity == ERROR else AssetCheckSeverity.WARN,
        metadata={
            "rule": outcome.rule,
            "failures": int(outcome.failures),
            **({"columns": ", ".join(outcome.columns)} if outcome.columns else {}),
            **({"sample": MetadataValue.json(outcome.sample[:5])} if outcome.sample else {}),
            "explanation": MetadataValue.md(markdown_sample(outcome, asset_key)),
        },
    )
