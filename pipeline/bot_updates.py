"""Intake of a Telegram bot's updates, from `getUpdates` (the default: no public URL needed) or from
its webhook: each update stored exactly like a Wappi message (`store_one`), so the stages after
intake never know a bot from a phone number.

- Private chats are answered; groups, supergroups and channels are ignored (not stored).
- Text, `/start` (the agent writes the greeting), voice notes and audio (downloaded with
  `getFile` when transcribed), photos and documents by their caption; stickers are recorded only.
- An edited message is recorded beside the original, never answered a second time.
- `my_chat_member` with `kicked`/`left` marks the customer unreachable (nothing is sent to them
  again); `member` (unblocked) clears it.
- The `getUpdates` offset is written in the transaction that stores the update, so a restart of the
  poller neither loses an update (it is confirmed only after it is stored) nor repeats one (ids
  are unique per profile, and the stored offset skips it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from clients.channel import MediaRef
from clients.telegram import TelegramClient, TelegramMessage, message_key, parse_update
from clients.wappi import WappiMessage
from db.models import Contact, FollowUp, Message, Profile
from db.session import SessionFactory, insert_ignore
from domain.states import Author, Direction, FollowUpStatus, MessageStatus, StopReason
from domain.text import clean_text
from pipeline.contacts import upsert_contact
from pipeline.inbound import TYPE_CHARS, is_history, record_rejected, store_one

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ("message", "edited_message", "my_chat_member")
UPDATES_PAGE = 100
SOURCE = "telegram"
# A Bot API message's kind, as the pipeline's message types name it (clients/wappi.py's vocabulary).
MEDIA_TYPES = {"voice": "ptt", "audio": "audio", "photo": "image", "document": "document", "sticker": "sticker"}
BLOCKED = "blocked the bot"


@dataclass(frozen=True)
class BotPollResult:
    updates: int
    stored: int
    to_answer: list[int] = field(default_factory=list)
    chats_failed: int = 0

    @property
    def chats_changed(self) -> int:
        return self.updates


def inbound_message(update: TelegramMessage) -> WappiMessage:
    """A private chat's message as the pipeline's message record. Ids are qualified by the chat
    (Telegram counts message ids per chat); the chat id is also the contact's key."""
    assert update.chat_id is not None
    chat = str(update.chat_id)
    sender = update.sender
    media = update.media
    kind = MEDIA_TYPES.get(media.kind, "other") if media is not None else ("text" if update.text else "other")
    ref = None
    if media is not None:
        ref = MediaRef(file_name=media.file_name, size=media.file_size, mime_type=media.mime_type,
                       file_id=media.file_id)
    first = sender.first_name if sender else ""
    full = " ".join(part for part in (first, sender.last_name if sender else "") if part)
    return WappiMessage(
        id=message_key(chat, update.message_id), chat_id=chat, phone=chat, type=kind, from_me=False,
        text=update.text, caption=update.caption, time=update.date, sender_name=full,
        contact_name=full, from_api=False, is_group=False, raw=update.raw, media=ref,
    )


def _contact(session: Session, profile_id: int, update: TelegramMessage) -> Contact:
    assert update.chat_id is not None
    sender = update.sender
    chat = str(update.chat_id)
    first = sender.first_name if sender else ""
    full = " ".join(part for part in (first, sender.last_name if sender else "") if part)
    username = f"@{sender.username}" if sender and sender.username else ""
    return upsert_contact(session, profile_id, chat, chat, first_name=first, full_name=full, push_name=username)


def _record_edit(session: Session, profile: Profile, contact: Contact, update: TelegramMessage) -> None:
    """An edit is kept as its own row beside the original (the history shows both), never answered."""
    insert_ignore(session, Message, {
        "profile_id": profile.id, "contact_id": contact.id,
        "provider_message_id": f"{message_key(contact.chat_id, update.message_id)}:edit:{update.edit_date}",
        "direction": Direction.IN, "author": Author.CUSTOMER, "type": "edited"[:TYPE_CHARS],
        "text": clean_text(update.text or update.caption), "is_voice": False, "status": MessageStatus.SKIPPED,
        "sent_at": datetime.fromtimestamp(update.edit_date or update.date or time.time(), UTC),
    }, ["profile_id", "provider_message_id"])


def mark_reachable(session: Session, contact: Contact, reachable: bool, now: datetime) -> None:
    if reachable:
        if contact.unreachable_at is not None:
            log.info("telegram: contact %s can be reached again", contact.id)
        contact.unreachable_at = None
        contact.unreachable_reason = None
        return
    if contact.unreachable_at is None:
        contact.unreachable_at = now
        contact.unreachable_reason = BLOCKED
        log.info("telegram: contact %s blocked the bot: nothing is sent to them again", contact.id)
    contact.awaiting_follow_up = False
    session.execute(update(FollowUp).where(FollowUp.contact_id == contact.id, FollowUp.status == FollowUpStatus.ACTIVE)
                    .values(status=FollowUpStatus.STOPPED, stop_reason=StopReason.UNREACHABLE, next_touch_at=None))


def store_update(session: Session, profile: Profile, raw: Mapping[str, Any] | Any, *, now: float,
                 stale_after: float, human_pause: timedelta | None) -> int | None:
    """Store one update. Returns the message id to answer, if it is a new customer message. An
    update that cannot be read becomes an `intake.message` dead letter."""
    try:
        parsed = parse_update(raw)
    except Exception as exc:  # noqa: BLE001 - one unreadable update costs only itself
        record_rejected(session, profile.id, SOURCE, raw if isinstance(raw, Mapping) else {"update": repr(raw)},
                        f"{type(exc).__name__}: {exc}")
        return None
    if parsed.chat_id is None or not parsed.is_private:
        return None  # groups, supergroups and channels are no customer's private chat
    if parsed.kind == "my_chat_member":
        contact = _contact(session, profile.id, parsed)
        if parsed.blocked_bot or parsed.unblocked_bot:
            mark_reachable(session, contact, parsed.unblocked_bot, datetime.fromtimestamp(now, UTC))
        return None
    if parsed.kind not in ("message", "edited_message") or parsed.message_id <= 0:
        return None
    if parsed.sender is not None and parsed.sender.is_bot:
        return None
    contact = _contact(session, profile.id, parsed)
    if parsed.edited:
        _record_edit(session, profile, contact, parsed)
        return None
    if contact.unreachable_at is not None:
        mark_reachable(session, contact, True, datetime.fromtimestamp(now, UTC))  # they write: they can be reached
    message = inbound_message(parsed)
    previous_poll = profile.last_poll_at.timestamp() if profile.last_poll_at is not None else None
    # A bot has no history before the product: every update is a customer waiting for an answer,
    # unless it is stale because we were down (the same rule as Wappi's).
    history = is_history(message, first_start=False, boundary=0, now=now, stale_after=stale_after,
                         previous_poll=previous_poll)
    return store_one(session, profile, contact, message, source=SOURCE, now=now, history=history,
                     human_pause=human_pause)


def _update_id(raw: Any) -> int | None:
    value = raw.get("update_id") if isinstance(raw, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def poll_bot(sessions: SessionFactory, bot: TelegramClient, profile_id: int, start: Callable[[list[int]], None], *,
             now: float | None = None, stale_after: float = 600.0,
             human_pause: timedelta | None = None) -> BotPollResult:
    """One `getUpdates` of one bot (short poll: the dispatcher's tick is the wait). Each update is
    stored with the new offset in one transaction, then handed to `start` after the commit."""
    with sessions() as session:
        profile = session.get(Profile, profile_id)
        assert profile is not None
        offset = profile.update_offset
    updates = bot.get_updates(offset=offset, timeout=0, limit=UPDATES_PAGE, allowed_updates=ALLOWED_UPDATES)
    stored = 0
    to_answer: list[int] = []
    for raw in updates:
        update_id = _update_id(raw)
        if update_id is not None and offset is not None and update_id < offset:
            continue  # confirmed before: Telegram repeats an update until the next call confirms it
        moment = time.time() if now is None else now
        with sessions() as session:
            profile = session.get(Profile, profile_id, with_for_update=True)
            assert profile is not None
            if update_id is not None and profile.update_offset is not None and update_id < profile.update_offset:
                continue  # another poll stored it meanwhile
            row_id = store_update(session, profile, raw, now=moment, stale_after=stale_after, human_pause=human_pause)
            if update_id is not None:
                profile.update_offset = max(profile.update_offset or 0, update_id + 1)
                offset = profile.update_offset
        stored += 1
        if row_id is not None:
            start([row_id])
            to_answer.append(row_id)
    with sessions() as session:
        profile = session.get(Profile, profile_id)
        assert profile is not None
        profile.last_poll_at = datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)
        if profile.history_boundary is None:
            profile.history_boundary = 0
    return BotPollResult(updates=len(updates), stored=stored, to_answer=to_answer)
