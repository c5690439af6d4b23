"""Intake: turn what Wappi shows into stored messages, once each, and say which ones to answer.

Poll cost grows with the chats that changed, not with all chats: `chats/get` is read newest
first and stops at the watermark, and `messages/get` is called only for a chat whose newest
message id or unread count differs from what was stored on its contact. The recent page of a
changed chat is compared with the provider ids already stored, so a message delivered late (it
carries the time it was written and sorts before our reply) is still seen.

One bad message costs only itself: each is stored in its own savepoint, and one that cannot be
read or stored becomes an `intake.message` dead letter (payload masked). A chat whose history
keeps failing is retried with backoff from `chat_poll_failures`, and the watermark moves on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from clients.wappi import Dialog, WappiClient, WappiError, WappiMessage, parse_message
from db.models import ChatPollFailure, Contact, DeadLetter, Message, Profile
from db.session import insert_ignore
from domain.text import clean_text
from infra.logging import mask_phone
from pipeline.contacts import add_to_whitelist, note_message, upsert_contact
from settings import Settings

__all__ = ["clean_text"]  # re-exported: the rule the intake applies to every stored text

log = logging.getLogger(__name__)

CHATS_PAGE = 100
MESSAGES_PAGE = 50
ANSWERABLE_TYPES = frozenset({"chat", "text"})
VOICE_TYPES = frozenset({"ptt", "audio"})
CAPTIONED_TYPES = frozenset({"image", "document", "video"})
PROVIDER_ID_CHARS = 128  # messages.provider_message_id, contacts.chat_id
TYPE_CHARS = 32  # messages.type
FAILURE_BACKOFF_FIRST = 5.0  # seconds before the first retry of a failing chat; doubles each time
FAILURE_BACKOFF_MAX = 300.0
FAILURE_ALERT = 3  # failures in a row after which a chat is reported in /health and logged as an error
REJECT_PAYLOAD_CHARS = 20_000
REJECTED_TASK = "intake.message"
LATE_CAP = 24 * 3600.0  # a message delivered late to Wappi is answered if written at most this long ago


@dataclass(frozen=True)
class PollResult:
    chats_seen: int
    chats_changed: int
    stored: int
    to_answer: list[int]
    chats_failed: int = 0


_whitelist_applied: set[tuple[str, tuple[str, ...]]] = set()


def ensure_profile(session: Session, settings: Settings) -> Profile:
    """The profile from the environment, created on first use. WHITELIST is applied once per
    process start (numbers added to it since are added; removing one stays a CLI action, so a
    number removed with the CLI but left in WHITELIST comes back at the next start)."""
    insert_ignore(session, Profile, {"provider": "wappi", "profile_id": settings.wappi_profile_id,
                                     "name": settings.profile_name, "active": True}, ["profile_id"])
    profile = session.scalars(select(Profile).where(
        Profile.profile_id == settings.wappi_profile_id)).one()
    applied = (settings.wappi_profile_id, tuple(settings.whitelist))
    if applied not in _whitelist_applied:
        added = [phone for phone in settings.whitelist
                 if add_to_whitelist(session, profile.id, phone, note="from WHITELIST")]
        if added:
            log.info("WHITELIST: %d number(s) added: %s", len(added), ", ".join(added))
        session.flush()
        _whitelist_applied.add(applied)
    return profile


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


def cursor_of(message_id: str) -> str:
    """The chat cursor stored for a last message id: the id itself, or a digest of an id longer
    than the column (such a message cannot be stored, but its chat must not be re-read forever)."""
    if len(message_id) <= PROVIDER_ID_CHARS:
        return message_id
    return "sha1:" + hashlib.sha1(message_id.encode(), usedforsecurity=False).hexdigest()


def _failing_chats(session: Session, profile_id: int) -> dict[str, ChatPollFailure]:
    return {row.chat_id: row for row in session.scalars(select(ChatPollFailure).where(
        ChatPollFailure.profile_id == profile_id))}


def _changed_dialogs(session: Session, wappi: WappiClient, profile: Profile, now: datetime,
                     chats_page: int) -> tuple[int, list[Dialog]]:
    """Chats to read: the newest message id or the unread count differs from the contact's (a
    late message changes only the count), and failing chats whose retry is due. Pages are read
    newest first until one reaches the watermark; that page is still compared in full."""
    watermark = profile.poll_watermark
    failing = _failing_chats(session, profile.id)
    seen = 0
    changed: list[Dialog] = []
    offset = 0
    while True:
        dialogs, _total = wappi.get_chats(limit=chats_page, offset=offset)
        reached_old = False
        fresh: list[Dialog] = []
        for dialog in dialogs:
            seen += 1
            if watermark is not None and dialog.last_time < watermark:
                reached_old = True
            if not dialog.is_person or not dialog.phone or not dialog.last_message_id \
                    or len(dialog.chat_id) > PROVIDER_ID_CHARS:
                continue  # groups, channels, broadcasts and status updates are no customer's chat
            failure = failing.pop(dialog.chat_id, None)
            if failure is not None:
                if failure.next_retry_at <= now:
                    changed.append(dialog)  # its retry is due
                continue  # otherwise it waits for its backoff
            fresh.append(dialog)
        if fresh:
            cursors = {phone: (last_id, unread) for phone, last_id, unread in session.execute(
                select(Contact.phone, Contact.last_seen_message_id, Contact.last_seen_unread).where(
                    Contact.profile_id == profile.id,
                    Contact.phone.in_([dialog.phone for dialog in fresh]))).tuples()}
            changed.extend(dialog for dialog in fresh
                           if cursors.get(dialog.phone) != (cursor_of(dialog.last_message_id),
                                                            dialog.unread_count))
        if reached_old or len(dialogs) < chats_page or watermark is None:
            # On first start only the newest page matters: older chats are history by definition.
            break
        offset += chats_page
    # Failing chats not on the pages read: retried from the dialog they last showed.
    changed.extend(Dialog(**failure.dialog) for failure in failing.values() if failure.next_retry_at <= now)
    return seen, changed


def _new_messages(session: Session, wappi: WappiClient, profile_id: int, dialog: Dialog, cursor: str | None
                  ) -> tuple[list[WappiMessage], list[tuple[Mapping[str, Any], str]], set[str]]:
    """Messages of the chat not stored yet, oldest first, the items that could not be read, and
    every id the pages showed (read or not).
    The newest page is compared with the ids already stored (not stopped at one cursor id), so
    a late message that sorts before our reply is found; a second page only when the whole
    first page is new."""
    collected: dict[str, WappiMessage] = {}
    rejected: list[tuple[Mapping[str, Any], str]] = []
    shown: set[str] = set()
    for page_number in range(2):
        page = wappi.get_messages_page(dialog.chat_id, limit=MESSAGES_PAGE, offset=page_number * MESSAGES_PAGE)
        rejected.extend(page.rejected)
        ids = [message.id for message in page.messages]
        shown.update(ids)
        shown.update(str(item.get("id")) for item, _reason in page.rejected if item.get("id") is not None)
        stored = set(session.scalars(select(Message.provider_message_id).where(
            Message.profile_id == profile_id, Message.provider_message_id.in_(ids)))) if ids else set()
        for message in page.messages:
            if message.id not in stored:
                collected.setdefault(message.id, message)
        if stored or cursor is None or len(page.messages) + len(page.rejected) < MESSAGES_PAGE:
            break
    return list(reversed(collected.values())), rejected, shown


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
    if status == "received":
        # A late message (written while the customer's phone was offline) carries its writing
        # time and may sort before our reply; in the conversation it comes where we received it,
        # so that the model answers it as the customer's newest words.
        newest = session.scalar(select(func.max(Message.sent_at)).where(Message.contact_id == contact.id))
        if newest is not None and newest > sent_at:
            sent_at = newest
    row_id = insert_ignore(session, Message, {
        "profile_id": profile.id, "contact_id": contact.id, "provider_message_id": message.id,
        "direction": direction, "author": author, "type": clean_text(message.type)[:TYPE_CHARS],
        "text": text, "is_voice": message.type in VOICE_TYPES, "status": status, "sent_at": sent_at,
    }, ["profile_id", "provider_message_id"])
    if row_id is None:
        return None
    if status == "received" and message.type in VOICE_TYPES:
        from pipeline.voice import save_voice_media  # the webhook's inline audio, or the file's name and size

        save_voice_media(session, row_id, message)
    note_message(session, contact, author, sent_at, text=text, history=history, human_pause=human_pause)
    return row_id if status == "received" else None


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


def _is_history(message: WappiMessage, *, first_start: bool, boundary: int | None, now: float,
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


def _record_chat_failure(session: Session, profile_id: int, dialog: Dialog, exc: Exception,
                         now: datetime) -> ChatPollFailure:
    insert_ignore(session, ChatPollFailure, {
        "profile_id": profile_id, "chat_id": dialog.chat_id, "dialog": asdict(dialog), "failures": 0,
        "error": "", "first_failed_at": now, "last_failed_at": now, "next_retry_at": now,
    }, ["profile_id", "chat_id"])
    row = session.scalars(select(ChatPollFailure).where(ChatPollFailure.profile_id == profile_id,
                                                        ChatPollFailure.chat_id == dialog.chat_id)).one()
    row.failures += 1
    row.error = clean_text(str(exc))[:500]
    row.dialog = asdict(dialog)
    row.last_failed_at = now
    row.next_retry_at = now + timedelta(
        seconds=min(FAILURE_BACKOFF_FIRST * 2 ** (row.failures - 1), FAILURE_BACKOFF_MAX))
    return row


def poll_profile(sessions: Callable[[], AbstractContextManager[Session]], wappi: WappiClient,
                 profile_id: int, start: Callable[[list[int]], None], *, now: float | None = None,
                 stale_after: float = 600.0, human_pause: timedelta | None = None,
                 chats_page: int = CHATS_PAGE) -> PollResult:
    """One poll of one profile. Each changed chat is stored in its own transaction, and its new
    customer messages are handed to `start` right after that commit, so a slow or failing poll
    still makes progress and never enqueues a row that is not there. A chat that fails is
    retried with backoff and never holds the watermark back."""
    now = time.time() if now is None else now
    moment = datetime.fromtimestamp(now, UTC)
    with sessions() as session:
        profile = session.get(Profile, profile_id)
        assert profile is not None
        first_start = profile.history_boundary is None
        if first_start:
            profile.history_boundary = int(now)
        boundary = profile.history_boundary
        previous_poll = profile.last_poll_at.timestamp() if profile.last_poll_at is not None else None
        seen, changed = _changed_dialogs(session, wappi, profile, moment, chats_page)
    stored = 0
    to_answer: list[int] = []
    failed = 0
    newest = 0
    for dialog in changed:
        newest = max(newest, dialog.last_time)
        try:
            with sessions() as session:
                profile = session.get(Profile, profile_id)
                assert profile is not None
                contact = upsert_contact(session, profile.id, dialog.phone, dialog.chat_id,
                                         first_name=dialog.first_name, full_name=dialog.full_name,
                                         push_name=dialog.push_name, business_name=dialog.business_name)
                messages, rejected, shown = _new_messages(session, wappi, profile.id, dialog,
                                                          contact.last_seen_message_id)
                for item, reason in rejected:
                    record_rejected(session, profile.id, "poll", item, reason)
                new_ids: list[int] = []
                for message in messages:
                    history = _is_history(message, first_start=first_start, boundary=boundary, now=now,
                                          stale_after=stale_after, previous_poll=previous_poll)
                    row_id = store_one(session, profile, contact, message, source="poll", now=now,
                                       history=history, human_pause=human_pause)
                    stored += 1
                    if row_id is not None:
                        new_ids.append(row_id)
                # The cursor moves only when the dialog's newest message was on the page or is
                # stored: otherwise the page was not this chat's (or not complete), read it again.
                if dialog.last_message_id in shown or session.scalar(select(Message.id).where(
                        Message.profile_id == profile.id,
                        Message.provider_message_id == dialog.last_message_id).limit(1)) is not None:
                    contact.last_seen_message_id = cursor_of(dialog.last_message_id)
                    contact.last_seen_unread = dialog.unread_count
                else:
                    log.warning("poll: chat %s: its newest message was not on the page; read again next poll",
                                dialog.chat_id)
                recovered = session.execute(delete(ChatPollFailure).where(
                    ChatPollFailure.profile_id == profile.id, ChatPollFailure.chat_id == dialog.chat_id))
                if recovered.rowcount:  # type: ignore[attr-defined]  # CursorResult of a DELETE
                    log.info("poll: chat %s is read again", dialog.chat_id)
        except OperationalError:
            raise  # the database is down: no chat's fault
        except Exception as exc:  # noqa: BLE001 - one chat's surprise (a DataError, say) costs only that chat
            failed += 1
            if not isinstance(exc, WappiError):
                exc = RuntimeError(f"{type(exc).__name__}: {mask_phone(str(exc))}")
            with sessions() as session:
                failure = _record_chat_failure(session, profile_id, dialog, exc, moment)
                failures, retry_at = failure.failures, failure.next_retry_at
            level = logging.ERROR if failures == FAILURE_ALERT else logging.WARNING
            log.log(level, "poll: chat %s failed %d time(s) in a row, next try at %s: %s",
                    dialog.chat_id, failures, retry_at.isoformat(timespec="seconds"), exc)
            continue
        start(new_ids)
        to_answer.extend(new_ids)
    with sessions() as session:
        profile = session.get(Profile, profile_id)
        assert profile is not None
        # A failed chat has its own retry (chat_poll_failures): the watermark never waits for it.
        profile.poll_watermark = max(profile.poll_watermark or 0, newest, int(now) if first_start else 0)
        profile.last_poll_at = moment
    if first_start:
        log.info("first poll: %d chats recorded as history", len(changed))
    return PollResult(chats_seen=seen, chats_changed=len(changed), stored=stored, to_answer=to_answer,
                      chats_failed=failed)


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


def webhook_messages(payload: object) -> list[object]:
    """The items of a webhook: `{"messages": [...]}`, `{"messages": {...}}` or a bare object.
    Items are checked one by one later; a body with no message object at all is refused."""
    if not isinstance(payload, dict):
        raise WebhookError("the body is not a JSON object")
    items = payload.get("messages", payload)
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or (items and not any(isinstance(item, dict) for item in items)):
        raise WebhookError("`messages` is neither an object nor a list of objects")
    return items


def store_webhook(sessions: Callable[[], AbstractContextManager[Session]], profile_id: int,
                  items: list[object], *, now: float | None = None, stale_after: float = 600.0,
                  human_pause: timedelta | None = None) -> list[int]:
    """Store the messages of one webhook, exactly like the poll would (deduplicated with it), and
    return the new customer messages to answer. Delivery and status events are ignored. Items are
    handled one by one: a bad one is logged and kept as a dead letter, the others are stored."""
    now = time.time() if now is None else now
    to_answer: list[int] = []
    with sessions() as session:
        profile = session.get(Profile, profile_id)
        assert profile is not None
        boundary = profile.history_boundary
        previous_poll = profile.last_poll_at.timestamp() if profile.last_poll_at is not None else None
        for position, item in enumerate(items):
            if not isinstance(item, dict):
                log.warning("webhook: item %d is not an object; skipped", position)
                continue
            kind = item.get("wh_type") or "incoming_message"
            if not isinstance(kind, str) or kind not in WEBHOOK_TYPES_STORED:
                continue
            try:
                message = parse_message(item)
            except Exception as exc:  # noqa: BLE001 - one unreadable item costs only itself
                log.warning("webhook: item %d skipped: %s", position, exc)
                record_rejected(session, profile.id, "webhook", item, f"{type(exc).__name__}: {exc}")
                continue
            if not message.is_person or not message.phone.isdigit():
                continue  # groups, channels, broadcasts, status updates, an @lid without a phone
            try:
                with session.begin_nested():
                    contact = upsert_contact(session, profile.id, message.phone, f"{message.phone}@c.us",
                                             push_name=message.sender_name if not message.from_me else "",
                                             full_name=message.contact_name if not message.from_me else "")
            except OperationalError:
                raise
            except Exception as exc:  # noqa: BLE001 - a contact that cannot be stored skips its item
                record_rejected(session, profile.id, "webhook", item, f"{type(exc).__name__}: {exc}")
                continue
            history = _is_history(message, first_start=False, boundary=boundary, now=now,
                                  stale_after=stale_after, previous_poll=previous_poll)
            row_id = store_one(session, profile, contact, message, source="webhook", now=now,
                               history=history, human_pause=human_pause)
            if row_id is not None:
                to_answer.append(row_id)
    return to_answer
