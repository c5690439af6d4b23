"""What an operator asks: is it healthy (`/health`), and what did it do today (`/stats`)."""

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
from pipeline.poll import FAILURE_ALERT


def _check(name: str, probe: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        result = {"ok": True, **probe()}
    except Exception as exc:  # noqa: BLE001 - a health check reports any failure, it never raises
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return {name: result}


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


def health(sessions: SessionFactory, redis_client: redis.Redis,
           status_of: Callable[[str], Any], *, poll_interval: float, redbeat_prefix: str,
           now: datetime | None = None) -> tuple[str, dict[str, Any]]:
    """Every check, and the overall status (`overall`). Each profile's checks are named
    `<check>:<profile>`; `profiles` sums them up."""
    now = now or datetime.now(UTC)
    checks: dict[str, Any] = {}

    def database() -> dict[str, Any]:
        with sessions() as session:
            session.execute(text("SELECT 1"))
        return {}

    checks.update(_check("database", database))
    checks.update(_check("redis", lambda: {"ping": bool(redis_client.ping())}))
    profiles: list[tuple[str, str, datetime | None, datetime | None]] = []
    if checks["database"]["ok"]:
        with sessions() as session:
            profiles = [(row.profile_id, row.provider, row.last_poll_at, row.proactive_tripped_at) for row in
                        session.scalars(select(Profile).where(Profile.active.is_(True)).order_by(Profile.id))]
    profile_checks: dict[str, list[str]] = {}

    for profile_id, provider, last_poll, tripped in profiles:
        before = set(checks)

        def account(profile_id: str = profile_id) -> dict[str, Any]:
            status = status_of(profile_id)
            if not status.healthy:
                raise RuntimeError(f"authorized={status.authorized} app_status={status.app_status!r}")
            return {"authorized": status.authorized, "app_status": status.app_status}

        checks.update(_check(f"{'telegram' if provider == Provider.TELEGRAM_BOT else 'wappi'}:{profile_id}", account))

        def proactive(tripped: datetime | None = tripped) -> dict[str, Any]:
            if tripped is not None:
                raise RuntimeError(f"the daily cap on proactive messages tripped at {tripped.isoformat()}: "
                                   "follow-ups are held until an operator resumes them")
            return {"held": False}

        checks.update(_check(f"proactive:{profile_id}", proactive))

        def sending(profile_id: str = profile_id) -> dict[str, Any]:
            # Set by the send stage when Wappi refuses to send; cleared when the profile is back.
            with sessions() as session:
                down = session.execute(select(Profile.down_reason, Profile.down_since)
                                       .where(Profile.profile_id == profile_id)).first()
            if down is not None and down.down_reason:
                since = down.down_since.isoformat() if down.down_since else "unknown"
                raise RuntimeError(f"profile down: {down.down_reason} (since {since}); sends are held")
            return {"held": False}

        checks.update(_check(f"send:{profile_id}", sending))

        def poll_age(last_poll: datetime | None = last_poll) -> dict[str, Any]:
            if last_poll is None:
                raise RuntimeError("no successful poll yet")
            age = (now - last_poll).total_seconds()
            if age > max(60.0, poll_interval * 6):
                raise RuntimeError(f"last successful poll {age:.0f}s ago")
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
                raise RuntimeError(mask_phone("; ".join(
                    f"chat {row.chat_id} failed {row.failures} times since "
                    f"{row.first_failed_at.isoformat(timespec='seconds')}: {row.error[:120]}" for row in alerts[:10])))
            return {"retrying": len(failures)}

        checks.update(_check(f"chats:{profile_id}", failing_chats))
        profile_checks[profile_id] = sorted(set(checks) - before)

    def beat() -> dict[str, Any]:
        lock_ttl = redis_client.pttl(f"{redbeat_prefix}:lock")
        if lock_ttl is None or lock_ttl < 0:
            raise RuntimeError("no beat holds the redbeat lock")
        meta = redis_client.hget(f"{redbeat_prefix}poll-dispatch", "meta")
        last_run = None
        if meta:
            last_run = json.loads(meta, cls=RedBeatJSONDecoder).get("last_run_at")
        if last_run is None:
            raise RuntimeError("beat has not run the poll yet")
        age = (now - last_run).total_seconds()
        if age > max(60.0, poll_interval * 6):
            raise RuntimeError(f"beat last ran the poll {age:.0f}s ago")
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
