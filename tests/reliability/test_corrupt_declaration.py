"""A corrupt or truncated jobs.yaml gives a clear ConfigError, never another exception."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dqflow.declaration import load_declaration
from dqflow.errors import ConfigError
from reliability._support import TESTS

pytestmark = pytest.mark.reliability

SOURCE = TESTS / "app" / "jobs.yaml"
ORIGINAL = SOURCE.read_bytes()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with the test app's handlers, to write damaged declarations into."""
    shutil.copy(TESTS / "app" / "handlers.py", tmp_path / "handlers.py")
    return tmp_path


def load(path: Path, data: bytes) -> str:
    """'ok' or 'ConfigError'; any other exception fails the test with the damaged text."""
    path.write_bytes(data)
    try:
        load_declaration(path)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(str(path)), f"the error does not name the file: {message}"
        return "ConfigError"
    except Exception as exc:  # pragma: no cover - the failure this test looks for
        pytest.fail(f"{type(exc).__name__} (not ConfigError) for:\n{data!r}\n{exc}")
    return "ok"


def test_truncated_at_every_offset(project: Path) -> None:
    outcomes = {load(project / "jobs.yaml", ORIGINAL[:offset]) for offset in range(len(ORIGINAL) + 1)}
    assert outcomes == {"ok", "ConfigError"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    flips=st.lists(st.tuples(st.integers(0, len(ORIGINAL) - 1), st.integers(1, 255)), min_size=1, max_size=4),
    cut=st.none() | st.integers(0, len(ORIGINAL)),
)
def test_flipped_bytes(project: Path, flips: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(ORIGINAL)
    for offset, mask in flips:
        data[offset] ^= mask
    data = data[:cut]
    load(project / "jobs.yaml", bytes(data))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x00\x00", id="nul"),
        pytest.param(b"\x08" + ORIGINAL[1:], id="backspace"),
        pytest.param(ORIGINAL.replace(b"lease: 3s", b"lease: 3s\x1b"), id="escape-in-value"),
        pytest.param(b"jobs: {" + b"[" * 5000, id="deep-nesting"),
    ],
)
def test_control_characters_and_depth(project: Path, data: bytes) -> None:
    assert load(project / "jobs.yaml", data) == "ConfigError"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe\x00",
        b"jobs: [",
        b"jobs: {a: {handler: 'x:y'",
        b"- 1\n- 2\n",
        b"jobs: !!python/object/apply:os.system [echo hacked]\n",
        b"&a [*a]",
        b"\t\tjobs:",
        b"jobs: {" + b"[" * 200,
        ORIGINAL + b"\njobs: {}\n",  # a duplicate key
        ORIGINAL.replace(b"handlers:echo", b"handlers:does_not_exist"),
        ORIGINAL.replace(b"lease: 3s", b"lease: 3 seconds"),
    ],
    ids=lambda d: repr(d[:20]),
)
def test_hostile_declarations(project: Path, data: bytes) -> None:
    assert load(project / "jobs.yaml", data) == "ConfigError"


def test_self_merging_anchor_is_harmless(project: Path) -> None:
    load(project / "jobs.yaml", b"jobs:\n  a: &x\n    handler: handlers:echo\n    <<: *x\n")
