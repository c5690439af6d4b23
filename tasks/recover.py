"""Stage `recover`: every minute, restart the messages and outbox rows nothing holds any more."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from db.session import session_scope
from pipeline.recover import stranded_messages, stranded_outbox
from settings import get_settings
from tasks.app import app, enqueue_send
from tasks.base import PipelineTask
from tasks.chains import start_conversations

log = logging.getLogger(__name__)


@app.task(base=PipelineTask, name="pipeline.recover")
def recover(now: datetime | None = None) -> int:
    """`now` is for tests (called directly); the beat schedule passes nothing."""
    settings = get_settings()
    now = now or datetime.now(UTC)
    with session_scope() as session:
        messages = stranded_messages(session, now, settings)
    with session_scope() as session:
        outbox = stranded_outbox(session, now, settings)
    if messages or outbox:
        log.warning("recover: restarting %d stranded messages and %d unsent outbox rows",
                    len(messages), len(outbox))
    start_conversations(messages)
    for outbox_id in outbox:
        enqueue_send(outbox_id)
    return len(messages) + len(outbox)
