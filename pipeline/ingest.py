"""Stage `ingest`: decide whether and when a stored customer message is answered.

Messages of one contact that arrive within the window are one burst, answered once: only the
burst's newest message goes on, and only when its window has closed. The wait is a Defer (it costs
no attempt); its due time is also written to the contact, so the poll restarts a burst whose worker
died mid-window. An exact STOP opts the contact out here, before any model sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import cast

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from db.models import Contact, Message
from db.session import execute_core
from domain.answers import is_opt_out
from domain.batching import burst_due
from domain.states import Direction, MessageStatus
from pipeline.contacts import WHITELISTED, opt_out_contact
from pipeline.inbound import park_message
from pipeline.profile_settings import stage_message


class Action(StrEnum):
    GO = "go"  # answer now: the chain goes on
    WAIT = "wait"  # the burst's window is open
    STOP = "stop"  # nothing to answer
    NOTICE = "notice"  # send `notice_id` (the opt-out confirmation), and stop


@dataclass(frozen=True)
class IngestDecision:
    action: Action
    wait: float = 0.0
    notice_id: int | None = None
    reason: str = ""
    voice: bool = False  # GO: the burst holds a voice note still to transcribe


# Built once (a statement built per call costs about as much Python as its round trip), read as plain
# rows: the contact, locked, with its whitelist entry; the burst, the contact's unanswered messages.
CONTACT_TO_DECIDE = select(Contact.id, Contact.paused_until, Contact.batch_due_at, WHITELISTED.label("whitelisted")) \
    .where(Contact.id == bindparam("contact_id")).with_for_update(of=Contact)
BURST = select(Message.id, Message.created_at, Message.is_voice, Message.transcription).where(
    Message.contact_id == bindparam("contact_id"), Message.direction == Direction.IN,
    Message.status == MessageStatus.RECEIVED).order_by(Message.id)
SET_BATCH_DUE = update(Contact).where(Contact.id == bindparam("batched_contact")).values(
    batch_due_at=bindparam("batch_due"))


def ingest_decision(session: Session, message_id: int, now: datetime, *, window: float, max_wait: float,
                    cap: int, opt_out_text: str) -> IngestDecision:
    """Should this stored customer message be answered, and when?"""
    message = stage_message(session, message_id)
    if message is None or message.status != MessageStatus.RECEIVED or message.direction != Direction.IN:
        return IngestDecision(Action.STOP, reason="nothing to answer")
    # One ingest at a time decides a contact's burst; its whitelist entry is read in the same statement.
    contact = execute_core(session, CONTACT_TO_DECIDE, {"contact_id": message.contact_id}).one()
    if contact.whitelisted:
        park_message(session, message_id, MessageStatus.IGNORED)
        return IngestDecision(Action.STOP, reason="whitelisted")
    if is_opt_out(message.text):
        # The whole unanswered burst ends here: no sales reply after a STOP.
        notice = opt_out_contact(session, cast(Contact, session.get(Contact, contact.id)),
                                 cast(Message, session.get(Message, message_id)), opt_out_text)
        return IngestDecision(Action.NOTICE, notice_id=notice, reason="opted out")
    if contact.paused_until is not None and contact.paused_until > now:
        park_message(session, message_id, MessageStatus.PAUSED)
        return IngestDecision(Action.STOP, reason="a human is answering this contact")
    burst = execute_core(session, BURST, {"contact_id": contact.id}).all()
    if burst[-1].id != message.id:
        return IngestDecision(Action.STOP, reason="a newer message answers the burst")
    due = burst_due(burst[0].created_at, message.created_at, len(burst), window=window, max_wait=max_wait, cap=cap)
    if due > now:
        execute_core(session, SET_BATCH_DUE, {"batched_contact": contact.id, "batch_due": due})
        return IngestDecision(Action.WAIT, wait=(due - now).total_seconds())
    if contact.batch_due_at is not None:
        execute_core(session, SET_BATCH_DUE, {"batched_contact": contact.id, "batch_due": None})
    return IngestDecision(Action.GO, voice=any(item.is_voice and not item.transcription for item in burst))
