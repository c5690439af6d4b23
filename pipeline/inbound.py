"""Inbound messages: how a message a channel shows is stored (once, cleaned, with its status), the
rule that says which ones are answered, and the bookkeeping of a message on its way to an answer.

Poll and webhook both store through `store_message` (the poll by way of `store_one`), so they
deduplicate against each other. One bad message costs only itself: each is stored in its own
savepoint (the webhook's holds the item's contact too), and one that cannot be read or stored
becomes an `intake.message` dead letter (payload masked).
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Update, bindparam, func, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from clients.wappi import WappiMessage
from db.models import Contact, DeadLetter, Message, Profile
from db.session import execute_core, insert_ignore
from domain.states import Author, Direction, MessageStatus
from domain.text import clean_text
from infra.logging import mask_phone
from pipeline.contacts import note_message
from pipeline.profile_settings import forget_stage_message
from pipeline.voice_media import save_voice_media
from settings import get_settings

log = logging.getLogger(__name__)

ANSWERABLE_TYPES = frozenset({"chat", "text"})
VOICE_TYPES = frozenset({"ptt", "audio"})
CAPTIONED_TYPES = frozenset({"image", "document", "video"})
PROVIDER_ID_CHARS = 128  # messages.provider_message_id, contacts.chat_id
TYPE_CHARS = 32  # messages.type
REJECT_PAYLOAD_CHARS = 20_000
REJECTED_TASK = "intake.message"
LATE_CAP = 24 * 3600.0  # a message delivered late to Wappi is answered if written at most this long ago


def masked_payload(item: Any) -> str:
    """A payload as it may be kept: JSON, phones masked, control characters out, bounded."""
    text = json.dumps(item, ensure_ascii=False, default=repr, sort_keys=True)
    return clean_text(mask_phone(text))[:REJECT_PAYLOAD_CHARS]


def record_rejected(session: Session, profile_id: int, source: str, item: Any, error: str) -> None:
    """Keep a message that could not be read or stored as an `intake.message` dead letter, once."""
    payload = masked_payload(item)
    digest = hashlib.sha1(f"{profile_id}:{payload}".encode(), usedforsecurity=False).hexdigest()
    reason = clean_text(mask_phone(error))[:2000]
    created = insert_ignore(session, DeadLetter, {
        "task_name": REJECTED_TASK, "task_id": f"intake:{digest}", "args": [payload],
        "kwargs": {"source": source, "profile_id": profile_id}, "queue": "", "chain": None,
        "exception": reason, "traceback": "", "attempts": 1,
    }, ["task_id"])
    if created is not None:
        log.warning("%s: a message could not be stored (dead letter %d): %s", source, created, reason)


def store_message(session: Session, profile: Profile, contact: Contact, message: WappiMessage,
                  *, now: float, history: bool, human_pause: timedelta | None = None) -> int | None:
    """Store one Wappi message once. Returns the row id when it is a new customer message to answer.

    `history` marks messages that were there before the product first started: recorded, never
    answered. Text is stored without control characters (NUL, which PostgreSQL refuses, and the
    like); every other character, emoji and RTL marks included, is kept.
    """
    text = message.text if message.type in ANSWERABLE_TYPES else ""
    if message.type in CAPTIONED_TYPES:
        text = message.caption  # an image or document with a caption goes on as the caption's text
    text = clean_text(text)
    if message.from_me:
        direction, status = Direction.OUT, MessageStatus.SENT
        author = Author.BOT if message.from_api else Author.PHONE
    else:
        direction, author = Direction.IN, Author.CUSTOMER
        # Text, a voice note (transcribed first) or a captioned file is answered; stickers,
        # reactions, locations, contacts and empty bodies are recorded only.
        answerable = message.type in VOICE_TYPES or bool(text.strip())
        if history:
            status = MessageStatus.HISTORY
        elif not answerable:
            status = MessageStatus.SKIPPED
        else:
            status = MessageStatus.RECEIVED
    # The contact's pending changes (its names) wait for its summary's (`note_message`): one UPDATE,
    # sent before its follow-ups' (contact first, then follow-ups, as everywhere else).
    with session.no_autoflush:
        stored = _insert(session, profile, contact, message, text=text, direction=direction, author=author,
                         status=status, now=now)
    if stored is None:
        return None
    row_id, sent_at = stored
    note_message(session, contact, author, sent_at, text=text, history=history, human_pause=human_pause)
    return row_id if status == MessageStatus.RECEIVED else None


# The chat's newest Wappi time (built once: every customer message reads it).
NEWEST_IN_CHAT = select(func.max(Message.sent_at)).where(Message.contact_id == bindparam("chat_contact"))


def _insert(session: Session, profile: Profile, contact: Contact, message: WappiMessage, *, text: str,
            direction: Direction, author: Author, status: MessageStatus, now: float) -> tuple[int, datetime] | None:
    """The message's row (and a voice note's media), once: its id and its time in the chat."""
    sent_at = datetime.fromtimestamp(message.time or now, UTC)
    if status == MessageStatus.RECEIVED:
        # A late message (written while the customer's phone was offline) carries its writing
        # time and may sort before our reply; in the conversation it comes where we received it,
        # so that the model answers it as the customer's newest words.
        newest = execute_core(session, NEWEST_IN_CHAT, {"chat_contact": contact.id}).scalar()
        if newest is not None and newest > sent_at:
            sent_at = newest
    row_id = insert_ignore(session, Message, {
        "profile_id": profile.id, "contact_id": contact.id, "provider_message_id": message.id,
        "direction": direction, "author": author, "type": clean_text(message.type)[:TYPE_CHARS],
        "text": text, "is_voice": message.type in VOICE_TYPES, "status": status, "sent_at": sent_at,
        # A message to answer is stamped as due now, for itself alone: its chain is started as the
        # transaction commits, and its first stage finds a fresh stamp and sends none of its own.
        "next_attempt_at": datetime.now(UTC) if status == MessageStatus.RECEIVED else None,
    }, ["profile_id", "provider_message_id"])
    if row_id is None:
        return None
    if status == MessageStatus.RECEIVED and message.type in VOICE_TYPES:
        # The webhook's inline audio, or the file's name and size.
        save_voice_media(session, row_id, message, max_bytes=get_settings().max_audio_bytes)
    return row_id, sent_at


def store_one(session: Session, profile: Profile, contact: Contact, message: WappiMessage, *, source: str,
              now: float, history: bool, human_pause: timedelta | None) -> int | None:
    """`store_message` in its own savepoint: a message that cannot be stored becomes a dead
    letter and the others go on. A database that is down is no message's fault: that raises."""
    try:
        with session.begin_nested():
            return store_message(session, profile, contact, message, now=now, history=history,
                                 human_pause=human_pause)
    except OperationalError:
        raise
    except Exception as exc:  # noqa: BLE001 - any surprise in one message costs only that message
        record_rejected(session, profile.id, source, dict(message.raw) or {"id": message.id},
                        f"{type(exc).__name__}: {exc}")
        return None


def is_history(message: WappiMessage, *, first_start: bool, boundary: int | None, now: float,
                stale_after: float, previous_poll: float | None) -> bool:
    """On first start everything is history; a chat first seen later keeps as history what was
    sent before the first start. A customer message written more than `stale_after` ago is
    recorded, not answered, when it came while we were down: it is newer than our previous
    successful poll (`previous_poll`), so we would have seen it in time had we been up. One
    written before that poll that we had not seen was delivered late to Wappi (the customer's
    phone was offline): it is answered, if written at most LATE_CAP (24 h) ago. With no previous
    poll known, every message older than `stale_after` is recorded only."""
    if first_start or boundary is None or (0 < message.time < boundary):
        return True
    if message.from_me or not 0 < message.time < now - stale_after:
        return False
    if previous_poll is None or message.time >= previous_poll:
        return True  # we were down
    return message.time < now - LATE_CAP


# -- a received message on its way to an answer --------------------------------------------------

def _burst_stamp(with_slack: bool) -> Update:
    contact_id = select(Message.contact_id).where(Message.id == bindparam("stamped_message")).scalar_subquery()
    burst = [Message.contact_id == contact_id, Message.status == MessageStatus.RECEIVED]
    if with_slack:
        burst.append(or_(Message.next_attempt_at.is_(None), Message.next_attempt_at < bindparam("stale_before"),
                         Message.next_attempt_at > bindparam("due")))
    return update(Message).where(*burst).values(next_attempt_at=bindparam("due"))


# Built once, with and without the slack (every stage start sends one: a statement built per call
# costs more Python than its round trip).
BURST_STAMPS = {with_slack: _burst_stamp(with_slack) for with_slack in (False, True)}


def mark_burst_due(session: Session, message_id: int, due: datetime, *, slack: timedelta | None = None) -> None:
    """Stamp every `received` message of the contact with when its chain runs next: the chain
    carries its whole burst, and the recovery sweep leaves it alone until then. With `slack`, a
    message already stamped within `slack` before `due` keeps its stamp: a stage start moments after
    the previous stage's writes no rows (the sweep's margin, two minutes, covers the slack).
    Message objects already in the session keep their old stamp."""
    params: dict[str, Any] = {"stamped_message": message_id, "due": due}
    if slack is not None:
        params["stale_before"] = due - slack
    execute_core(session, BURST_STAMPS[slack is not None], params)


def park_message(session: Session, message_id: int, status: MessageStatus) -> None:
    """Take a message out of the answering path while it waits for its answer: `waiting` (undecided
    contact), `ignored` (not a lead, or whitelisted) or `paused` (a human is answering).

    A waiting message stays in the conversation and is answered together with a later one."""
    execute_core(session, PARK_MESSAGE, {"parked_message": message_id, "new_status": status})
    forget_stage_message(session, message_id)


PARK_MESSAGE = update(Message).where(Message.id == bindparam("parked_message"),
                                     Message.status == MessageStatus.RECEIVED).values(status=bindparam("new_status"))


def fail_message(session: Session, message_id: int) -> None:
    """Its chain failed for good (a dead letter): nothing sweeps it up again until a replay."""
    session.execute(update(Message).where(Message.id == message_id, Message.status == MessageStatus.RECEIVED)
                    .values(status=MessageStatus.FAILED))


def reopen_message(session: Session, message_id: int) -> None:
    """An operator replays its dead letter: the message is on its way to an answer again."""
    session.execute(update(Message).where(Message.id == message_id, Message.status == MessageStatus.FAILED)
                    .values(status=MessageStatus.RECEIVED))
