"""Stage `classify`: is this contact a lead? Leads and undecided contacts go on to `respond` (the
undecided in a clarifying tone, unless `ANSWER_UNDECIDED=false` makes them wait); the rest stop here."""

from __future__ import annotations

from clients.gemini import get_client
from db.session import session_scope
from pipeline.classify import run_classify
from settings import get_settings
from tasks.app import app
from tasks.base import MessageStageTask


@app.task(base=MessageStageTask, name="pipeline.classify")
def classify(message_id: int | None) -> int | None:
    if message_id is None:
        return None
    return run_classify(session_scope, get_client(), message_id, get_settings())
