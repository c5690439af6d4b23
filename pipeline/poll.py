"""Stage `poll`: read what changed in Wappi, store it, and say which messages start a conversation.

Poll cost grows with the chats that changed, not with all chats: `chats/get` is read newest
first and stops at the watermark, and `messages/get` is called only for a chat whose newest
message id or unread count differs from what was stored on its contact. The recent page of a
changed chat is compared with the provider ids already stored, so a message delivered late (it
carries the time it was written and sorts before our reply) is still seen.

A chat whose history keeps failing is retried with backoff from `chat_poll_failures`, and the
watermark moves on. A profile Wappi refuses is polled ever more rarely until it is back.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import delete, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from clients.channel import Channel, ChannelAuthError, ChannelError, ChannelTransientError
from clients.telegram import TelegramBotChannel
from clients.wappi import Dialog, WappiClient, WappiError, WappiMessage
from db.models import ChatPollFailure, Contact, Message, Profile
from db.session import SessionFactory, insert_ignore
from domain.states import MessageStatus, Provider
from domain.text import clean_text
from infra.logging import mask_phone
from infra.redis import get_redis, key
from pipeline.bot_updates import BotPollResult, poll_bot
from pipeline.contacts import upsert_contact
from pipeline.inbound import PROVIDER_ID_CHARS, is_history, record_rejected, store_one
from pipeline.profile_settings import settings_for
from pipeline.profiles import down_reason, ensure_profile, mark_profile, refusal_reason
from settings import Settings

log = logging.getLogger(__name__)

CHATS_PAGE = 100
MESSAGES_PAGE = 50
FAILURE_BACKOFF_FIRST = 5.0  # seconds before the first retry of a failing chat; doubles each time
FAILURE_BACKOFF_MAX = 300.0
FAILURE_ALERT = 3  # failures in a row after which a chat is reported in /health and logged as an error
OVERDUE_GRACE = timedelta(seconds=30)  # a live timer fires on time; one this late has lost its worker
BACKOFF_MAX = 300.0  # a profile the provider refuses is polled at most this rarely (s) until it is back
FAILING_BACKOFF_MAX = 60.0  # a profile whose provider keeps failing (timeouts, 5xx) at most this rarely (s)


@dataclass(frozen=True)
class PollResult:
    chats_seen: int
    chats_changed: int
    stored: int
    to_answer: list[int]
    chats_failed: int = 0


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


def poll_profile(sessions: SessionFactory, wappi: WappiClient,
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
                    history = is_history(message, first_start=first_start, boundary=boundary, now=now,
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
            Message.contact_id == contact.id, Message.status == MessageStatus.RECEIVED)
            .order_by(Message.id.desc()).limit(1))
        if message_id is not None:
            newest.append(message_id)
    return newest


def backoff_delay(failures: int, interval: float, most: float = BACKOFF_MAX) -> float:
    """Seconds until a refused or failing profile is polled again: the poll interval, doubled per
    failure in a row, at most `most`."""
    return min(most, max(interval, 1.0) * 2 ** max(failures - 1, 0))


def backing_off(profile_id: str) -> bool:
    until = get_redis().hget(key("poll-backoff", profile_id), "until")
    return until is not None and float(until) > datetime.now(UTC).timestamp()


def profile_backing_off(sessions: SessionFactory, profile_db_id: int) -> bool:
    """Whether the profile (our id) waits out a backoff now."""
    with sessions() as session:
        provider_id = session.scalar(select(Profile.profile_id).where(Profile.id == profile_db_id))
    return provider_id is not None and backing_off(provider_id)


def _back_off(profile_id: str, interval: float, most: float) -> tuple[int, float]:
    client = get_redis()
    backoff_key = key("poll-backoff", profile_id)
    failures = int(client.hincrby(backoff_key, "failures", 1))
    delay = backoff_delay(failures, interval, most)
    client.hset(backoff_key, "until", str(datetime.now(UTC).timestamp() + delay))
    client.expire(backoff_key, int(BACKOFF_MAX * 4))
    return failures, delay


def _refused(sessions: SessionFactory, channel: Channel, exc: ChannelAuthError, interval: float) -> None:
    """The provider refuses this profile (not authorized, not paid, a revoked bot token): poll it
    ever more rarely, mark it down (so /health says why and sends are held), and log once per
    change, not every tick."""
    failures, delay = _back_off(channel.profile_id, interval, BACKOFF_MAX)
    reason = refusal_reason(getattr(exc, "status_code", None))
    with sessions() as session:
        changed = mark_profile(session, channel.profile_id, reason, datetime.now(UTC))
    if failures == 1 or changed:
        log.error("poll of profile %s refused by the provider (%s): %s; polling backs off (up to %.0f s)",
                  channel.profile_id, reason, exc, BACKOFF_MAX)
    else:
        log.debug("poll of profile %s still refused (%d in a row); next try in %.0f s",
                  channel.profile_id, failures, delay)


def _recovered(sessions: SessionFactory, channel: Channel) -> None:
    """The first good poll after a refusal or failures: stop backing off, and record the profile's
    real state."""
    client = get_redis()
    backoff_key = key("poll-backoff", channel.profile_id)
    if not client.exists(backoff_key):
        return
    client.delete(backoff_key)
    try:
        reason = down_reason(channel.get_status())
    except ChannelError as exc:
        log.warning("poll of profile %s works again, but its status could not be read: %s", channel.profile_id, exc)
        return
    with sessions() as session:
        mark_profile(session, channel.profile_id, reason, datetime.now(UTC))
    log.warning("poll of profile %s works again", channel.profile_id)


@dataclass(frozen=True)
class DueProfile:
    id: int
    profile_id: str


def due_profiles(sessions: SessionFactory, settings: Settings) -> list[DueProfile]:
    """The profiles to poll this tick: active, not backing off, and not a bot that takes its
    updates by webhook. The environment's profile is created on first use."""
    with sessions() as session:
        ensure_profile(session, settings)
        active = session.scalars(select(Profile).where(Profile.active.is_(True)).order_by(Profile.id))
        candidates = [DueProfile(profile.id, profile.profile_id) for profile in active
                      if profile.provider != Provider.TELEGRAM_BOT
                      or settings_for(profile, settings).telegram_updates == "poll"]
    return [due for due in candidates if not backing_off(due.profile_id)]


def restart_overdue(sessions: SessionFactory, start: Callable[[list[int]], None]) -> int:
    """Bursts whose timers died with their workers are started again."""
    with sessions() as session:
        overdue = overdue_bursts(session, datetime.now(UTC) - OVERDUE_GRACE)
    if overdue:
        log.warning("poll: restarting %d bursts whose timers died with their workers", len(overdue))
        start(overdue)
    return len(overdue)


def run_poll_profile(sessions: SessionFactory, settings: Settings, channel_for: Callable[[str], Channel],
                     start: Callable[[list[int]], None], profile_db_id: int) -> int:
    """One poll of one profile, whatever its provider; hands the new customer messages to `start`
    after each commit. A refused profile backs off up to BACKOFF_MAX and is marked down; a failing
    one (timeouts, 5xx) backs off up to FAILING_BACKOFF_MAX. Returns how many conversations started."""
    with sessions() as session:
        profile = session.get(Profile, profile_db_id)
        if profile is None or not profile.active:
            return 0
        provider_id, provider = profile.profile_id, profile.provider
    channel = channel_for(provider_id)
    human_pause = timedelta(hours=settings.human_pause_hours)
    stale_after = settings.stale_after_minutes * 60
    result: PollResult | BotPollResult
    try:
        if provider == Provider.TELEGRAM_BOT:
            assert isinstance(channel, TelegramBotChannel)
            result = poll_bot(sessions, channel.client, profile_db_id, start, stale_after=stale_after,
                              human_pause=human_pause)
        else:
            assert isinstance(channel, WappiClient)
            result = poll_profile(sessions, channel, profile_db_id, start, stale_after=stale_after,
                                  human_pause=human_pause)
    except SoftTimeLimitExceeded:
        # What was stored is committed chat by chat; the next tick goes on from there.
        log.warning("poll of profile %s ran out of time; the next poll continues", provider_id)
        return 0
    except ChannelAuthError as exc:
        _refused(sessions, channel, exc, settings.poll_interval)
        return 0
    except ChannelError as exc:
        # Nothing moved (chat cursors, watermark, update offset); the next poll reads again, after a
        # backoff when it keeps failing, so a slow provider costs its own profile only.
        failures, delay = _back_off(provider_id, settings.poll_interval, FAILING_BACKOFF_MAX)
        level = logging.WARNING if isinstance(exc, ChannelTransientError) and failures < FAILURE_ALERT \
            else logging.ERROR
        log.log(level, "poll of profile %s failed (%d in a row, next try in %.0f s): %s",
                provider_id, failures, delay, exc)
        return 0
    _recovered(sessions, channel)
    get_redis().set(key("last-poll-ok", provider_id), datetime.now(UTC).isoformat())
    if result.chats_changed:
        log.info("poll %s: %d chats changed, %d messages stored, %d to answer, %d chats failed",
                 provider_id, result.chats_changed, result.stored, len(result.to_answer), result.chats_failed)
    return len(result.to_answer)


def run_poll(sessions: SessionFactory, settings: Settings, channel_for: Callable[[str], Channel],
             start: Callable[[list[int]], None]) -> int:
    """Every due profile polled one after another in this process, then the overdue bursts: what
    the dispatcher and the per-profile polls do together, for a caller with no workers (tests,
    tools). Returns how many conversations started."""
    started = 0
    for due in due_profiles(sessions, settings):
        started += run_poll_profile(sessions, settings, channel_for, start, due.id)
    restart_overdue(sessions, start)
    return started
