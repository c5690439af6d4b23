"""Delivery: move one outbox row pending -> sending -> sent, and never send it twice.

A row found in `sending` means an earlier attempt may have reached Wappi without us learning the
outcome (a timeout, a killed worker). Before sending again, the chat's recent history is checked
for our message with that text; if it is there, the row is marked sent instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from clients.wappi import SendResult, WappiClient, WappiNotFoundError
from db.models import Contact, Message, Outbox, utcnow
from db.session import insert_ignore
from pipeline.contacts import note_message

log = logging.getLogger(__name__)

RECONCILE_WINDOW = timedelta(minutes=30)
RECONCILE_DEPTH = 50


@dataclass(frozen=True)
class Claim:
    outbox_id: int
    body: str
    chat_id: str
    phone: str
    reply_to: str | None
    created_at: datetime
    was_sending: bool  # an earlier attempt may have reached Wappi


def claim(session: Session, outbox_id: int) -> Claim | None:
    """Take the row for sending. None if it is already sent, failed for good, or missing."""
    row = session.get(Outbox, outbox_id)
    if row is None:
        log.warning("send: outbox row %s does not exist", outbox_id)
        return None
    if row.status not in ("pending", "sending"):
        return None
    was_sending = row.status == "sending"
    session.execute(update(Outbox).where(Outbox.id == outbox_id).values(
        status="sending", attempts=Outbox.attempts + 1, updated_at=utcnow()))
    contact = session.get(Contact, row.contact_id)
    assert contact is not None
    return Claim(outbox_id=row.id, body=row.body, chat_id=contact.chat_id, phone=contact.phone,
                 reply_to=row.reply_to_provider_id, created_at=row.created_at, was_sending=was_sending)


def find_delivered(wappi: WappiClient, item: Claim) -> SendResult | None:
    """Our earlier copy of this message in the chat, if Wappi has it."""
    since = int((item.created_at - timedelta(seconds=5)).timestamp())
    for message in wappi.get_messages(item.chat_id, limit=RECONCILE_DEPTH):
        if message.from_me and message.text.strip() == item.body.strip() and message.time >= since:
            return SendResult(message_id=message.id, task_id="", time=message.time)
    return None


def deliver(wappi: WappiClient, item: Claim) -> SendResult:
    if item.was_sending:
        found = find_delivered(wappi, item)
        if found is not None:
            log.info("send: outbox %s was already delivered as %s; not sending again",
                     item.outbox_id, found.message_id)
            return found
    if item.reply_to:
        try:
            return wappi.reply(item.reply_to, item.body)
        except WappiNotFoundError:
            log.info("send: quoted message of outbox %s is gone; sending without a quote", item.outbox_id)
    return wappi.send_message(item.phone, item.body)


def mark_sent(session: Session, outbox_id: int, result: SendResult) -> None:
    row = session.get(Outbox, outbox_id)
    assert row is not None
    now = datetime.now(UTC)
    # Wappi's clock, like the customer messages' times, so the conversation sorts right.
    sent_at = datetime.fromtimestamp(result.time, UTC) if result.time else now
    session.execute(update(Outbox).where(Outbox.id == outbox_id).values(
        status="sent", provider_message_id=result.message_id, sent_at=now, error=None, updated_at=now))
    # The poll may have stored our message already (it sees it in the chat): that row stays.
    insert_ignore(session, Message, {
        "profile_id": row.profile_id, "contact_id": row.contact_id,
        "provider_message_id": result.message_id, "direction": "out", "author": "bot",
        "type": "chat", "text": row.body, "status": "sent", "sent_at": sent_at,
    }, ["profile_id", "provider_message_id"])
    contact = session.get(Contact, row.contact_id)
    if contact is not None:
        note_message(session, contact, "bot", sent_at)
        if row.kind == "reply" and contact.last_author == "bot":
            contact.awaiting_follow_up = True  # the follow-up sweep watches this silence


def mark_failed(session: Session, outbox_id: int, error: str) -> None:
    session.execute(update(Outbox).where(Outbox.id == outbox_id, Outbox.status != "sent").values(
        status="failed", error=error[:2000], updated_at=utcnow()))


def reset_for_replay(session: Session, outbox_id: int) -> None:
    """A failed row goes back to `sending`, so the replayed send reconciles before sending."""
    session.execute(update(Outbox).where(Outbox.id == outbox_id, Outbox.status == "failed").values(
        status="sending", error=None, updated_at=utcnow()))
