"""The statements as sent: without the files' comments and indentation, quoted text untouched."""

from __future__ import annotations

from dataclasses import fields

from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

from dqflow.storage.postgres._queries import Queries, compact


def test_comments_and_blanks_go_quoted_text_stays() -> None:
    sql = "-- what it does\nSELECT '--kept'  ,   'it''s -- kept'   AS \"two  spaces\" -- gone\n\n    FROM t  -- gone\n"
    assert compact(sql) == "SELECT '--kept' , 'it''s -- kept' AS \"two  spaces\" \nFROM t"


def test_every_statement_is_sent_without_comments() -> None:
    for field in fields(Queries):
        assert "--" not in getattr(Queries.load("t_some_schema"), field.name), field.name


def test_the_settle_statements_fit_psycopgs_parse_cache() -> None:
    """Longer statements have their placeholders parsed again on every call."""
    queries = Queries.load("t_some_long_schema_name")
    names = ("complete_jobs", "add_jobs_unkeyed", "workflow_update_run", "workflow_lock_runs")
    for name in (*names, "workflow_add_jobs_update_runs", "workflow_add_claimed_jobs_update_runs"):
        assert len(getattr(queries, name).encode()) <= MAX_CACHED_STATEMENT_LENGTH, name
