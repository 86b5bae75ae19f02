"""Type-check a small user module with mypy --strict or pyright, the way a user's CI would."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MYPY_CACHE = REPO / ".mypy_cache" / "user-modules"  # warm across runs: dqflow itself is analysed once


def mypy(folder: Path, *files: str) -> subprocess.CompletedProcess[str]:
    """``mypy --strict FILES`` in ``folder`` (dqflow found on PYTHONPATH, as installed)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(REPO)]), "MYPYPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir", str(MYPY_CACHE), *files],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def pyright(folder: Path, *files: str) -> subprocess.CompletedProcess[str]:
    """``pyright`` in strict mode on ``files`` (with the venv's packages and dqflow)."""
    exe = shutil.which("pyright", path=str(Path(sys.executable).parent)) or "pyright"
    config = {
        "typeCheckingMode": "strict",
        "extraPaths": [str(REPO)],
        "venvPath": str(Path(sys.prefix).parent),
        "venv": Path(sys.prefix).name,
    }
    (folder / "pyrightconfig.json").write_text(json.dumps(config))
    return subprocess.run([exe, *files], cwd=folder, capture_output=True, text=True, timeout=600)


def errors_outside(output: str, expected_in: str) -> list[str]:
    """The lines of a mypy or pyright report that name a problem in a file other than ``expected_in``."""
    problem = re.compile(r"(^|/|\s)(?P<file>[\w.-]+\.py):\d+(:\d+)?(: | - )(error|warning)")
    return [
        line
        for line in output.splitlines()
        if (found := problem.search(line)) is not None and found.group("file") != expected_in
    ]
