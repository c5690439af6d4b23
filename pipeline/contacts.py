"""Contacts: one row per chat partner, with the summary of its chat the later stages rely on, its
whitelist entry, and its opt-out."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Update, bindparam, case, or_, select, update
from sqlalchemy.orm import Session

from db.models import Contact, FollowUp, Message, WhitelistEntry, utcnow
from db.session import execute_core, insert_ignore
from domain.answers import short_answer
from domain.phones import normalize_phone
from domain.states import Author, Direction, FollowUpStatus, MessageStatus, OutboxKind, StopReason
from domain.text import clean_text
from pipeline.outbox import opt_out_key, write_outbox
from pipeline.profile_settings import forget_stage_message, stage_message

NAME_CHARS = 200  # the name columns of `contacts`


CONTACT_BY_PHONE = select(Contact).where(Contact.profile_id == bindparam("contact_profile"),
                                         Contact.phone == bindparam("contact_phone"))


def upsert_contact(session: Session, profile_id: int, phone: str, chat_id: str, *,
                   first_name: str = "", full_name: str = "", push_name: str = "",
                   business_name: str = "") -> Contact:
    insert_ignore(session, Contact, {"profile_id": profile_id, "phone": phone, "chat_id": chat_id},
                  ["profile_id", "phone"])
    contact = session.scalars(CONTACT_BY_PHONE, {"contact_profile": profile_id, "contact_phone": phone}).one()
    # Wappi omits name fields it doesn't know; never blank out a name we had. Names are the
    # customer's text: control characters out, cut to the column.
    for attribute, raw in (("first_name", first_name), ("full_name", full_name),
                           ("push_name", push_name), ("business_name", business_name)):
        value = clean_text(raw)[:NAME_CHARS].strip()
        if value and getattr(contact, attribute) != value:
            setattr(contact, attribute, value)
    return contact


def note_message(session: Session, contact: Contact, author: Author, sent_at: datetime, *, text: str = "",
                 history: bool = False, human_pause: timedelta | None = None) -> None:
    """Keep the contact's summary of its chat current, and stop follow-ups the message ends."""
    if contact.last_message_at is None or sent_at >= contact.last_message_at:
        contact.last_message_at = sent_at
        contact.last_author = author
    if author == Author.PHONE and not history and human_pause is not None:
        # Someone answered from the business's phone: the bot steps back for this contact.
        until = sent_at + human_pause
        if contact.paused_until is None or contact.paused_until < until:
            contact.paused_until = until
        contact.awaiting_follow_up = False
        stop_follow_ups(session, contact.id, StopReason.HUMAN_REPLIED)
    if author == Author.CUSTOMER and not history:
        contact.last_inbound_at = max(sent_at, contact.last_inbound_at or sent_at)
        contact.awaiting_follow_up = False
        meaning = short_answer(text)
        reason = {"yes": StopReason.CLIENT_SAID_YES, "no": StopReason.CLIENT_SAID_NO}.get(
            meaning or "", StopReason.CLIENT_RESPONDED)
        stop_follow_ups(session, contact.id, reason)


def _bot_message_update(starts_silence: bool) -> Update:
    newest = or_(Contact.last_message_at.is_(None), Contact.last_message_at <= bindparam("sent_at"))
    values: dict[str, Any] = {
        "last_message_at": case((newest, bindparam("sent_at")), else_=Contact.last_message_at),
        "last_author": case((newest, Author.BOT.value), else_=Contact.last_author),
        "updated_at": bindparam("now"),
    }
    if starts_silence:
        values["awaiting_follow_up"] = case((or_(newest, Contact.last_author == Author.BOT.value), True),
                                            else_=Contact.awaiting_follow_up)
    return (update(Contact).where(Contact.id == bindparam("contact_id")).values(**values)
            .execution_options(synchronize_session=False))


# Built once, with and without the follow-up silence (a statement built per call costs about as much
# Python as its round trip).
BOT_MESSAGE_UPDATES = {starts: _bot_message_update(starts) for starts in (False, True)}


def note_bot_message(session: Session, contact_id: int, sent_at: datetime, *, starts_silence: bool) -> None:
    """`note_message` for a message the bot sent, as one UPDATE (no read of the contact first): the
    summary moves to it when it is the chat's newest; with `starts_silence` (a reply), the contact
    then awaits a follow-up when the bot has the last word. SET expressions read the row as it was."""
    execute_core(session, BOT_MESSAGE_UPDATES[starts_silence],
                    {"contact_id": contact_id, "sent_at": sent_at, "now": utcnow()})


# Built once: every customer message sends it (a statement built per call costs more Python than its
# round trip). FollowUp objects already in the session keep their old status.
STOP_FOLLOW_UPS = update(FollowUp).where(
    FollowUp.contact_id == bindparam("stopped_contact"), FollowUp.status == FollowUpStatus.ACTIVE).values(
    status=FollowUpStatus.STOPPED, stop_reason=bindparam("reason"), next_touch_at=None)


def stop_follow_ups(session: Session, contact_id: int, reason: StopReason) -> int:
    """Stop the contact's active follow-up chain for good; returns how many were stopped."""
    result = execute_core(session, STOP_FOLLOW_UPS, {"stopped_contact": contact_id, "reason": reason})
    return int(result.rowcount or 0)


def is_whitelisted(session: Session, profile_id: int, phone: str) -> bool:
    return session.scalar(select(WhitelistEntry.id).where(WhitelistEntry.profile_id == profile_id,
                                                          WhitelistEntry.phone == phone)) is not None


WHITELISTED = select(WhitelistEntry.id).where(WhitelistEntry.profile_id == Contact.profile_id,
                                              WhitelistEntry.phone == Contact.phone).exists()
"""`is_whitelisted` of the contact a statement selects, as a column of that statement."""


def add_to_whitelist(session: Session, profile_id: int, phone: str, note: str = "") -> bool:
    """True when the number was added, False when it was there already."""
    return insert_ignore(session, WhitelistEntry, {"profile_id": profile_id, "phone": normalize_phone(phone),
                                                   "note": note}, ["profile_id", "phone"]) is not None


def waiting_contact(session: Session, message_id: int) -> int | None:
    """The contact of a customer message still waiting for its answer; None once it is handled."""
    message = stage_message(session, message_id)
    return int(message.contact_id) if message is not None and message.status == MessageStatus.RECEIVED else None


def opt_out_contact(session: Session, contact: Contact, message: Message, confirmation: str) -> int | None:
    """Opt the contact out for good: its unanswered messages are closed, its follow-ups stopped, and
    one confirmation is queued, quoting `message`. Returns the confirmation's outbox id while unsent."""
    forget_stage_message(session, message.id)
    session.execute(update(Message).where(Message.contact_id == contact.id, Message.direction == Direction.IN,
                                          Message.status.in_((MessageStatus.RECEIVED, MessageStatus.WAITING)))
                    .values(status=MessageStatus.ANSWERED))
    contact.batch_due_at = None
    message.status = MessageStatus.ANSWERED
    contact.opted_out = True
    contact.awaiting_follow_up = False
    stop_follow_ups(session, contact.id, StopReason.OPTED_OUT)
    return write_outbox(session, profile_id=message.profile_id, contact_id=message.contact_id,
                        key=opt_out_key(contact.id), kind=OutboxKind.NOTICE, body=confirmation,
                        reply_to=message.provider_message_id, source_message_id=message.id)
