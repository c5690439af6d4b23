"""The pipeline's Celery app, importable as `tasks` (`celery -A tasks worker -Q send`).

Stages, one module each: poll -> ingest -> transcribe -> classify -> respond -> send, and the
follow-up sweep.
"""

from __future__ import annotations

# First: the app checks the settings and exits with a message naming a missing one, before any
# stage module (which reads the stages' time limits from celeryconfig) is imported.
from tasks.app import app

# isort: split
from tasks import (  # noqa: F401  - registers the tasks
    classify,
    followup,
    health_samples,
    ingest,
    poll,
    recover,
    respond,
    send,
    transcribe,
)

__all__ = ["app"]
