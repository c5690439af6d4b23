"""Stage `send`: deliver one outbox row through Wappi, exactly once, within the global send limit.

Everything that makes a row wait is a deferral (a countdown retry that costs no attempt) recorded
on the row as `next_attempt_at`, so the recovery sweep knows the row is held: the send limit, the
chat gap, an older row of the same chat, the settle delay of an unclear send, an offline profile.
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import redis

from clients.wappi import (
    SendResult,
    WappiAuthError,
    WappiClient,
    WappiRejectedError,
    WappiTransientError,
    get_client,
)
from db.models import Contact, Outbox, Profile
from db.session import session_scope
from infra.ratelimit import TokenBucket, chat_gap_wait
from infra.redis import get_redis, key
from pipeline.delivery import (
    Wait,
    cancel_touch,
    claim,
    claimed_elsewhere,
    deliver,
    down_reason,
    mark_failed,
    mark_profile,
    mark_sent,
    note_deferred,
    note_not_sent,
    note_unclear,
    reconcile,
    replies_waiting,
    reset_for_replay,
    stale_touch_reason,
    unclear_claim,
    waits_for_older,
)
from settings import get_settings
from tasks.app import app
from tasks.base import Defer, PipelineTask

log = logging.getLogger(__name__)
SEND_LOCK_SECONDS = 65  # just longer than the task's hard time limit (60 s)
ORDER_WAIT = 2.0  # seconds before looking again when an older row of the chat is still unsent
YIELD_WAIT = 15.0  # at least this long a follow-up touch waits while replies to customers are queued


def yield_wait() -> float:
    """A touch behind customer replies looks again after 15-30 s: the replies need the send limit
    for a while, and jitter keeps many waiting touches from waking together."""
    return YIELD_WAIT + random.uniform(0, YIELD_WAIT)


class HeldTooLong(Exception):
    """A reply waited longer than HOLD_MAX_AGE for its profile to come back: not sent (a dead letter)."""


class SendTask(PipelineTask):
    id_field = "outbox_id"

    def after_dead_letter(self, args: Any, kwargs: Any, exc: BaseException) -> None:
        outbox_id = args[0] if args else None
        if isinstance(outbox_id, int):
            with session_scope() as session:
                mark_failed(session, outbox_id, f"{type(exc).__name__}: {exc}")

    def prepare_replay(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        outbox_id = args[0] if args else None
        if isinstance(outbox_id, int):
            with session_scope() as session:
                reset_for_replay(session, outbox_id)


def _defer(outbox_id: int, reason: str, countdown: float) -> NoReturn:
    """Defer the task and write down when the row is due, for the recovery sweep."""
    with session_scope() as session:
        note_deferred(session, outbox_id, datetime.now(UTC) + timedelta(seconds=countdown))
    raise Defer(reason, countdown=countdown)


def _wait_for_limits(outbox_id: int, profile_id: str, contact_id: int) -> None:
    """Defer while the chat's gap or the profile's global send limit says "not yet"."""
    settings = get_settings()
    client = get_redis()
    gap = chat_gap_wait(client, key("chat-gap", profile_id, contact_id),
                        min_gap=settings.send_chat_gap_min, max_gap=settings.send_chat_gap_max)
    if gap > 0:
        _defer(outbox_id, f"chat {contact_id} got a message moments ago", gap)
    bucket = TokenBucket(client, key("send-bucket", profile_id),
                         per_minute=settings.send_rate_per_minute, burst=settings.send_burst)
    decision = bucket.take()
    if not decision.allowed:
        _defer(outbox_id, f"profile {profile_id} is at its send limit",
               decision.retry_after + random.uniform(0, 0.5))


def _profile_reason(wappi: WappiClient, error: WappiAuthError | None = None) -> str | None:
    """Ask Wappi why the profile cannot send; None when it can. A failed check keeps it down."""
    try:
        return down_reason(wappi.get_status())
    except WappiAuthError as exc:
        return "not paid" if exc.status_code == 402 else "not authorized"
    except WappiTransientError:
        if error is not None:
            return "not paid" if error.status_code == 402 else "not authorized"
        raise


def _wait_while_down(outbox_id: int, wappi: WappiClient, created_at: datetime, reason: str) -> None:
    """Hold the row while its profile is down; return when it is back. One status check per
    interval for the whole profile, however many rows are held."""
    settings = get_settings()
    now = datetime.now(UTC)
    age = (now - created_at).total_seconds()
    if age > settings.hold_max_age:
        raise HeldTooLong(f"held {age / 60:.0f} min while profile {wappi.profile_id} could not send "
                          f"({reason}); older than HOLD_MAX_AGE ({settings.hold_max_age:.0f} s), not sent")
    interval = max(settings.hold_check_interval, 0.5)
    if get_redis().set(key("profile-check", wappi.profile_id), "1", nx=True, px=int(interval * 1000)):
        current = _profile_reason(wappi)
        with session_scope() as session:
            mark_profile(session, wappi.profile_id, current, now)
        if current is None:
            return
        reason = current
    _defer(outbox_id, f"profile {wappi.profile_id} cannot send ({reason}); held", interval)


def _taken(outbox_id: int) -> Any:
    def taken(provider_ids: list[str]) -> set[str]:
        with session_scope() as session:
            return claimed_elsewhere(session, outbox_id, provider_ids)
    return taken


def _finish(outbox_id: int, result: SendResult) -> int:
    with session_scope() as session:
        mark_sent(session, outbox_id, result)
    return outbox_id


@app.task(base=SendTask, name="pipeline.send")
def send(outbox_id: int | None) -> int | None:
    if outbox_id is None:
        return None
    # Two copies of this task (a redelivery, a replay) must never both reach Wappi.
    lock = get_redis().lock(key("outbox-lock", outbox_id), timeout=SEND_LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        raise Defer(f"outbox {outbox_id} is being sent", countdown=5.0)
    try:
        return _send(outbox_id)
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            pass  # expired while we worked


def _send(outbox_id: int) -> int | None:
    settings = get_settings()
    now = datetime.now(UTC)
    with session_scope() as session:
        row = session.get(Outbox, outbox_id)
        if row is None or row.status not in ("pending", "sending"):
            return None
        if row.status == "pending" and (stale := stale_touch_reason(session, row, now)) is not None:
            cancel_touch(session, row, stale)
            return None
        profile = session.get(Profile, row.profile_id)
        contact = session.get(Contact, row.contact_id)
        assert profile is not None and contact is not None
        provider_profile, contact_id, created_at = profile.profile_id, contact.id, row.created_at
        held_for = profile.down_reason
        older_first = waits_for_older(session, outbox_id, contact_id)
        # Replies go before touches; the send limit is shared, so a touch gives way to them.
        yields = row.kind == "follow_up" and row.status == "pending" \
            and replies_waiting(session, profile.id, contact_id)
    if older_first:
        _defer(outbox_id, f"an older message to chat {contact_id} goes first", ORDER_WAIT)
    if yields:
        _defer(outbox_id, "replies to customers are waiting; the touch goes after them", yield_wait())
    wappi = get_client(provider_profile)
    if held_for is not None:
        _wait_while_down(outbox_id, wappi, created_at, held_for)

    # An earlier send call may have reached Wappi: look before sending again.
    with session_scope() as session:
        unclear = unclear_claim(session, outbox_id)
    if unclear is not None:
        item, last_send_at = unclear
        outcome = reconcile(wappi, item, last_send_at, datetime.now(UTC), settle=settings.reconcile_settle,
                            recheck=settings.reconcile_recheck, taken=_taken(outbox_id))
        if isinstance(outcome, SendResult):
            log.info("send: outbox %s was already delivered as %s; not sending again",
                     outbox_id, outcome.message_id)
            return _finish(outbox_id, outcome)
        if isinstance(outcome, Wait):
            _defer(outbox_id, f"outbox {outbox_id}: {outcome.reason}", outcome.seconds + random.uniform(0, 0.5))

    _wait_for_limits(outbox_id, provider_profile, contact_id)
    with session_scope() as session:
        claimed = claim(session, outbox_id, datetime.now(UTC))
    if claimed is None:
        return None
    try:
        result = deliver(wappi, claimed)
    except WappiTransientError:
        # Wappi may have sent it: the row stays `sending`, and the next attempt reconciles after
        # the settle delay, counted from now.
        with session_scope() as session:
            note_unclear(session, outbox_id, datetime.now(UTC))
        raise
    except WappiRejectedError:
        with session_scope() as session:  # a definite no: nothing to reconcile, even after a replay
            note_not_sent(session, outbox_id, datetime.now(UTC))
        raise
    except WappiAuthError as exc:
        reason = _profile_reason(wappi, exc) or "not authorized"
        with session_scope() as session:
            note_not_sent(session, outbox_id, datetime.now(UTC))
            mark_profile(session, provider_profile, reason, datetime.now(UTC))
        _defer(outbox_id, f"profile {provider_profile} cannot send ({reason}); held",
               max(settings.hold_check_interval, 0.5))
    return _finish(outbox_id, result)
