"""The claim walks the partial index of ready jobs and stays O(batch) with 100k finished jobs."""

from __future__ import annotations

import json
import re
from typing import Any

import psycopg
import pytest

from dqflow.storage import NewJob
from dqflow.storage.postgres import PostgresStorage
from dqflow.storage.postgres._queries import Queries

FINISHED = 100_000
BATCH = 10

pytestmark = pytest.mark.slow


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


def _fill(conn: psycopg.Connection[Any], schema: str) -> None:
    """100k finished jobs (completed, failed, cancelled) inserted in one statement, then 50 ready ones."""
    conn.execute(
        f"""
        INSERT INTO {schema}.dqflow_jobs (job_type, payload, status, priority, run_at, attempts, output,
                                          created_at, updated_at, completed_at)
        SELECT 'work', jsonb_build_object('n', g),
               (ARRAY['completed', 'failed', 'cancelled'])[1 + g %% 3], g %% 5, now() - interval '1 day', 1,
               '{{"ok": true}}', now() - interval '1 day', now(), now()
        FROM generate_series(1, %s) AS g
        """,
        (FINISHED,),
    )
    conn.execute(f"ANALYZE {schema}.dqflow_jobs")


@pytest.fixture
def loaded(storage: PostgresStorage, pg_url: str) -> tuple[PostgresStorage, str, str]:
    database, schema = pg_url.split("?schema=")
    with psycopg.connect(database, autocommit=True) as conn:
        _fill(conn, schema)
    storage.add_jobs([NewJob("work", json.dumps({"n": i}), priority=i % 3) for i in range(50)])
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f"ANALYZE {schema}.dqflow_jobs")
    return storage, database, schema


def _explain_analyze(database: str, schema: str, job_types: list[str] | None) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the real claim statement, rolled back."""
    query = Queries.load(schema).claim_jobs
    params = {"worker_id": "w", "job_types": job_types, "limit": BATCH, "lease_ms": 1000}
    with psycopg.connect(database) as conn:
        row = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, params).fetchone()
        conn.rollback()
    assert row is not None
    plan: dict[str, Any] = row[0][0]
    return plan


@pytest.mark.parametrize("job_types", [None, ["work"]])
def test_claim_uses_the_partial_index_and_reads_o_batch(
    loaded: tuple[PostgresStorage, str, str], job_types: list[str] | None
) -> None:
    _, database, schema = loaded
    plan = _explain_analyze(database, schema, job_types)
    nodes = _nodes(plan["Plan"])
    scans = [n for n in nodes if n.get("Relation Name") == "dqflow_jobs" and "Scan" in n["Node Type"]]
    assert not [n for n in scans if n["Node Type"] == "Seq Scan"], "the claim must not scan the table"
    ready = [n for n in scans if n.get("Index Name") == "dqflow_jobs_ready"]
    assert ready, f"claim does not use dqflow_jobs_ready: {[n.get('Index Name') for n in scans]}"
    # The index scan stops after the batch: rows read do not grow with the 100k finished jobs.
    assert ready[0]["Actual Rows"] <= BATCH
    total_buffers = plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"]
    assert total_buffers < 40 * BATCH, f"claim touched {total_buffers} buffers"
    assert plan["Execution Time"] < 50, plan["Execution Time"]


def test_generic_plan_of_the_prepared_claim_uses_the_partial_index(
    loaded: tuple[PostgresStorage, str, str],
) -> None:
    """psycopg prepares hot statements; the generic plan must use the index too."""
    _, database, schema = loaded
    query = Queries.load(schema).claim_jobs
    order: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    numbered = re.sub(r"%\((\w+)\)s", placeholder, query)
    values = {"worker_id": "'w'", "job_types": "NULL", "limit": str(BATCH), "lease_ms": "1000"}
    with psycopg.connect(database) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE claim AS {numbered}".encode())
        args = ", ".join(values[name] for name in order)
        rows = conn.execute(f"EXPLAIN (FORMAT JSON) EXECUTE claim({args})".encode()).fetchone()
        conn.rollback()
    assert rows is not None
    nodes = _nodes(rows[0][0]["Plan"])
    names = {n.get("Index Name") for n in nodes}
    assert "dqflow_jobs_ready" in names
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "dqflow_jobs"]


def test_claim_with_100k_finished_jobs_returns_the_right_batch(
    loaded: tuple[PostgresStorage, str, str],
) -> None:
    storage, _, _ = loaded
    claimed = storage.claim_jobs("w", None, BATCH, 10_000)
    assert len(claimed) == BATCH
    assert [j.priority for j in claimed] == sorted((j.priority for j in claimed), reverse=True)
    assert all(j.payload["n"] < 50 and "n" in j.payload for j in claimed)


@pytest.mark.parametrize(("mode", "tags"), [("all", ["t1"]), ("any", ["t1", "t2"]), ("exact", ["t1"])])
def test_tag_filters_use_the_gin_index(loaded: tuple[PostgresStorage, str, str], mode: str, tags: list[str]) -> None:
    storage, database, schema = loaded
    storage.add_jobs([NewJob("work", "{}", tags=("t1",)) for _ in range(5)])
    params = {
        "statuses": None,
        "job_type": None,
        "created_after": None,
        "created_before": None,
        "cursor": None,
        "tag_mode": mode,
        "tags": tags,
        "tags_json": json.dumps(tags),
        "limit": 101,
    }
    with psycopg.connect(database) as conn:
        row = conn.execute("EXPLAIN (FORMAT JSON) " + Queries.load(schema).list_jobs, params, prepare=False).fetchone()
    assert row is not None
    assert "dqflow_jobs_tags" in {n.get("Index Name") for n in _nodes(row[0][0]["Plan"])}


def test_hot_path_plans_hold_without_statistics(storage: PostgresStorage, pg_url: str) -> None:
    """A fresh, never analyzed table (the planner guesses): the pool still claims through
    the ready index and completes through primary-key lookups, no bitmap or seq scans."""
    _, schema = pg_url.split("?schema=")
    storage.add_jobs([NewJob("work", json.dumps({"n": i})) for i in range(5_000)])
    claimed = storage.claim_jobs("w", None, 16, 10_000)
    queries = Queries.load(schema)
    with storage._connection("explaining") as conn:
        claim_plan = conn.execute(
            "EXPLAIN (FORMAT JSON) " + queries.claim_jobs,
            {"worker_id": "w", "job_types": None, "limit": 16, "lease_ms": 1000},
        ).fetchone()
        complete_plan = conn.execute(
            "EXPLAIN (FORMAT JSON) " + queries.complete_jobs,
            {
                "job_id": [j.id for j in claimed],
                "lease_token": [j.lease_token for j in claimed],
                "output": [None] * 16,
                "channel": "dqflow",
            },
        ).fetchone()
    assert claim_plan is not None and complete_plan is not None
    claim_nodes = _nodes(claim_plan[0][0]["Plan"])
    assert "dqflow_jobs_ready" in {n.get("Index Name") for n in claim_nodes}
    for nodes in (claim_nodes, _nodes(complete_plan[0][0]["Plan"])):
        kinds = {n["Node Type"] for n in nodes}
        assert not kinds & {"Seq Scan", "Bitmap Heap Scan", "Hash Join", "Merge Join"}, kinds


@pytest.mark.parametrize("count", [1, 500])
def test_writing_run_states_probes_each_run_by_its_key(storage: PostgresStorage, pg_url: str, count: int) -> None:
    """workflow_update_run.sql: the planner sees how many runs are written (unnest) and looks each
    one up by its key; it neither scans every run nor filters the written ones against each other
    (a join filter after `id = ANY(...)` was O(runs²) in a big settle)."""
    database, schema = pg_url.split("?schema=")
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {schema}.dqflow_workflow_runs (name, status, input, tags, steps, version, created_at,"
            " updated_at) SELECT 'w', 'running', '{}', '[]', '[]', 0, now(), now() FROM generate_series(1, 2000)"
        )
        conn.execute(f"ANALYZE {schema}.dqflow_workflow_runs")
    ids = list(range(5, 5 + count))
    runs = [
        {"run_id": run_id, "status": "running", "output": None, "failure_reason": None, "error": None} for run_id in ids
    ]
    params = {"runs": json.dumps(runs), "steps": ["[]"] * count}
    with storage._connection("explaining") as conn:
        row = conn.execute("EXPLAIN (FORMAT JSON) " + Queries.load(schema).workflow_update_run, params).fetchone()
    assert row is not None
    nodes = _nodes(row[0][0]["Plan"])
    probes = [n for n in nodes if n.get("Index Name") == "dqflow_workflow_runs_pkey"]
    assert probes and all("run_id" in n.get("Index Cond", "") for n in probes), nodes
    assert not [n for n in nodes if n["Node Type"] in ("Seq Scan", "Materialize") or "Join Filter" in n], nodes


def test_a_step_settles_completions_only_once_their_runs_are_locked(storage: PostgresStorage, pg_url: str) -> None:
    """workflow_lock_complete_jobs.sql: the runs before their jobs. The jobs' UPDATE waits for the
    runs' lock (a one-time filter on it, evaluated before any job row is read), and scans no
    table whole."""
    schema = pg_url.split("?schema=")[1]
    params = {
        "runs": json.dumps([{"id": 1, "known": None}]),
        "draw": 1,
        "job_id": [1, 2],
        "lease_token": [1, 1],
        "output": ["{}", "{}"],
        "channel": "c",
    }
    with storage._connection("explaining") as conn:
        row = conn.execute("EXPLAIN (FORMAT JSON) " + Queries.load(schema).workflow_lock_complete_jobs, params)
        (plan,) = row.fetchone() or (None,)
    updates = [
        n for n in _nodes(plan[0]["Plan"]) if n.get("Operation") == "Update" and n["Relation Name"] == "dqflow_jobs"
    ]
    (update,) = [n for n in updates if any("runs_locked" in str(sub) for sub in n.get("Plans", []))]
    gates = [n for n in _nodes(update) if "One-Time Filter" in n]
    assert gates and any(s.get("Subplan Name", "").startswith("InitPlan") for s in update["Plans"]), update
    assert not {n["Node Type"] for n in _nodes(update)} & {"Seq Scan", "Bitmap Heap Scan", "Hash Join", "Merge Join"}
