"""Stage `respond`: the sales agent writes the answer (and maybe books a call) into the outbox; the
chain's `send` delivers it."""

from __future__ import annotations

from clients.gemini import get_client
from pipeline.respond import run_respond
from settings import get_settings
from tasks.app import app
from tasks.base import MessageStageTask


@app.task(base=MessageStageTask, name="pipeline.respond", bind=True)
def respond(self: MessageStageTask, message_id: int | None) -> int | None:
    if message_id is None:
        return None
    return run_respond(self.stage_sessions(message_id), get_client(), message_id, get_settings())
