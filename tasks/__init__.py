"""The pipeline's Celery app, importable as `tasks` (`celery -A tasks worker -Q send`).

Stages, one module each: poll -> ingest -> classify -> respond -> send.
"""

from __future__ import annotations

from tasks import classify, ingest, poll, recover, respond, send  # noqa: F401  - registers the tasks
from tasks.app import app

__all__ = ["app"]
