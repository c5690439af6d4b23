"""Stage `ingest`: decide whether a stored customer message goes on to be answered."""

from __future__ import annotations

from db.session import session_scope
from pipeline.conversation import accept_for_reply
from tasks.app import app
from tasks.base import MessageStageTask


@app.task(base=MessageStageTask, name="pipeline.ingest")
def ingest(message_id: int) -> int | None:
    with session_scope() as session:
        return message_id if accept_for_reply(session, message_id) else None
