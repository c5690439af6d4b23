"""The conversation stages' logic: decide whether a stored message is answered, and write the answer.

The model is called outside any transaction; the decision to send is then written to the outbox
in the same transaction that marks the customer message answered, so it happens exactly once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from clients.gemini import Answer, GeminiClient
from db.models import Contact, Message, ModelUsage, Outbox
from db.session import insert_ignore
from prompts import render

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Turn:
    role: str  # "user" | "model"
    text: str


def reply_key(message_id: int) -> str:
    return f"reply:{message_id}"


def accept_for_reply(session: Session, message_id: int) -> bool:
    """Ingest: is this stored message one the assistant should answer now?"""
    message = session.get(Message, message_id)
    if message is None:
        log.warning("ingest: message %s does not exist", message_id)
        return False
    return message.status == "received" and message.direction == "in"


def conversation_turns(session: Session, contact_id: int, limit: int) -> list[Turn]:
    """The contact's last `limit` messages, oldest first, as model turns. This contact's only."""
    rows = session.scalars(select(Message).where(Message.contact_id == contact_id)
                           .order_by(Message.sent_at.desc(), Message.id.desc()).limit(limit)).all()
    turns: list[Turn] = []
    for row in reversed(rows):
        text = row.transcription or row.text
        if not text:
            continue
        turns.append(Turn(role="user" if row.direction == "in" else "model", text=text))
    return turns


def to_contents(turns: list[Turn]) -> list[dict[str, Any]]:
    """Gemini multi-turn contents; consecutive turns of one role are merged into one content."""
    contents: list[dict[str, Any]] = []
    for turn in turns:
        if contents and contents[-1]["role"] == turn.role:
            contents[-1]["parts"].append({"text": turn.text})
        else:
            contents.append({"role": turn.role, "parts": [{"text": turn.text}]})
    while contents and contents[0]["role"] != "user":
        contents.pop(0)  # a conversation given to the model starts with the customer
    return contents


@dataclass(frozen=True)
class ReplyContext:
    message_id: int
    contact_id: int
    profile_id: int
    provider_message_id: str
    system_instruction: str
    contents: list[dict[str, Any]]


def reply_context(session: Session, message_id: int, *, history_limit: int, business_name: str,
                  current_datetime: str) -> ReplyContext | None:
    """What the model needs to answer `message_id`, or None if it needs no answer any more."""
    message = session.get(Message, message_id)
    if message is None or message.status != "received":
        return None
    contact = session.get(Contact, message.contact_id)
    assert contact is not None
    contents = to_contents(conversation_turns(session, contact.id, history_limit))
    if not contents:
        return None
    system_instruction = render("sales_agent", contact_name=contact.display_name or "клиент",
                                business_name=business_name, current_datetime=current_datetime)
    return ReplyContext(message_id=message.id, contact_id=contact.id, profile_id=message.profile_id,
                        provider_message_id=message.provider_message_id,
                        system_instruction=system_instruction, contents=contents)


def generate_reply(gemini: GeminiClient, context: ReplyContext) -> Answer:
    return gemini.generate(context.contents, system_instruction=context.system_instruction)


def record_usage(session: Session, purpose: str, answer: Answer, contact_id: int | None) -> None:
    session.add(ModelUsage(purpose=purpose, model=answer.model, contact_id=contact_id,
                           prompt_tokens=answer.usage.prompt_tokens,
                           output_tokens=answer.usage.output_tokens,
                           total_tokens=answer.usage.total_tokens))


def commit_reply(session: Session, context: ReplyContext, answer: Answer) -> int | None:
    """Write the reply to the outbox and mark the message answered, atomically. Returns the
    outbox id; a second run for the same message returns the first run's row and writes nothing."""
    claimed = session.execute(update(Message).where(
        Message.id == context.message_id, Message.status == "received").values(status="answered"))
    key = reply_key(context.message_id)
    if claimed.rowcount == 1:  # type: ignore[attr-defined]  # CursorResult of an UPDATE
        # Earlier unanswered messages of this contact were in the model's context: this reply
        # answers them too, so their own chains stop instead of answering out of order.
        session.execute(update(Message).where(
            Message.contact_id == context.contact_id, Message.status == "received",
            Message.id < context.message_id).values(status="answered"))
        record_usage(session, "reply", answer, context.contact_id)
        insert_ignore(session, Outbox, {
            "profile_id": context.profile_id, "contact_id": context.contact_id,
            "idempotency_key": key, "kind": "reply", "body": answer.text,
            "reply_to_provider_id": context.provider_message_id,
            "source_message_id": context.message_id, "status": "pending",
        }, ["idempotency_key"])
    return session.scalars(select(Outbox.id).where(Outbox.idempotency_key == key)).first()
