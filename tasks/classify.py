"""Stage `classify`: is this contact a lead? Leads and undecided contacts go on to `respond` (the
undecided in a clarifying tone, unless `ANSWER_UNDECIDED=false` makes them wait); the rest stop here."""

from __future__ import annotations

import logging

from clients.gemini import get_client
from db.models import Contact
from db.session import session_scope
from pipeline.classification import ask_verdict, classify_input, decide, gate, park_message, store_verdict
from pipeline.conversation import waiting_contact
from settings import get_settings
from tasks.app import app
from tasks.base import MessageStageTask
from tasks.locks import contact_turn

log = logging.getLogger(__name__)


@app.task(base=MessageStageTask, name="pipeline.classify")
def classify(message_id: int | None) -> int | None:
    if message_id is None:
        return None
    settings = get_settings()
    with session_scope() as session:
        contact_id = waiting_contact(session, message_id)
    if contact_id is None:
        return None
    with contact_turn(contact_id):
        with session_scope() as session:
            contact = session.get(Contact, contact_id)
            assert contact is not None
            if contact.is_client is True:
                return message_id
            if contact.is_client is False:
                park_message(session, message_id, "ignored")
                return None
            data = classify_input(session, contact_id, history_limit=settings.history_limit,
                                  business_name=settings.business_name)
        verdict = ask_verdict(session_scope, get_client(), data, settings.gemini_classify_model)
        decided = decide(verdict, data.inbound_count, min_messages=settings.classify_min_messages,
                         min_confidence=settings.classify_min_confidence,
                         answer_undecided=settings.answer_undecided)
        outcome = gate(decided, answer_undecided=settings.answer_undecided)
        with session_scope() as session:
            store_verdict(session, contact_id, verdict, decided)
            log.info("classify contact %s: verdict %s (confidence %s, %d messages) -> %s", contact_id,
                     verdict.is_client if verdict else "invalid", verdict.confidence if verdict else "-",
                     data.inbound_count, outcome)
            if outcome in ("answer", "clarify"):
                return message_id
            park_message(session, message_id, "ignored" if outcome == "ignore" else "waiting")
            return None
