"""Sweep `recover`: restart work that no queue holds any more (say, after Redis lost its data).

Every stage is idempotent, so restarting something that was merely slow costs a no-op, never a
second message.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from db.models import Outbox
from db.session import session_scope
from pipeline.intake import stranded_messages
from tasks.app import app
from tasks.base import PipelineTask
from tasks.chains import start_conversations

log = logging.getLogger(__name__)
STRANDED_AFTER = timedelta(minutes=15)  # longer than a chain's slowest retry path
BATCH = 200


@app.task(base=PipelineTask, name="pipeline.recover")
def recover() -> int:
    from tasks.send import send

    cutoff = datetime.now(UTC) - STRANDED_AFTER
    with session_scope() as session:
        messages = stranded_messages(session, cutoff, BATCH)
        outbox = list(session.scalars(select(Outbox.id).where(
            Outbox.status.in_(("pending", "sending")), Outbox.updated_at < cutoff)
            .order_by(Outbox.id).limit(BATCH)))
    if messages or outbox:
        log.warning("recover: restarting %d stranded messages and %d unsent outbox rows",
                    len(messages), len(outbox))
    start_conversations(messages)
    for outbox_id in outbox:
        send.delay(outbox_id)
    return len(messages) + len(outbox)
