"""Commands for operators: ``stats`` (counts, backlog, workers) and ``health`` (exit 0/1)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dqflow.cli._app import BACKEND_ENV, backend_url, command, load, options
from dqflow.cli._output import console, print_json, seconds_text
from dqflow.cli._parse import duration
from dqflow.enums import JobStatus
from dqflow.urls import redact_url

if TYPE_CHECKING:
    from dqflow.storage import Storage, WorkerInfo

DEFAULT_WORKER_WITHIN = "60s"


def _url() -> str:
    """The backend URL; the YAML is read (handlers not imported) only when nothing else names one."""
    if options().backend or os.environ.get(BACKEND_ENV, "").strip():
        return backend_url(None)
    return backend_url(load(import_handlers=False))


def _age(since: datetime | None, now: datetime) -> float | None:
    return None if since is None else max(0.0, round((now - since).total_seconds(), 3))


def _ago(seconds: float | None) -> str:
    """``3s ago``, ``7m 3s ago``, ``2h 5m ago``, ``3d 4h ago`` (two units at most)."""
    if seconds is None:
        return "never"
    left = round(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts[:2]) + " ago"


def _worker_json(worker: WorkerInfo, now: datetime) -> dict[str, Any]:
    return {
        "worker_id": worker.worker_id,
        "host": worker.host,
        "pid": worker.pid,
        "concurrency": worker.concurrency,
        "job_types": list(worker.job_types),
        "started_at": worker.started_at.isoformat(),
        "last_seen": None if worker.last_seen is None else worker.last_seen.isoformat(),
        "last_seen_age_s": _age(worker.last_seen, now),
    }


@command("stats")
def stats() -> None:
    """Jobs per job type and status, the oldest pending job, the workers seen, and the flow-control
    bookkeeping kept."""
    from dqflow.storage import open_storage

    store = open_storage(_url())
    try:
        store.setup()
        counts = store.count_jobs()
        oldest = store.oldest_pending()
        workers = store.list_workers()
        flow = store.count_flow_control()
    finally:
        store.close()
    now = datetime.now(UTC)
    by_type: dict[str, dict[str, int]] = {}
    for (job_type, status), count in sorted(counts.items()):
        by_type.setdefault(job_type, {})[status.value] = count
    totals = {status.value: sum(c for (_, s), c in counts.items() if s is status) for status in JobStatus}
    pending = None
    if oldest is not None:
        pending = {
            "id": oldest.id,
            "job_type": oldest.job_type,
            "created_at": oldest.created_at.isoformat(),
            "age_s": _age(oldest.created_at, now),
            "run_at": oldest.run_at.isoformat(),
        }
    if options().json:
        print_json(
            {
                "backend": redact_url(store.url),
                "counts": by_type,
                "totals": totals,
                "oldest_pending": pending,
                "workers": [_worker_json(w, now) for w in workers],
                "flow_control": {"slot_keys": flow.slot_keys, "rate_windows": flow.rate_windows},
            }
        )
        return
    _print_stats(by_type, totals, pending, workers, now)
    if flow.slot_keys or flow.rate_windows:
        console().print(
            f"flow control: {flow.slot_keys} concurrency keys, {flow.rate_windows} rate windows kept"
            " (the pruner and dqflow cleanup remove unused ones)",
            markup=False,
        )


def _print_stats(
    by_type: dict[str, dict[str, int]],
    totals: dict[str, int],
    pending: dict[str, Any] | None,
    workers: list[WorkerInfo],
    now: datetime,
) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from dqflow.cli._tables import status_text

    out = console()
    shown = [status for status in JobStatus if totals[status.value]] or [JobStatus.PENDING]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("job type", no_wrap=True, overflow="ellipsis", min_width=8)
    for status in shown:
        table.add_column(status_text(status), justify="right", no_wrap=True)
    table.add_column("total", justify="right", no_wrap=True)
    for job_type, row in by_type.items():
        cells = [str(row.get(status.value, 0)) for status in shown]
        table.add_row(Text(job_type), *cells, str(sum(row.values())))
    if len(by_type) != 1:
        table.add_row(Text("all", style="bold"), *(str(totals[s.value]) for s in shown), str(sum(totals.values())))
    out.print(table if by_type else "no jobs")
    if pending is not None:
        age = _ago(pending["age_s"])
        out.print(f"oldest pending: job {pending['id']} ({pending['job_type']}), added {age}", markup=False)
    if not workers:
        out.print("workers: none registered")
        return
    listing = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    listing.add_column("worker", overflow="fold")
    listing.add_column("last seen", no_wrap=True)
    listing.add_column("conc", justify="right", no_wrap=True)
    listing.add_column("job types", overflow="fold")
    for worker in workers:
        types = ", ".join(worker.job_types) or "all"
        listing.add_row(Text(worker.worker_id), _ago(_age(worker.last_seen, now)), str(worker.concurrency), Text(types))
    out.print(listing)


@dataclass(frozen=True, slots=True)
class Check:
    """One line of ``dqflow health``."""

    name: str
    ok: bool
    detail: str


def _storage_checks(store: Storage, shown: str) -> list[Check]:
    """Reachable, then migrations current (PostgreSQL's setup refuses a schema it does not know)."""
    from dqflow.errors import NotMigratedError, StorageError, StorageTooNewError

    try:
        store.setup()
    except (NotMigratedError, StorageTooNewError) as exc:
        return [Check("storage", True, f"{shown} reachable"), Check("migrations", False, str(exc))]
    except StorageError as exc:
        return [Check("storage", False, str(exc))]
    return [Check("storage", True, f"{shown} reachable"), Check("migrations", True, "current")]


def _missing_sqlite_file(url: str) -> str | None:
    """A SQLite URL naming a file that does not exist (health never creates one)."""
    if not url.startswith("sqlite:///"):
        return None
    from dqflow.storage.sqlite.backend import path_from_url

    path = path_from_url(url)
    return None if path == ":memory:" or Path(path).is_file() else path


@command("health")
def health(
    within: Annotated[
        str,
        typer.Option("--within", metavar="DURATION", help="A worker counts as alive if seen this recently."),
    ] = DEFAULT_WORKER_WITHIN,
    workers: Annotated[
        int, typer.Option("--workers", min=0, help="How many alive workers are needed (0: do not check).")
    ] = 1,
) -> int:
    """Check storage, migrations and workers; exit 0 when all pass, 1 when one fails."""
    from dqflow.storage import open_storage

    limit = duration(within, "--within") or 0.0
    url = _url()
    shown = redact_url(url)
    checks: list[Check] = []
    missing = _missing_sqlite_file(url)
    if missing is not None:
        checks.append(Check("storage", False, f"no SQLite file at {missing} (nothing has used this queue yet)"))
    else:
        store = open_storage(url)
        try:
            checks += _storage_checks(store, shown)
            if workers and all(check.ok for check in checks):
                checks.append(_worker_check(store.list_workers(), workers, limit))
        finally:
            store.close()
    ok = all(check.ok for check in checks)
    if options().json:
        print_json({"ok": ok, "backend": shown, "checks": [_check_json(check) for check in checks]})
    else:
        for check in checks:
            typer.echo(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    return 0 if ok else 1


def _check_json(check: Check) -> dict[str, Any]:
    return {"name": check.name, "ok": check.ok, "detail": check.detail}


def _worker_check(seen: list[WorkerInfo], needed: int, within: float) -> Check:
    now = datetime.now(UTC)
    alive = [w for w in seen if w.last_seen is not None and (now - w.last_seen).total_seconds() <= within]
    detail = f"{len(alive)} alive (seen within {seconds_text(within)}), {needed} needed"
    if seen and not alive:
        detail += f"; last seen {_ago(_age(seen[0].last_seen, now))}"
    return Check("workers", len(alive) >= needed, detail)
