"""Stage `ingest`: answer a stored customer message now, later (its burst's window is open), or never."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pipeline.ingest import Action, ingest_decision
from pipeline.locks import Defer
from pipeline.profile_settings import message_settings
from settings import get_settings
from tasks.app import app, enqueue_send
from tasks.base import MessageStageTask

log = logging.getLogger(__name__)


def skip_transcribe(rest: list[Any] | None) -> None:
    """Drop the `transcribe` step from the head of the chain's rest (Celery keeps it reversed: the
    next step last): a burst without voice notes has nothing for it to do, and the hop costs a queue
    round trip and a task run. The chain is built whole (tasks/chains.py), so a chain restarted by
    the recovery sweep or replayed from a dead letter decides again here."""
    if rest and isinstance(rest[-1], dict) and rest[-1].get("task") == "pipeline.transcribe":
        rest.pop()


@app.task(base=MessageStageTask, name="pipeline.ingest", bind=True)
def ingest(self: MessageStageTask, message_id: int) -> int | None:
    with self.stage_sessions(message_id)() as session:
        settings = message_settings(session, message_id, get_settings())  # its business's batch window
        decision = ingest_decision(session, message_id, datetime.now(UTC), window=settings.batch_window,
                                   max_wait=settings.batch_max_wait, cap=settings.batch_max_messages,
                                   opt_out_text=settings.opt_out_confirmation)
    if decision.action == Action.WAIT:
        raise Defer(f"message {message_id}: the burst's window is open", countdown=decision.wait)
    if decision.action == Action.NOTICE:
        enqueue_send(decision.notice_id)
        return None
    if decision.action == Action.STOP:
        log.debug("ingest message %s: %s", message_id, decision.reason)
        return None
    if not decision.voice:
        skip_transcribe(self.request.chain)
    return message_id
