"""Intake: turn what Wappi shows into stored messages, once each, and say which ones to answer.

Poll cost grows with the chats that changed, not with all chats: `chats/get` is read newest
first and stops at the watermark, and `messages/get` is called only for a chat whose newest
message id differs from the one stored on its contact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from clients.wappi import Dialog, WappiClient, WappiError, WappiMessage
from db.models import Contact, Message, Profile
from db.session import insert_ignore
from pipeline.contacts import add_to_whitelist, note_message, upsert_contact
from settings import Settings

log = logging.getLogger(__name__)

CHATS_PAGE = 100
MESSAGES_PAGE = 50
ANSWERABLE_TYPES = frozenset({"chat", "text"})
VOICE_TYPES = frozenset({"ptt", "audio"})
CAPTIONED_TYPES = frozenset({"image", "document", "video"})


@dataclass(frozen=True)
class PollResult:
    chats_seen: int
    chats_changed: int
    stored: int
    to_answer: list[int]


def ensure_profile(session: Session, settings: Settings) -> Profile:
    """The profile from the environment, created on first use, with WHITELIST seeded into it."""
    created = insert_ignore(session, Profile, {"provider": "wappi", "profile_id": settings.wappi_profile_id,
                                               "name": settings.profile_name, "active": True}, ["profile_id"])
    profile = session.scalars(select(Profile).where(
        Profile.profile_id == settings.wappi_profile_id)).one()
    if created is not None:
        for phone in settings.whitelist:
            add_to_whitelist(session, profile.id, phone, note="from WHITELIST")
    return profile


def _changed_dialogs(session: Session, wappi: WappiClient, profile: Profile) -> tuple[int, list[Dialog]]:
    """Chats whose newest message id differs from the stored cursor. Pages are read newest first
    until one reaches the watermark; that page is still compared in full, so a message that
    reaches Wappi late with an old time (after a phone reconnect) is seen in any recent chat."""
    watermark = profile.poll_watermark
    seen = 0
    changed: list[Dialog] = []
    offset = 0
    while True:
        dialogs, _total = wappi.get_chats(limit=CHATS_PAGE, offset=offset)
        reached_old = False
        fresh: list[Dialog] = []
        for dialog in dialogs:
            seen += 1
            if watermark is not None and dialog.last_time < watermark:
                reached_old = True
            if dialog.is_group or not dialog.phone or not dialog.last_message_id:
                continue  # group chats are not conversations with a customer
            fresh.append(dialog)
        if fresh:
            cursors = dict(session.execute(select(Contact.phone, Contact.last_seen_message_id).where(
                Contact.profile_id == profile.id,
                Contact.phone.in_([dialog.phone for dialog in fresh]))).tuples().all())
            changed.extend(dialog for dialog in fresh
                           if cursors.get(dialog.phone) != dialog.last_message_id)
        if reached_old or len(dialogs) < CHATS_PAGE or watermark is None:
            # On first start only the newest page matters: older chats are history by definition.
            return seen, changed
        offset += CHATS_PAGE


def _new_messages(wappi: WappiClient, dialog: Dialog, cursor: str | None) -> list[WappiMessage]:
    """Messages after the contact's cursor, oldest first; at most two pages."""
    collected: list[WappiMessage] = []
    for page in range(2):
        batch = wappi.get_messages(dialog.chat_id, limit=MESSAGES_PAGE, offset=page * MESSAGES_PAGE)
        for message in batch:
            if cursor is not None and message.id == cursor:
                return list(reversed(collected))
            collected.append(message)
        if len(batch) < MESSAGES_PAGE or cursor is None:
            break
    return list(reversed(collected))


def store_message(session: Session, profile: Profile, contact: Contact, message: WappiMessage,
                  *, now: float, history: bool, human_pause: timedelta | None = None) -> int | None:
    """Store one Wappi message once. Returns the row id when it is a new customer message to answer.

    `history` marks messages that were there before the product first started: recorded, never
    answered.
    """
    text = message.text if message.type in ANSWERABLE_TYPES else ""
    if message.type in CAPTIONED_TYPES:
        text = message.caption  # an image or document with a caption goes on as the caption's text
    if message.from_me:
        direction, author, status = "out", ("bot" if message.from_api else "phone"), "sent"
    else:
        direction, author = "in", "customer"
        # Text, a voice note (transcribed first) or a captioned file is answered; stickers,
        # reactions, locations, contacts and empty bodies are recorded only.
        answerable = message.type in VOICE_TYPES or bool(text.strip())
        if history:
            status = "history"
        elif not answerable:
            status = "skipped"
        else:
            status = "received"
    sent_at = datetime.fromtimestamp(message.time or now, UTC)
    row_id = insert_ignore(session, Message, {
        "profile_id": profile.id, "contact_id": contact.id, "provider_message_id": message.id,
        "direction": direction, "author": author, "type": message.type, "text": text,
        "is_voice": message.type in VOICE_TYPES, "status": status, "sent_at": sent_at,
    }, ["profile_id", "provider_message_id"])
    if row_id is None:
        return None
    note_message(session, contact, author, sent_at, text=text, history=history, human_pause=human_pause)
    return row_id if status == "received" else None


def poll_profile(sessions: Callable[[], AbstractContextManager[Session]], wappi: WappiClient,
                 profile_id: int, start: Callable[[list[int]], None], *, now: float | None = None,
                 stale_after: float = 600.0, human_pause: timedelta | None = None) -> PollResult:
    """One poll of one profile. Each changed chat is stored in its own transaction, and its new
    customer messages are handed to `start` right after that commit, so a slow or failing poll
    still makes progress and never enqueues a row that is not there."""
    now = time.time() if now is None else now
    with sessions() as session:
        profile = session.get(Profile, profile_id)
        assert profile is not None
        first_start = profile.history_boundary is None
        if first_start:
            profile.history_boundary = int(now)
        boundary = profile.history_boundary or 0
        seen, changed = _changed_dialogs(session, wappi, profile)
    stored = 0
    to_answer: list[int] = []
    failed = 0
    newest = 0
    for dialog in changed:
        try:
            with sessions() as session:
                profile = session.get(Profile, profile_id)
                assert profile is not None
                contact = upsert_contact(session, profile.id, dialog.phone, dialog.chat_id,
                                         first_name=dialog.first_name, full_name=dialog.full_name,
                                         push_name=dialog.push_name, business_name=dialog.business_name)
                new_ids: list[int] = []
                for message in _new_messages(wappi, dialog, contact.last_seen_message_id):
                    # On first start everything in the chat is history; a chat first seen later
                    # keeps as history what was sent before the first start.
                    # A message older than `stale_after` (we were down, or Wappi reconnected) is
                    # recorded too, not answered: an answer hours late does more harm than good.
                    stale = not message.from_me and 0 < message.time < now - stale_after
                    history = first_start or (0 < message.time < boundary) or stale
                    row_id = store_message(session, profile, contact, message, now=now, history=history,
                                           human_pause=human_pause)
                    stored += 1
                    if row_id is not None:
                        new_ids.append(row_id)
                contact.last_seen_message_id = dialog.last_message_id
        except WappiError as exc:
            failed += 1  # the chat's cursor did not move: the next poll reads it again
            log.warning("poll: chat %s skipped this time: %s", dialog.chat_id, exc)
            continue
        start(new_ids)
        to_answer.extend(new_ids)
        newest = max(newest, dialog.last_time)
    with sessions() as session:
        profile = session.get(Profile, profile_id)
        assert profile is not None
        if not failed:  # a failed chat must be seen again, so the watermark waits for it
            profile.poll_watermark = max(profile.poll_watermark or 0, newest, int(now) if first_start else 0)
        profile.last_poll_at = datetime.fromtimestamp(now, UTC)
    if first_start:
        log.info("first poll: %d chats recorded as history", len(changed))
    return PollResult(chats_seen=seen, chats_changed=len(changed), stored=stored, to_answer=to_answer)


def stranded_messages(session: Session, older_than: datetime, limit: int = 100) -> list[int]:
    """Customer messages stored but never picked up (a crash between commit and enqueue)."""
    return list(session.scalars(select(Message.id).where(
        Message.status == "received", Message.created_at < older_than).order_by(Message.id).limit(limit)))


def overdue_bursts(session: Session, before: datetime, limit: int = 100) -> list[int]:
    """The newest waiting message of each burst whose timer should have fired before `before`
    (its worker died mid-window). Clears the timers it returns."""
    contacts = list(session.scalars(select(Contact).where(Contact.batch_due_at < before)
                                    .order_by(Contact.batch_due_at).limit(limit)))
    newest: list[int] = []
    for contact in contacts:
        contact.batch_due_at = None
        message_id = session.scalar(select(Message.id).where(
            Message.contact_id == contact.id, Message.status == "received").order_by(Message.id.desc()).limit(1))
        if message_id is not None:
            newest.append(message_id)
    return newest


WEBHOOK_TYPES_STORED = frozenset({"incoming_message", "outgoing_message_phone", "outgoing_message_api"})


class WebhookError(ValueError):
    """The webhook body is not a Wappi envelope; the message says what is wrong."""


def webhook_messages(payload: object) -> list[dict[str, object]]:
    """The message objects of a webhook: `{"messages": [...]}`, `{"messages": {...}}` or a bare object."""
    if not isinstance(payload, dict):
        raise WebhookError("the body is not a JSON object")
    items = payload.get("messages", payload)
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise WebhookError("`messages` is neither an object nor a list of objects")
    return items


def store_webhook(sessions: Callable[[], AbstractContextManager[Session]], profile_id: int,
                  items: list[dict[str, object]], *, now: float | None = None, stale_after: float = 600.0,
                  human_pause: timedelta | None = None) -> list[int]:
    """Store the messages of one webhook, exactly like the poll would (deduplicated with it), and
    return the new customer messages to answer. Delivery and status events are ignored."""
    from clients.wappi import parse_message

    now = time.time() if now is None else now
    to_answer: list[int] = []
    with sessions() as session:
        profile = session.get(Profile, profile_id)
        assert profile is not None
        boundary = profile.history_boundary
        for item in items:
            kind = str(item.get("wh_type") or "incoming_message")
            if kind not in WEBHOOK_TYPES_STORED:
                continue
            if not item.get("id"):
                log.warning("webhook: a %s without an id was skipped", kind)
                continue
            message = parse_message(item)
            if message.is_group or not message.phone or not message.phone.isdigit():
                continue
            contact = upsert_contact(session, profile.id, message.phone, f"{message.phone}@c.us",
                                     push_name=message.sender_name if not message.from_me else "",
                                     full_name=message.contact_name if not message.from_me else "")
            stale = not message.from_me and 0 < message.time < now - stale_after
            history = boundary is None or (0 < message.time < boundary) or stale
            row_id = store_message(session, profile, contact, message, now=now, history=history,
                                   human_pause=human_pause)
            if row_id is not None:
                to_answer.append(row_id)
    return to_answer
