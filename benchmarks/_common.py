"""Helpers shared by the benchmark scripts (dqflow's and the peers'), so every system
is measured and reported the same way."""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, the same for every system."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(results: list[dict[str, Any]], metric: str) -> float | None:
    """Median of ``metric`` over the runs that report it."""
    values = [r[metric] for r in results if r.get(metric) is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 0) -> str:
    """A table cell: thousands separators, ``-`` for a missing value."""
    return "-" if value is None else f"{value:,.{digits}f}"


def version(package: str) -> str:
    """Installed version of ``package`` (``?`` if absent)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def loadavg() -> str:
    """The machine's load averages, for the report's header."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


@contextmanager
def fresh_pg_database(admin_url: str, prefix: str) -> Iterator[str]:
    """Create an empty PostgreSQL database for one run; drop it afterwards (retrying
    while the server restarts)."""
    import psycopg

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        for attempt in range(30):
            try:
                with psycopg.connect(admin_url, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                break
            except psycopg.OperationalError:
                if attempt == 29:
                    raise
                time.sleep(1)
