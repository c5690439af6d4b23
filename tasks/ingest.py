"""Stage `ingest`: decide whether and when a stored customer message is answered.

A burst of messages is answered once: ingest waits (a Defer, which costs no attempt) until the
burst's window closes; the timer is also written to the contact, so the poll restarts a burst
whose worker died mid-window.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from db.session import session_scope
from pipeline.conversation import ingest_decision
from settings import get_settings
from tasks.app import app
from tasks.base import Defer, MessageStageTask

log = logging.getLogger(__name__)


@app.task(base=MessageStageTask, name="pipeline.ingest")
def ingest(message_id: int) -> int | None:
    settings = get_settings()
    with session_scope() as session:
        decision = ingest_decision(session, message_id, datetime.now(UTC), window=settings.batch_window,
                                   max_wait=settings.batch_max_wait, cap=settings.batch_max_messages,
                                   opt_out_text=settings.opt_out_confirmation)
    if decision.action == "wait":
        raise Defer(f"message {message_id}: the burst's window is open", countdown=decision.wait)
    if decision.action == "notice":
        from tasks.send import send

        if decision.notice_id is not None:
            send.delay(decision.notice_id)
        return None
    if decision.action == "stop":
        log.debug("ingest message %s: %s", message_id, decision.reason)
        return None
    return message_id
