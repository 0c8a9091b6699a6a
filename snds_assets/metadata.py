"""Dagster metadata shared by the reception and provision assets: column schemas described from the catalog."""
from __future__ import annotations

from dagster import TableColumn, TableSchema

from . import domain
from .catalog import Table

# Columns the product adds to the delivered ones, described once.
ADDED_COLUMNS: dict[str, str] = {
    domain.YEAR_COLUMN: "Year of the PMSI table this row was delivered in (T_MCO23B: 2023).",
    **{pseudonym: f"Project pseudonym replacing {', '.join(sorted(c for c, p in domain.PROJECT_PSEUDONYMS.items() if p == pseudonym))}: "
                  "keyed with the project's secret, the same for a person across the project's tables."
       for pseudonym in sorted(set(domain.PROJECT_PSEUDONYMS.values()))},
}


def column_schema(table: Table | None, columns: list[tuple[str, str]]) -> TableSchema:
    """``dagster/column_schema`` of a curated or extracted table: Spark types, descriptions from the catalog."""
    described = {f.name: f.description for f in table.fields} if table is not None else {}
    out = []
    for name, dtype in columns:
        if name in described:
            description = described[name] or None
        elif name in ADDED_COLUMNS:
            description = ADDED_COLUMNS[name]
        else:
            description = "Delivered column that the catalog does not describe (kept as text)." if table else None
        out.append(TableColumn(name, dtype, description=description))
    return TableSchema(columns=out)
