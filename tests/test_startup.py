"""What starting dqflow costs: each entry point imports only what it uses.

Checked by module, not by clock (the machine's load would make times flaky):
``docs/CLI.md`` gives the measured times.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DRIVERS = {"psycopg", "psycopg_pool", "redis"}
ORM = {"sqlmodel", "sqlalchemy"}


def imported_after(code: str, cwd: Path) -> set[str]:
    """Modules in ``sys.modules`` (with their top-level packages) after ``code`` ran in a fresh interpreter."""
    listing = "sorted({*sys.modules, *(m.split('.')[0] for m in sys.modules)})"
    script = f"{code}\nimport json, sys\nprint(json.dumps({listing}))"
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_import_dqflow_loads_no_backend_or_orm(tmp_path: Path) -> None:
    loaded = imported_after("import dqflow", tmp_path)
    assert not loaded & (DRIVERS | ORM | {"pydantic", "jsonschema", "yaml", "rich", "typer", "dqflow.worker"})


def test_public_names_load_on_first_use(tmp_path: Path) -> None:
    loaded = imported_after("import dqflow\nassert dqflow.JobRecord.__name__ == 'JobRecord'", tmp_path)
    assert "sqlmodel" in loaded
    done = subprocess.run(
        [sys.executable, "-c", "import dqflow; print(dqflow.__version__, dqflow.Queue, 'Worker' in dir(dqflow))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    version, _, rest = done.stdout.partition(" ")
    assert version[0].isdigit() and rest.strip().endswith("True"), done
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import dqflow

        dqflow.nope  # noqa: B018


def test_help_loads_only_the_command_line(tmp_path: Path) -> None:
    loaded = imported_after("from dqflow.cli import run\nrun(['--help'])", tmp_path)
    assert not loaded & (DRIVERS | ORM | {"pydantic", "jsonschema", "yaml", "rich", "dqflow.worker"})


def test_add_on_sqlite_loads_no_driver_rich_or_worker(project: Path) -> None:
    loaded = imported_after("from dqflow.cli import run\nassert run(['add', 'ok', '-p', '{\"n\": 1}']) == 0", project)
    assert not loaded & (DRIVERS | {"rich", "dqflow.worker", "dqflow.cli._tables"})
    assert "logging.handlers" not in loaded  # the log writer thread starts with the first record: none here


def test_config_env_name_matches_the_loader() -> None:
    from dqflow.cli._app import CONFIG_ENV
    from dqflow.declaration.loader import CONFIG_ENV as LOADER_CONFIG_ENV

    assert CONFIG_ENV == LOADER_CONFIG_ENV


def test_add_on_sqlite_loads_no_orm(project: Path) -> None:
    loaded = imported_after("from dqflow.cli import run\nassert run(['add', 'ok', '-p', '{\"n\": 1}']) == 0", project)
    assert not loaded & ORM


def imported_by_example_add(tmp_path: Path, payload: str, exit_code: int = 0) -> set[str]:
    """Modules loaded by ``dqflow add generate_report -p PAYLOAD`` in a copy of the example project."""
    repo = Path(__file__).resolve().parent.parent
    for part in ("schemas", "examples"):
        shutil.copytree(repo / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(repo / "jobs.yaml", tmp_path / "jobs.yaml")
    backend = f"sqlite:///{tmp_path / 'q.db'}"
    args = ["--backend", backend, "add", "generate_report", "-p", payload]
    return imported_after(f"from dqflow.cli import run\nassert run({args!r}) == {exit_code}", tmp_path)


def test_add_in_the_example_project_leaves_its_workflows_unchecked(tmp_path: Path) -> None:
    """``dqflow add`` of a plain job checks the workflows' shape and graph, not their types (which
    need every wired schema checked): the checker, schedules, asyncio and urllib.request stay unloaded."""
    loaded = imported_by_example_add(tmp_path, '{"reportId": "q3"}')
    assert "dqflow.workflows.compile" in loaded  # the workflows were read
    unchecked = {"dqflow.workflows.checker", "dqflow.workflows.compat", "dqflow.declaration.schedules"}
    assert not loaded & (unchecked | {"asyncio", "urllib.request", "dqflow.queue.feed"})


def test_add_of_a_valid_payload_loads_no_jsonschema(tmp_path: Path) -> None:
    """The job type's schemas (no ``$ref``, no ``format`` in its payload's) are checked and the payload
    validated without ``jsonschema`` or ``referencing``; a refused payload loads them for the messages."""
    loaded = imported_by_example_add(tmp_path / "valid", '{"reportId": "q3"}')
    assert "fastjsonschema" in loaded
    assert not loaded & {"jsonschema", "referencing"}
    assert "jsonschema" in imported_by_example_add(tmp_path / "refused", '{"reportId": 3}', exit_code=1)


def test_add_registers_only_its_own_commands(project: Path) -> None:
    loaded = imported_after("from dqflow.cli import run\nassert run(['add', 'ok', '-p', '{\"n\": 1}']) == 0", project)
    assert "dqflow.cli.jobs" in loaded
    assert not loaded & {"dqflow.cli.check", "dqflow.cli.serve", "dqflow.cli.worker", "dqflow.cli.workflows"}


def test_command_modules_name_every_command_and_help_keeps_one_order(tmp_path: Path) -> None:
    """``COMMAND_MODULES`` names each module's commands; help after other commands ran in the
    same process lists them as a fresh process does."""
    script = """
import contextlib, io, json, typer
from dqflow.cli import COMMAND_MODULES, app, register_commands, run

def help_text():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run(["--help"])
    return out.getvalue()

with contextlib.redirect_stderr(io.StringIO()):
    run(["graph", "nope"])
    run(["stats"])
later = help_text()
register_commands()
names = sorted(typer.main.get_command(app).commands)
print(json.dumps({"names": names, "later": later}))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    fresh = subprocess.run([sys.executable, "-m", "dqflow", "--help"], cwd=tmp_path, capture_output=True, text=True)
    from dqflow.cli import COMMAND_MODULES

    assert seen["names"] == sorted(name for names in COMMAND_MODULES.values() for name in names)
    assert seen["later"] == fresh.stdout


def test_a_run_builds_only_the_commands_it_names() -> None:
    """typer builds the options of every command it is given: ``dqflow add`` gets ``add`` alone,
    help every command, and the app keeps them all registered for later runs."""
    from dqflow.cli import app, click_command, register_commands

    register_commands(["add", "token", "workflow"])
    groups = {"token", "workflow"}  # sub-command groups are always built
    assert set(click_command(["add", "ok", "-p", "{}"]).commands) == {"add", *groups}
    assert set(click_command(["list", "--job-type", "add"]).commands) == {"add", "list", *groups}
    assert set(click_command(["token", "show", "tok_1"]).commands) == {"show", *groups}
    everything = {"add", "list", "show", "graph", *groups}
    assert everything <= set(click_command(["workflow", "start", "w"]).commands)
    assert everything <= set(click_command(["add", "--help"]).commands)
    assert everything <= set(click_command(["nope"]).commands)
    assert {"add", "list", "show", "graph"} <= {info.name for info in app.registered_commands}


def test_garbage_collection_waits_for_the_queue_only_under_main(project: Path) -> None:
    """``main`` pauses collection until the command's queue is open (then freezes what start-up
    made); ``run``, whose caller owns the process, leaves it as it is."""
    script = """
import gc, json
from dqflow.cli import run
from dqflow.cli._app import pause_gc_until_open

assert run(["add", "ok", "-p", '{"n": 1}']) == 0
untouched = gc.isenabled() and gc.get_freeze_count() == 0
pause_gc_until_open()
paused = not gc.isenabled()
assert run(["add", "ok", "-p", '{"n": 1}']) == 0
print(json.dumps([untouched, paused, gc.isenabled(), gc.get_freeze_count() > 0]))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=project, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [True, True, True, True]


def test_a_worker_run_collects_young_objects_less_often_then_restores_the_thresholds(tmp_path: Path) -> None:
    """``dqflow run`` raises the youngest generation's threshold while its worker runs (its hot
    path makes no reference cycles) and gives the caller's thresholds back afterwards."""
    script = """
import gc, json
from dqflow.cli.worker import YOUNG_GENERATION_THRESHOLD, _worker_collection

before = gc.get_threshold()
with _worker_collection():
    during = gc.get_threshold()
print(json.dumps([before, during, gc.get_threshold(), YOUNG_GENERATION_THRESHOLD, gc.get_freeze_count() > 0]))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    before, during, after, young, frozen = json.loads(done.stdout.strip().splitlines()[-1])
    assert during == [young, *before[1:]]
    assert after == before
    assert frozen
