"""Fixtures for the HTTP tests: one real ``dqflow serve`` per backend and test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from backends import BACKEND_KINDS, backend_url
from http_server import HTTP_APP, Server, serve

from dqflow import Queue


@pytest.fixture(scope="module", params=BACKEND_KINDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``dqflow serve`` with read and write tokens, on each backend in turn."""
    folder = tmp_path_factory.mktemp(f"serve-{request.param}")
    with backend_url(request.param, folder) as url, serve(url, folder / "serve.log") as running:
        yield running


@pytest.fixture
def queue(server: Server) -> Iterator[Queue]:
    """A queue in the test process on the server's backend (handlers imported: in-process workers)."""
    with Queue.from_yaml(HTTP_APP, backend=server.backend) as opened:
        yield opened
