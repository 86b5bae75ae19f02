"""Packaging: the plain install is the SQLite queue; PostgreSQL and Redis are extras named when missing."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cli_support import REPO, Result

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_drivers_are_extras_and_psycopg_leaves_the_implementation_to_the_user() -> None:
    base = " ".join(PYPROJECT["dependencies"])
    assert "psycopg" not in base and "redis" not in base
    extras = PYPROJECT["optional-dependencies"]
    assert extras["postgres"] == ["psycopg>=3.2,<4", "psycopg-pool>=3.2,<4"]
    assert extras["redis"] == ["redis>=5.0,<7"]
    dev = next(req for req in extras["dev"] if req.startswith("dqflow["))  # ./scripts/test installs both drivers
    assert {"postgres", "redis"} <= set(dev.removeprefix("dqflow[").removesuffix("]").split(","))


def test_license_classifiers_and_urls() -> None:
    assert PYPROJECT["license"] == "MIT" and (REPO / "LICENSE").read_text().startswith("MIT License")
    assert any(c.startswith("Programming Language :: Python :: 3.11") for c in PYPROJECT["classifiers"])
    assert {"Homepage", "Source", "Issues"} <= set(PYPROJECT["urls"])


def without(modules: str, *args: str, cwd: Path) -> Result:
    """The CLI in a fresh interpreter where ``modules`` cannot be imported (as when not installed)."""
    code = (
        "import sys\n"
        f"for name in {modules.split(',')!r}: sys.modules[name] = None\n"
        "from dqflow.cli import run\n"
        f"sys.exit(run({list(args)!r}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60)
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.mark.parametrize(
    ("blocked", "args", "extra"),
    [
        ("psycopg,psycopg_pool", ["list", "-b", "postgresql://u@127.0.0.1/db"], "postgres"),
        ("psycopg,psycopg_pool", ["migrate", "-b", "postgresql://u@127.0.0.1/db"], "postgres"),
        ("psycopg_pool", ["add", "ok", "-p", '{"n": 1}', "-b", "postgres://u@127.0.0.1/db"], "postgres"),
        ("redis", ["list", "-b", "redis://127.0.0.1:6379/0"], "redis"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(project: Path, blocked: str, args: list[str], extra: str) -> None:
    result = without(blocked, *args, cwd=project)
    assert result.code == 1, result
    assert result.err.strip().splitlines() == [
        f"error: backend: {'PostgreSQL' if extra == 'postgres' else 'Redis'} support is not installed:"
        f" pip install 'dqflow[{extra}]'"
    ]


def test_sqlite_queue_and_worker_need_no_driver(project: Path) -> None:
    assert without("psycopg,psycopg_pool,redis", "add", "ok", "-p", '{"n": 1}', cwd=project).code == 0
    ran = without("psycopg,psycopg_pool,redis", "run", "--drain", cwd=project)
    assert ran.code == 0 and "1 completed" in ran.out, ran
