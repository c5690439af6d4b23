"""Stage `ingest`: answer a stored customer message now, later (its burst's window is open), or never."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from db.session import session_scope
from pipeline.ingest import Action, ingest_decision
from pipeline.locks import Defer
from pipeline.profile_settings import message_settings
from settings import get_settings
from tasks.app import app, enqueue_send
from tasks.base import MessageStageTask

log = logging.getLogger(__name__)


@app.task(base=MessageStageTask, name="pipeline.ingest")
def ingest(message_id: int) -> int | None:
    with session_scope() as session:
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
    return message_id
