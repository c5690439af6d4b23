"""Stage `poll`: every few seconds, read what changed in Wappi and start the new conversations."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import redis
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select

from clients.wappi import WappiAuthError, WappiClient, WappiError, WappiTransientError, get_client
from db.models import Profile
from db.session import session_scope
from infra.redis import get_redis, key
from pipeline.delivery import down_reason, mark_profile
from pipeline.intake import ensure_profile, overdue_bursts, poll_profile
from settings import get_settings
from tasks.app import app
from tasks.base import PipelineTask
from tasks.chains import start_conversations

log = logging.getLogger(__name__)
POLL_LOCK_SECONDS = 70  # longer than the poll's hard time limit (60 s)
OVERDUE_GRACE = timedelta(seconds=30)  # a live timer fires on time; one this late has lost its worker
BACKOFF_MAX = 300.0  # a profile Wappi refuses is polled at most this rarely (s) until it is back


def backoff_delay(failures: int, interval: float) -> float:
    """Seconds until a refused profile is polled again: the poll interval, doubled per failure in a
    row, at most BACKOFF_MAX."""
    return min(BACKOFF_MAX, max(interval, 1.0) * 2 ** max(failures - 1, 0))


def _backing_off(profile_id: str) -> bool:
    until = get_redis().hget(key("poll-backoff", profile_id), "until")
    return until is not None and float(until) > datetime.now(UTC).timestamp()


def _refused(wappi: WappiClient, exc: WappiAuthError, interval: float) -> None:
    """Wappi refuses this profile (not authorized, not paid): poll it ever more rarely, mark it down
    (so /health says why and sends are held), and log once per change, not every tick."""
    client = get_redis()
    backoff_key = key("poll-backoff", wappi.profile_id)
    failures = int(client.hincrby(backoff_key, "failures", 1))
    delay = backoff_delay(failures, interval)
    client.hset(backoff_key, "until", str(datetime.now(UTC).timestamp() + delay))
    reason = "not paid" if exc.status_code == 402 else "not authorized"
    with session_scope() as session:
        changed = mark_profile(session, wappi.profile_id, reason, datetime.now(UTC))
    if failures == 1 or changed:
        log.error("poll of profile %s refused by Wappi (%s): %s; polling backs off (up to %.0f s)",
                  wappi.profile_id, reason, exc, BACKOFF_MAX)
    else:
        log.debug("poll of profile %s still refused (%d in a row); next try in %.0f s",
                  wappi.profile_id, failures, delay)


def _recovered(wappi: WappiClient) -> None:
    """The first good poll after a refusal: stop backing off, and record the profile's real state."""
    client = get_redis()
    backoff_key = key("poll-backoff", wappi.profile_id)
    if not client.exists(backoff_key):
        return
    client.delete(backoff_key)
    try:
        reason = down_reason(wappi.get_status())
    except WappiError as exc:
        log.warning("poll of profile %s works again, but its status could not be read: %s", wappi.profile_id, exc)
        return
    with session_scope() as session:
        mark_profile(session, wappi.profile_id, reason, datetime.now(UTC))
    log.warning("poll of profile %s works again", wappi.profile_id)


@app.task(base=PipelineTask, name="pipeline.poll")
def poll() -> int:
    """Poll every active profile. Returns the number of conversations started."""
    lock = get_redis().lock(key("poll-lock"), timeout=POLL_LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        log.info("poll skipped: the previous poll is still running")
        return 0
    started = 0
    try:
        settings = get_settings()
        with session_scope() as session:
            ensure_profile(session, settings)
            provider_ids = dict(session.execute(select(Profile.id, Profile.profile_id).where(
                Profile.active.is_(True))).tuples().all())
        profiles = list(provider_ids)
        for profile_db_id in profiles:
            if _backing_off(provider_ids[profile_db_id]):
                continue
            wappi = get_client(provider_ids[profile_db_id])
            try:
                result = poll_profile(session_scope, wappi, profile_db_id,
                                      start_conversations, stale_after=settings.stale_after_minutes * 60,
                                      human_pause=timedelta(hours=settings.human_pause_hours))
            except SoftTimeLimitExceeded:
                # What was stored is committed chat by chat; the next tick goes on from there.
                log.warning("poll of profile %s ran out of time; the next poll continues",
                            provider_ids[profile_db_id])
                break
            except WappiAuthError as exc:
                _refused(wappi, exc, settings.poll_interval)
                continue
            except WappiError as exc:
                # chats/get failed: nothing moved (chat cursors, watermark); the next poll reads again.
                level = logging.WARNING if isinstance(exc, WappiTransientError) else logging.ERROR
                log.log(level, "poll of profile %s failed: %s", provider_ids[profile_db_id], exc)
                continue
            _recovered(wappi)
            started += len(result.to_answer)
            get_redis().set(key("last-poll-ok", provider_ids[profile_db_id]), datetime.now(UTC).isoformat())
            if result.chats_changed:
                log.info("poll %s: %d chats changed, %d messages stored, %d to answer, %d chats failed",
                         provider_ids[profile_db_id], result.chats_changed, result.stored,
                         len(result.to_answer), result.chats_failed)
        with session_scope() as session:
            overdue = overdue_bursts(session, datetime.now(UTC) - OVERDUE_GRACE)
        if overdue:
            log.warning("poll: restarting %d bursts whose timers died with their workers", len(overdue))
            start_conversations(overdue)
        return started
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            log.debug("poll lock had expired")
