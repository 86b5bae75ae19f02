"""The dqflow pytest plugin (entry point ``pytest11``): the ``dqflow_queue`` fixture.

``dqflow_queue`` is a fresh ``MemoryQueue`` per test, built from the
``dqflow_declaration`` fixture: override that one to choose the declaration
(default: ``$DQFLOW_CONFIG``, else the ``jobs.yaml`` at pytest's root directory).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from dqflow.testing import DeclarationSource, MemoryQueue


@pytest.fixture
def dqflow_declaration(request: pytest.FixtureRequest) -> DeclarationSource:
    """What ``dqflow_queue`` is built from (a path, a ``Declaration`` or a ``jobs`` mapping)."""
    if os.environ.get("DQFLOW_CONFIG", "").strip():
        return None
    return request.config.rootpath / "jobs.yaml"


@pytest.fixture
def dqflow_queue(dqflow_declaration: DeclarationSource) -> Iterator[MemoryQueue]:
    """A ``MemoryQueue`` for one test: in memory, closed (and gone) after it."""
    with MemoryQueue(dqflow_declaration) as queue:
        yield queue
