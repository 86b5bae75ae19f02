"""The migrated tables match the SQLModel records column for column: names, types, nullability."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.dialects import postgresql
from sqlmodel import SQLModel

import dqflow.record
import dqflow.workflow_record  # noqa: F401  (both register their table models)

_QUERY = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_attribute AS a
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


@pytest.mark.parametrize("table", ["dqflow_jobs", "dqflow_job_events", "dqflow_workflow_runs"])
def test_migrated_table_matches_the_model(pg_url: str, table: str) -> None:
    database, schema = pg_url.split("?schema=")
    with psycopg.connect(database) as conn:
        actual = [(name, kind, not notnull) for name, kind, notnull in conn.execute(_QUERY, (f"{schema}.{table}",))]
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    model = SQLModel.metadata.tables[table]
    expected = [
        (column.name, column.type.compile(dialect=dialect).lower(), bool(column.nullable)) for column in model.columns
    ]
    assert [name for name, _, _ in actual] == [name for name, _, _ in expected], "column names or order"
    assert actual == expected


def test_primary_keys_match(pg_url: str) -> None:
    database, schema = pg_url.split("?schema=")
    with psycopg.connect(database) as conn:
        for table in ("dqflow_jobs", "dqflow_job_events", "dqflow_workflow_runs"):
            row = conn.execute(
                "SELECT array_agg(a.attname::text) FROM pg_index i"
                " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                " WHERE i.indrelid = %s::regclass AND i.indisprimary",
                (f"{schema}.{table}",),
            ).fetchone()
            assert row is not None
            model = SQLModel.metadata.tables[table]
            assert row[0] == [column.name for column in model.primary_key.columns]
