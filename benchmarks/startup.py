"""How long dqflow's commands take to start and finish, for two or more source trees side by side.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/startup.py --tree then=/path/to/old/tree --tree now=.
    ... --runs 7 --command help="--help" --command add="add generate_report -p '{\"reportId\": \"q3\"}'"

Each tree's own example project (``jobs.yaml``, ``schemas/``, ``examples/``) is copied into
a temporary folder (``--project DIR`` uses one project for every tree instead). Each
command then runs as a user runs it: the console script ``dqflow`` beside ``--python``
(the same interpreter and installed packages for every tree), with ``PYTHONPATH`` set to
the tree, in the project's folder, on a fresh SQLite file (``DQFLOW_BACKEND``, a new file
per run). Bytecode is written under the temporary folder (``PYTHONPYCACHEPREFIX``), never
into the trees, and one untimed run of each command per tree first writes it, so that
no tree pays for compiling its sources (an installed package has its bytecode); then
``--runs`` rounds, each running every command once per tree, the trees' order rotated
from round to round, so that load on the machine falls on every tree alike. Prints a
table of median wall times (min-max), each tree's ratio to the first, and the load average.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import loadavg

DEFAULT_COMMANDS = {
    "help": "--help",
    "add": """add generate_report --payload '{"reportId": "q3"}'""",
}
PROJECT_PARTS = ("jobs.yaml", "schemas", "examples")


@dataclass
class Tree:
    """One source tree under test and its copy of the example project."""

    label: str
    source: Path
    project: Path
    times_ms: dict[str, list[float]] = field(default_factory=dict)
    cpu_ms: dict[str, list[float]] = field(default_factory=dict)


def parse_pair(text: str, what: str) -> tuple[str, str]:
    label, sep, value = text.partition("=")
    if not sep or not label or not value:
        raise SystemExit(f"error: {what} {text!r}: expected LABEL=VALUE")
    return label, value


def copy_project(source: Path, into: Path) -> Path:
    """The example project of ``source`` (its jobs.yaml, schemas and handlers) copied into ``into``."""
    into.mkdir(parents=True)
    for part in PROJECT_PARTS:
        path = source / part
        if path.is_dir():
            shutil.copytree(path, into / part, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.is_file():
            shutil.copy2(path, into / part)
    if not (into / "jobs.yaml").is_file():
        raise SystemExit(f"error: {source}: no jobs.yaml (give --project DIR)")
    return into


def environment(tree: Tree, database: Path) -> dict[str, str]:
    """The command's environment: the tree on the path, bytecode cached (as an installed package has it)
    under the project's folder rather than in the tree, no ``DQFLOW_*`` setting but the backend."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DQFLOW_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(tree.source)
    env["PYTHONPYCACHEPREFIX"] = str(tree.project / ".pycache")
    env["DQFLOW_BACKEND"] = f"sqlite:///{database}"
    return env


def check_resolves(python: Path, tree: Tree) -> None:
    """Refuse to measure a tree whose ``dqflow`` is not the one imported (an installed copy first on the path)."""
    done = subprocess.run(
        [str(python), "-c", "import dqflow; print(dqflow.__file__)"],
        cwd=tree.project,
        env=environment(tree, tree.project / "unused.db"),
        capture_output=True,
        text=True,
        check=True,
    )
    imported = Path(done.stdout.strip()).resolve()
    if not imported.is_relative_to(tree.source):
        raise SystemExit(f"error: tree {tree.label}: dqflow imports from {imported}, not from {tree.source}")


def child_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(script: Path, tree: Tree, args: list[str], database: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) time of one command in ms; a command that fails stops the
    benchmark with its stderr."""
    database.unlink(missing_ok=True)
    cpu = child_cpu_s()
    start = time.perf_counter()
    done = subprocess.run(
        [str(script), *args],
        cwd=tree.project,
        env=environment(tree, database),
        capture_output=True,
        text=True,
    )
    elapsed = (time.perf_counter() - start) * 1000
    cpu_used = (child_cpu_s() - cpu) * 1000
    if done.returncode != 0:
        raise SystemExit(
            f"error: tree {tree.label}: `dqflow {shlex.join(args)}` exited {done.returncode}:\n{done.stderr}"
        )
    return elapsed, cpu_used


def table(trees: list[Tree], commands: dict[str, list[str]]) -> str:
    """Per command: each tree's median wall ms (min-max), its ratio to the first tree, the same for CPU ms."""
    baseline = trees[0]
    head = [
        "command",
        "time",
        *(f"{t.label} ms (min-max)" for t in trees),
        *(f"{t.label}/{baseline.label}" for t in trees[1:]),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in commands:
        for kind in ("wall", "cpu"):
            runs = [t.times_ms[name] if kind == "wall" else t.cpu_ms[name] for t in trees]
            medians = [statistics.median(r) for r in runs]
            cells = [f"{m:,.0f} ({min(r):,.0f}-{max(r):,.0f})" for m, r in zip(medians, runs, strict=True)]
            ratios = [f"{m / medians[0]:.2f}x" for m in medians[1:]]
            lines.append("| " + " | ".join([f"`dqflow {name}`", kind, *cells, *ratios]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", required=True, help="LABEL=PATH; the first is the baseline")
    parser.add_argument("--command", action="append", help="NAME=ARGS (shell words); default: help and add")
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each command per tree (default 7)")
    parser.add_argument("--python", type=Path, default=Path(sys.executable), help="interpreter whose `dqflow` to run")
    parser.add_argument("--project", type=Path, help="one example project for every tree (default: each tree's own)")
    options = parser.parse_args()
    if len(options.tree) < 2 or options.runs < 1:
        parser.error("give at least two --tree and --runs >= 1")
    script = options.python.parent / "dqflow"
    if not script.is_file():
        parser.error(f"no console script {script} beside {options.python}")
    pairs = [parse_pair(c, "--command") for c in options.command] if options.command else DEFAULT_COMMANDS.items()
    commands = {name: shlex.split(args) for name, args in pairs}

    with tempfile.TemporaryDirectory(prefix="dqflow-startup-") as tmp:
        trees = []
        for index, text in enumerate(options.tree):
            label, path = parse_pair(text, "--tree")
            source = Path(path).resolve()
            project = copy_project(options.project or source, Path(tmp) / f"{index}-{label}")
            trees.append(Tree(label, source, project, {n: [] for n in commands}, {n: [] for n in commands}))
        for tree in trees:
            check_resolves(options.python, tree)
            for args in commands.values():
                run_once(script, tree, args, tree.project / "warm-up.db")
        load_before = loadavg()
        for round_ in range(options.runs):
            for name, args in commands.items():
                shift = round_ % len(trees)
                for tree in trees[shift:] + trees[:shift]:
                    database = tree.project / f"run-{round_}-{name}.db"
                    wall, cpu = run_once(script, tree, args, database)
                    tree.times_ms[name].append(wall)
                    tree.cpu_ms[name].append(cpu)
        print(f"medians of {options.runs} runs, interleaved; `{script}`, PYTHONPATH=each tree")
        for tree in trees:
            print(f"- {tree.label}: {tree.source} (project: {options.project or 'its own'})")
        print(table(trees, commands))
        print(f"load average before: {load_before}, after: {loadavg()}")


if __name__ == "__main__":
    main()
