"""Stage `poll`: every few seconds, read what changed in Wappi and start the new conversations."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import redis
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select

from clients.wappi import WappiError, WappiTransientError, get_client
from db.models import Profile
from db.session import session_scope
from infra.redis import get_redis, key
from pipeline.intake import ensure_profile, overdue_bursts, poll_profile
from settings import get_settings
from tasks.app import app
from tasks.base import PipelineTask
from tasks.chains import start_conversations

log = logging.getLogger(__name__)
POLL_LOCK_SECONDS = 70  # longer than the poll's hard time limit (60 s)
OVERDUE_GRACE = timedelta(seconds=30)  # a live timer fires on time; one this late has lost its worker


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
            try:
                result = poll_profile(session_scope, get_client(provider_ids[profile_db_id]), profile_db_id,
                                      start_conversations, stale_after=settings.stale_after_minutes * 60,
                                      human_pause=timedelta(hours=settings.human_pause_hours))
            except SoftTimeLimitExceeded:
                # What was stored is committed chat by chat; the next tick goes on from there.
                log.warning("poll of profile %s ran out of time; the next poll continues",
                            provider_ids[profile_db_id])
                break
            except WappiError as exc:
                # chats/get failed: nothing moved (chat cursors, watermark); the next poll reads again.
                level = logging.WARNING if isinstance(exc, WappiTransientError) else logging.ERROR
                log.log(level, "poll of profile %s failed: %s", provider_ids[profile_db_id], exc)
                continue
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
