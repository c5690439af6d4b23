"""What an operator asks: is it healthy (`/health`), and what did it do today (`/stats`).

`/health` reads what the processes recorded (the poll's and the send stage's profile state, the
poll's backoff, beat's lock), never a live call to a provider, and reports a failure by its kind
with words of ours: no host, URL, credential or provider error text reaches its answer."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import redis
from redbeat.decoder import RedBeatJSONDecoder
from sqlalchemy import func, select, text, true
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLTimeoutError
from sqlalchemy.orm import Session

from celeryconfig import QUEUES
from db.models import (
    ChatPollFailure,
    Contact,
    DeadLetter,
    FollowUp,
    Message,
    ModelUsage,
    Outbox,
    Profile,
    ScheduledCall,
)
from db.session import SessionFactory
from domain.states import Direction, FollowUpStatus, MessageStatus, OutboxKind, OutboxStatus, Provider
from infra.logging import mask_phone
from infra.redis import key
from pipeline.poll import FAILURE_ALERT


class CheckFailed(Exception):
    """A check's own finding: a kind (`stale`, `not_authorized`, ...) and a text of ours."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind = kind


def failure_kind(exc: BaseException) -> str:
    """What kind of failure an exception is, named without its text (which may hold a host or URL)."""
    if isinstance(exc, CheckFailed):
        return exc.kind
    if isinstance(exc, redis.TimeoutError | TimeoutError | SQLTimeoutError):
        return "timeout"
    if isinstance(exc, redis.ConnectionError | OperationalError | ConnectionError):
        return "unreachable"
    return "error"


def _check(name: str, probe: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        result = {"ok": True, **probe()}
    except Exception as exc:  # noqa: BLE001 - a health check reports any failure, it never raises
        kind = failure_kind(exc)
        text = str(exc) if isinstance(exc, CheckFailed) else f"{kind} ({type(exc).__name__})"
        result = {"ok": False, "kind": kind, "error": text[:300]}
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return {name: result}


def account_kind(down_reason: str) -> str:
    """The kind of a recorded `profiles.down_reason` (pipeline.profiles.down_reason)."""
    if down_reason.startswith("phone not connected"):
        return "phone_not_connected"
    return {"not authorized": "not_authorized", "not paid": "not_paid"}.get(down_reason, "down")


OK, DEGRADED, FAILING = "ok", "degraded", "failing"


def overall(checks: dict[str, Any], profile_checks: dict[str, list[str]]) -> str:
    """`failing` when a shared part (database, Redis, beat) fails or every profile is down;
    `degraded` when some of several profiles are down (the others keep answering); else `ok`."""
    shared = [name for name in checks if not any(name in names for names in profile_checks.values())]
    if not all(checks[name]["ok"] for name in shared):
        return FAILING
    down = [profile for profile, names in profile_checks.items() if not all(checks[name]["ok"] for name in names)]
    if down and len(down) == len(profile_checks):
        return FAILING
    return DEGRADED if down else OK


def health(sessions: SessionFactory, redis_client: redis.Redis, *, poll_interval: float, redbeat_prefix: str,
           now: datetime | None = None) -> tuple[str, dict[str, Any]]:
    """Every check, and the overall status (`overall`). Each profile's checks are named
    `<check>:<profile>`; `profiles` sums them up. A profile's state is what the poll and the send
    stage recorded (`profiles.down_reason`, `last_poll_at`, the poll's backoff in Redis): asking the
    provider on every request would cost a call per probe and hang the check when it is slow."""
    now = now or datetime.now(UTC)
    checks: dict[str, Any] = {}

    def database() -> dict[str, Any]:
        with sessions() as session:
            session.execute(text("SELECT 1"))
        return {}

    checks.update(_check("database", database))
    checks.update(_check("redis", lambda: {"ping": bool(redis_client.ping())}))
    profiles: list[tuple[str, str, datetime | None, datetime | None, str | None, datetime | None]] = []
    if checks["database"]["ok"]:
        with sessions() as session:
            profiles = [(row.profile_id, row.provider, row.last_poll_at, row.proactive_tripped_at, row.down_reason,
                         row.down_since) for row in
                        session.scalars(select(Profile).where(Profile.active.is_(True)).order_by(Profile.id))]
    profile_checks: dict[str, list[str]] = {}

    for profile_id, provider, recorded_poll, tripped, down_reason, down_since in profiles:
        before = set(checks)
        last_poll = _last_poll(redis_client, profile_id, recorded_poll)

        def account(down_reason: str | None = down_reason,
                    down_since: datetime | None = down_since) -> dict[str, Any]:
            # What the poll and the send stage last heard from the provider about this account.
            if down_reason:
                since = down_since.isoformat(timespec="seconds") if down_since else "unknown"
                raise CheckFailed(account_kind(down_reason), f"profile down: {down_reason} (since {since})")
            return {"state": "up"}

        checks.update(_check(f"{'telegram' if provider == Provider.TELEGRAM_BOT else 'wappi'}:{profile_id}", account))

        def proactive(tripped: datetime | None = tripped) -> dict[str, Any]:
            if tripped is not None:
                raise CheckFailed("proactive_capped",
                                  f"the daily cap on proactive messages tripped at {tripped.isoformat()}: "
                                  "follow-ups are held until an operator resumes them")
            return {"held": False}

        checks.update(_check(f"proactive:{profile_id}", proactive))

        def sending(down_reason: str | None = down_reason,
                    down_since: datetime | None = down_since) -> dict[str, Any]:
            # Set by the poll or the send stage when the provider refuses; cleared when the profile is back.
            if down_reason:
                since = down_since.isoformat(timespec="seconds") if down_since else "unknown"
                raise CheckFailed("held", f"profile down: {down_reason} (since {since}); sends are held")
            return {"held": False}

        checks.update(_check(f"send:{profile_id}", sending))

        def poll_age(last_poll: datetime | None = last_poll, profile_id: str = profile_id) -> dict[str, Any]:
            failures = _poll_failures(redis_client, profile_id)
            if failures >= FAILURE_ALERT:
                raise CheckFailed("poll_failing", f"the last {failures} polls failed; polling backs off")
            if last_poll is None:
                raise CheckFailed("no_poll", "no successful poll yet")
            age = (now - last_poll).total_seconds()
            if age > max(60.0, poll_interval * 6):
                raise CheckFailed("stale", f"last successful poll {age:.0f}s ago")
            return {"age_seconds": round(age, 1)}

        checks.update(_check(f"poll:{profile_id}", poll_age))

        def failing_chats(profile_id: str = profile_id) -> dict[str, Any]:
            # Chats whose history the poll keeps failing to read (retried with backoff).
            with sessions() as session:
                failures = list(session.scalars(select(ChatPollFailure).join(
                    Profile, Profile.id == ChatPollFailure.profile_id).where(Profile.profile_id == profile_id)
                    .order_by(ChatPollFailure.first_failed_at)))
            alerts = [row for row in failures if row.failures >= FAILURE_ALERT]
            if alerts:
                # The provider's error text stays in the log and the table: it may name hosts.
                raise CheckFailed("chats_failing", mask_phone("; ".join(
                    f"chat {row.chat_id} failed {row.failures} times since "
                    f"{row.first_failed_at.isoformat(timespec='seconds')}" for row in alerts[:10])))
            return {"retrying": len(failures)}

        checks.update(_check(f"chats:{profile_id}", failing_chats))
        profile_checks[profile_id] = sorted(set(checks) - before)

    def beat() -> dict[str, Any]:
        lock_ttl = redis_client.pttl(f"{redbeat_prefix}:lock")
        if lock_ttl is None or lock_ttl < 0:
            raise CheckFailed("not_running", "no beat holds the redbeat lock")
        meta = redis_client.hget(f"{redbeat_prefix}poll-dispatch", "meta")
        last_run = None
        if meta:
            last_run = json.loads(meta, cls=RedBeatJSONDecoder).get("last_run_at")
        if last_run is None:
            raise CheckFailed("no_poll", "beat has not run the poll yet")
        age = (now - last_run).total_seconds()
        if age > max(60.0, poll_interval * 6):
            raise CheckFailed("stale", f"beat last ran the poll {age:.0f}s ago")
        return {"lock_ttl_ms": lock_ttl, "last_poll_scheduled_seconds_ago": round(age, 1)}

    checks.update(_check("beat", beat))
    status = overall(checks, profile_checks)
    checks["profiles"] = {
        "ok": status != FAILING,
        **{profile_id: {"ok": all(checks[name]["ok"] for name in names),
                        "down": [name.split(":", 1)[0] for name in names if not checks[name]["ok"]]}
           for profile_id, names in profile_checks.items()},
    }
    return status, checks


def _last_poll(redis_client: redis.Redis, profile_id: str, recorded: datetime | None) -> datetime | None:
    """The newest successful poll: the profile row's `last_poll_at` or the poll task's note in Redis,
    whichever is newer (a successful poll writes both)."""
    try:
        noted = redis_client.get(key("last-poll-ok", profile_id))
    except redis.RedisError:
        return recorded
    if not noted:
        return recorded
    moment = datetime.fromisoformat(noted.decode() if isinstance(noted, bytes) else str(noted))
    return moment if recorded is None else max(moment, recorded)


def _poll_failures(redis_client: redis.Redis, profile_id: str) -> int:
    """Polls of the profile that failed in a row (the poll's backoff counter)."""
    try:
        return int(redis_client.hget(key("poll-backoff", profile_id), "failures") or 0)
    except redis.RedisError:
        return 0


def stats(session: Session, redis_client: redis.Redis, timezone: str, now: datetime | None = None,
          profile_id: int | None = None) -> dict[str, Any]:
    """Today's figures, "today" being the business's calendar day; of one profile (our id) when
    `profile_id` is given, so no business sees another's. Queue depths and dead letters are the
    pool's, shared by every profile."""
    now = now or datetime.now(UTC)
    mine = select(Contact.id).where(Contact.profile_id == profile_id).scalar_subquery()

    def of_profile(column: Any, contact_column: Any = None) -> Any:
        """A filter to the profile's rows (true when every profile is asked for)."""
        if profile_id is None:
            return true()
        return column == profile_id if contact_column is None else contact_column.in_(mine)

    local = now.astimezone(ZoneInfo(timezone))
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    since, until = start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)

    def count(query: Any) -> int:
        return int(session.scalar(query) or 0)

    today_messages = (Message.created_at >= since) & (Message.created_at < until) & of_profile(Message.profile_id)
    verdicts = dict(session.execute(select(Contact.is_client, func.count(Contact.id)).where(
        Contact.classified_at >= since, Contact.classified_at < until, of_profile(Contact.profile_id))
        .group_by(Contact.is_client)).tuples().all())
    stopped = dict(session.execute(select(FollowUp.stop_reason, func.count(FollowUp.id)).where(
        FollowUp.status.in_((FollowUpStatus.STOPPED, FollowUpStatus.COMPLETED)),
        FollowUp.updated_at >= since, FollowUp.updated_at < until, of_profile(None, FollowUp.contact_id))
        .group_by(FollowUp.stop_reason)).tuples().all())
    tokens = session.execute(select(func.coalesce(func.sum(ModelUsage.prompt_tokens), 0),
                                    func.coalesce(func.sum(ModelUsage.output_tokens), 0),
                                    func.coalesce(func.sum(ModelUsage.total_tokens), 0)).where(
        ModelUsage.created_at >= since, ModelUsage.created_at < until, of_profile(None, ModelUsage.contact_id))).one()
    queues: dict[str, int | None] = {}
    for queue in QUEUES:
        try:
            queues[queue] = int(redis_client.llen(queue))
        except redis.RedisError:
            queues[queue] = None
    sent_today = (Outbox.sent_at >= since) & (Outbox.sent_at < until) & (Outbox.status == OutboxStatus.SENT) \
        & of_profile(Outbox.profile_id)
    return {
        "day": start.date().isoformat(),
        "timezone": timezone,
        "messages": {
            "received": count(select(func.count(Message.id)).where(today_messages, Message.direction == Direction.IN,
                                                                   Message.status != MessageStatus.HISTORY)),
            "sent": count(select(func.count(Outbox.id)).where(sent_today)),
            "transcribed": count(select(func.count(Message.id)).where(today_messages, Message.is_voice.is_(True),
                                                                      Message.transcription.is_not(None))),
        },
        "classified": {"lead": verdicts.get(True, 0), "not_lead": verdicts.get(False, 0),
                       "undecided": verdicts.get(None, 0)},
        "replies": count(select(func.count(Outbox.id)).where(sent_today, Outbox.kind == OutboxKind.REPLY)),
        "follow_ups": {
            "active": count(select(func.count(FollowUp.id)).where(FollowUp.status == FollowUpStatus.ACTIVE,
                                                                  of_profile(None, FollowUp.contact_id))),
            "sent": count(select(func.count(Outbox.id)).where(sent_today, Outbox.kind == OutboxKind.FOLLOW_UP)),
            "stopped": {reason or "unknown": number for reason, number in stopped.items()},
        },
        "calls_booked": count(select(func.count(ScheduledCall.id)).where(
            ScheduledCall.created_at >= since, ScheduledCall.created_at < until,
            of_profile(None, ScheduledCall.contact_id))),
        "queues": queues,
        "dead_letters": count(select(func.count(DeadLetter.id))),
        "model_tokens": {"prompt": int(tokens[0]), "output": int(tokens[1]), "total": int(tokens[2])},
    }
