"""The Celery application, configured from `celeryconfig` (which reads the one settings object)."""

from __future__ import annotations

import sys
from typing import Any

from celery import Celery, signals

from infra import kombu_patch
from infra.logging import configure_from_settings
from prompts import load_all
from settings import SettingsError, get_settings

try:
    get_settings()
except SettingsError as exc:  # a clean message naming the setting, not a traceback
    sys.exit(str(exc))

kombu_patch.apply(get_settings().redis_url)

app = Celery("tasks")
app.config_from_object("celeryconfig")


@signals.setup_logging.connect
def _setup_logging(**_kwargs: object) -> None:
    """Our JSON logs for workers and beat (connecting here stops Celery's own set-up)."""
    configure_from_settings()


@signals.worker_process_init.connect
def _check_prompts(**_kwargs: object) -> None:
    """A missing prompt file or placeholder stops the worker, naming both."""
    load_all()


def enqueue_send(outbox_id: int | None, *, queue: str | None = None, producer: Any = None) -> None:
    """Send a row written by a transaction that has committed, by task name (celeryconfig routes it),
    so a stage that writes to the outbox needs no import of the `send` stage. Follow-up touches go
    on their own queue (`followup`), so a live reply never waits behind thousands of them."""
    if outbox_id is not None:
        app.send_task("pipeline.send", args=(outbox_id,), queue=queue, producer=producer)
