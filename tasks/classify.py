"""Stage `classify`: is this contact a lead? Leads and undecided contacts go on to `respond` (the
undecided in a clarifying tone, unless `ANSWER_UNDECIDED=false` makes them wait); the rest stop here."""

from __future__ import annotations

from clients.gemini import get_client
from pipeline.classify import run_classify
from settings import get_settings
from tasks.app import app
from tasks.base import MessageStageTask


@app.task(base=MessageStageTask, name="pipeline.classify", bind=True)
def classify(self: MessageStageTask, message_id: int | None) -> int | None:
    if message_id is None:
        return None
    return run_classify(self.stage_sessions(message_id), get_client(), message_id, get_settings())
