"""``dqflow stats`` and ``dqflow health``: what an operator sees, on every backend."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from backends import pg_test_database
from cli_support import Result

from dqflow.storage import WorkerInfo, open_storage


def register(url: str, worker_id: str = "host-a:99:abc123") -> None:
    """A worker's beat, as a running worker's maintenance loop writes it."""
    store = open_storage(url)
    try:
        store.setup()
        store.beat_worker(WorkerInfo(worker_id, "host-a", 99, datetime.now(UTC), 4, ("ok", "boom")))
    finally:
        store.close()


def test_stats_counts_backlog_and_workers(
    project: Path, backend: str, dq: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DQFLOW_BACKEND", backend)
    for args in (["ok", "-p", '{"n": 1}'], ["ok", "-p", '{"n": 2}'], ["boom", "-p", "{}"]):
        assert dq("add", *args).code == 0
    assert dq("run", "--drain").code == 0
    late = int(dq("add", "ok", "-p", '{"n": 3}').out)
    assert dq("add", "steps", "-p", '{"steps": 1}', "--delay", "1h").code == 0
    document = dq("stats", "--json").json()
    assert document["counts"] == {"boom": {"failed": 1}, "ok": {"completed": 2, "pending": 1}, "steps": {"pending": 1}}
    assert document["totals"]["completed"] == 2 and document["totals"]["pending"] == 2
    oldest = document["oldest_pending"]
    assert oldest["id"] == late and oldest["job_type"] == "ok" and 0 <= oldest["age_s"] < 60
    assert document["workers"] == []  # the drained worker left the registry when it stopped
    assert document["flow_control"] == {"slot_keys": 0, "rate_windows": 0}
    register(backend)
    [worker] = dq("stats", "--json").json()["workers"]
    assert worker["worker_id"] == "host-a:99:abc123" and worker["job_types"] == ["ok", "boom"]
    assert worker["concurrency"] == 4 and 0 <= worker["last_seen_age_s"] < 60


def test_stats_table_reads_at_80_columns(
    project: Path, dq: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    for args in (["ok", "-p", '{"n": 1}'], ["steps", "-p", '{"steps": 1}'], ["boom"], ["ok", "-p", '{"n": 2}']):
        dq("add", *args)
    dq("run", "--drain")
    dq("add", "ok", "-p", '{"n": 3}')
    register(f"sqlite:///{project / '.dqflow' / 'queue.db'}")
    shown = dq("stats")
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert all(len(line) <= 80 for line in lines), shown.out
    header = lines[0].split()
    assert header[:4] == ["job", "type", "pending", "completed"] and header[-1] == "total"
    assert [line.split()[:3] for line in lines[2:5]] == [["boom", "0", "0"], ["ok", "1", "2"], ["steps", "0", "1"]]
    assert any(line.startswith("oldest pending: job 5 (ok), added ") for line in lines), shown.out
    assert any("host-a:99:abc123" in line and "ago" in line for line in lines), shown.out


def test_health_checks_storage_migrations_and_workers(project: Path, dq: Callable[..., Result]) -> None:
    missing = dq("health")
    assert missing.code == 1 and "FAIL storage: no SQLite file at" in missing.out
    dq("add", "ok", "-p", '{"n": 1}')
    no_worker = dq("health")
    assert no_worker.code == 1
    storage, migrations = no_worker.out.splitlines()[:2]
    assert storage == f"ok   storage: sqlite:///{project / '.dqflow' / 'queue.db'} reachable"
    assert migrations == "ok   migrations: current"
    assert "FAIL workers: 0 alive (seen within 1m), 1 needed" in no_worker.out
    assert dq("health", "--workers", "0").code == 0
    register(f"sqlite:///{project / '.dqflow' / 'queue.db'}")
    alive = dq("health", "--json")
    assert alive.code == 0 and alive.json()["ok"] is True
    assert [c["name"] for c in alive.json()["checks"]] == ["storage", "migrations", "workers"]
    time.sleep(0.05)
    stale = dq("health", "--within", "10ms", "--workers", "1")
    assert stale.code == 1 and "FAIL workers: 0 alive (seen within 10ms), 1 needed; last seen 0s ago" in stale.out


def test_health_on_an_unmigrated_or_unreachable_backend(dq: Callable[..., Result], tmp_path: Path) -> None:
    unmigrated = f"{pg_test_database()}?schema=t_{uuid.uuid4().hex[:12]}"
    result = dq("health", "--backend", unmigrated, "--json")
    assert result.code == 1
    checks = {c["name"]: c for c in result.json()["checks"]}
    assert checks["storage"]["ok"] is True and checks["migrations"]["ok"] is False
    assert "dqflow migrate" in checks["migrations"]["detail"] and "workers" not in checks
    gone = dq("health", "--backend", "redis://127.0.0.1:1/0")
    assert gone.code == 1 and gone.out.startswith("FAIL storage: Redis at redis://127.0.0.1:1/0 is not reachable")
