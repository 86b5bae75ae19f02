"""Celery canvas for ``benchmarks/workflows.py``: the same step handler as dqflow's, on Redis.

Broker and result backend are both Redis (``$DQBENCH_CELERY_URL``). The worker runs
in its own process, started by ``workflows.py``::

    celery -A celery_canvas worker --pool threads --concurrency 16
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

URL = os.environ.get("DQBENCH_CELERY_URL", "redis://127.0.0.1:6379/12")
QUEUE = os.environ.get("DQBENCH_CELERY_QUEUE", "dqbench")

app = Celery("celery_canvas", broker=URL, backend=URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=600,
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.step")
def step(payload: dict[str, Any]) -> dict[str, Any]:
    """dqflow's benchmark step: ``{"n": n}`` → ``{"n": n}``."""
    return {"n": payload["n"]}


@app.task(name="bench.collect")
def collect(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fan-in: every output's ``n``, counted."""
    return {"count": len([o["n"] for o in outputs])}
