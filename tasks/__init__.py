"""The pipeline's Celery app, importable as `tasks` (`celery -A tasks worker -Q send`).

Stages, one module each: poll -> ingest -> transcribe -> classify -> respond -> send, and the
follow-up sweep.
"""

from __future__ import annotations

from tasks import classify, followup, ingest, poll, recover, respond, send, transcribe  # noqa: F401  - registers the tasks
from tasks.app import app

__all__ = ["app"]
