"""Stage `respond`: the sales agent writes the answer (and maybe books a call) into the outbox; the
chain's `send` delivers it."""

from __future__ import annotations

from clients.gemini import get_client
from db.session import session_scope
from pipeline.respond import run_respond
from settings import get_settings
from tasks.app import app
from tasks.base import MessageStageTask


@app.task(base=MessageStageTask, name="pipeline.respond")
def respond(message_id: int | None) -> int | None:
    if message_id is None:
        return None
    return run_respond(session_scope, get_client(), message_id, get_settings())
