"""Handlers for the job types in ``jobs.yaml``.

A handler is ``(payload, ctx)`` (``ctx`` is optional). Its payload has already
been validated against the job type's payload schema; what it returns (or
passes to ``ctx.set_output``) is validated against the output schema.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from dqflow import JobContext

# -- generate_report: store output by returning it --------------------------------------


class ReportOutput(BaseModel):
    """The output of ``generate_report``, for ``job.output_as(ReportOutput)``."""

    url: str
    generatedAt: datetime


def generate_report(payload: dict[str, Any]) -> dict[str, str]:
    """Pretend to render a report; the returned dict becomes the job's output."""
    time.sleep(0.05)  # the real work would go here
    url = f"https://reports.example.com/{payload['reportId']}.{payload.get('format', 'pdf')}"
    return {"url": url, "generatedAt": datetime.now(UTC).isoformat()}


# -- process_images: progress and output while it runs -------------------------------


def process_image(image: str) -> str:
    """Pretend to resize one image and return where the result lives."""
    time.sleep(0.02)
    return f"https://cdn.example.com/resized/{image}"


def process_images(payload: dict[str, Any], ctx: JobContext) -> None:
    """Like the seed's ``process_images``: progress and output after each image.

    ``set_output`` wins over the return value (None here), and the last call wins.
    """
    results: list[str] = []
    for image in payload["images"]:
        if ctx.cancelled:  # cancelled from outside, or timed out
            return
        results.append(process_image(image))
        ctx.set_progress(round(len(results) / len(payload["images"]) * 100))
        ctx.set_output({"processedUrls": results})


# -- send_welcome_email: async, with a pydantic-typed payload ---------------------------


class WelcomeEmail(BaseModel):
    """The payload of ``send_welcome_email``, handed to the handler already parsed."""

    to: str
    name: str


async def send_welcome_email(payload: WelcomeEmail) -> dict[str, str]:
    """An ``async def`` handler: runs on the worker's event loop."""
    await asyncio.sleep(0.01)  # e.g. await an HTTP call to the mail provider
    return {"messageId": uuid.uuid4().hex, "sentTo": payload.to}


# -- the publish_album workflow: fetch_album → resize_image (one per image) → publish_page --


def fetch_album(payload: dict[str, Any]) -> dict[str, Any]:
    """Pretend to look an album up; its images feed the ``resize`` step's ``for_each``."""
    album = payload["albumId"]
    images = [{"url": f"https://img.example.com/{album}/{n}.jpg", "width": 3000 + 100 * n} for n in range(1, 4)]
    return {"albumId": album, "title": f"Album {album}", "images": images}


def resize_image(payload: dict[str, Any]) -> dict[str, Any]:
    """Pretend to resize one image; one job runs per element of the fetched images."""
    time.sleep(0.01)
    name = payload["url"].rsplit("/", 2)
    width = payload["width"]
    return {"url": f"https://cdn.example.com/{width}/{name[-2]}-{name[-1]}", "width": width, "bytes": width * 120}


def publish_page(payload: dict[str, Any]) -> dict[str, Any]:
    """Pretend to publish a page; ``imageUrls`` are the resize outputs, in image order (fan-in)."""
    return {"pageUrl": f"https://albums.example.com/{payload['albumId']}", "imageCount": len(payload["imageUrls"])}
