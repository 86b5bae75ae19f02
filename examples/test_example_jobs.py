"""Testing the example project's handlers with dqflow's pytest plugin (docs/TESTING.md).

Run with ``pytest examples/`` (the plugin loads by itself once dqflow is installed;
``-p dqflow.testing.pytest_plugin`` names it where plugin autoloading is off).
"""

from __future__ import annotations

import pytest

from dqflow import PayloadValidationError
from dqflow.testing import ANY, MemoryQueue


def test_generate_report_returns_a_download_url(dqflow_queue: MemoryQueue) -> None:
    job_id = dqflow_queue.add("generate_report", {"reportId": "q3", "format": "csv"})
    dqflow_queue.run_until_idle()
    [record] = dqflow_queue.assert_completed(job_id)
    assert record.output["url"] == "https://reports.example.com/q3.csv"


def test_process_images_reports_progress_and_every_url(dqflow_queue: MemoryQueue) -> None:
    dqflow_queue.add("process_images", {"images": ["a.jpg", "b.jpg"]})
    dqflow_queue.run_until_idle()
    urls = ["https://cdn.example.com/resized/a.jpg", "https://cdn.example.com/resized/b.jpg"]
    [record] = dqflow_queue.assert_completed("process_images", output={"processedUrls": urls})
    assert record.progress == 100


def test_welcome_emails_are_queued_then_sent(dqflow_queue: MemoryQueue) -> None:
    dqflow_queue.add("send_welcome_email", {"to": "ada@example.com", "name": "Ada"})
    dqflow_queue.assert_enqueued("send_welcome_email", {"to": "ada@example.com", "name": "Ada"}, status="pending")
    dqflow_queue.run_until_idle()
    dqflow_queue.assert_completed("send_welcome_email", output=ANY)
    dqflow_queue.assert_enqueued("send_welcome_email", count=1, status="completed")


def test_a_bad_payload_is_refused_before_anything_is_queued(dqflow_queue: MemoryQueue) -> None:
    with pytest.raises(PayloadValidationError, match="to"):
        dqflow_queue.add("send_welcome_email", {"to": "not an address", "name": "Ada"})
    dqflow_queue.assert_enqueued("send_welcome_email", count=0)
