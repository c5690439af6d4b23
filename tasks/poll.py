"""Stage `poll`: every few seconds, read what changed in Wappi and start the new conversations."""

from __future__ import annotations

import logging

import redis
from sqlalchemy import select

from clients.wappi import WappiError, WappiTransientError, get_client
from db.models import Profile
from db.session import session_scope
from infra.redis import get_redis, key
from pipeline.intake import ensure_profile, poll_profile
from settings import get_settings
from tasks.app import app
from tasks.base import PipelineTask
from tasks.chains import start_conversations

log = logging.getLogger(__name__)
POLL_LOCK_SECONDS = 60  # longer than the poll's hard time limit


@app.task(base=PipelineTask, name="pipeline.poll")
def poll() -> int:
    """Poll every active profile. Returns the number of conversations started."""
    lock = get_redis().lock(key("poll-lock"), timeout=POLL_LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        log.info("poll skipped: the previous poll is still running")
        return 0
    started = 0
    try:
        with session_scope() as session:
            ensure_profile(session, get_settings())
            profiles = list(session.scalars(select(Profile.id).where(Profile.active.is_(True))))
        for profile_db_id in profiles:
            try:
                with session_scope() as session:
                    profile = session.get(Profile, profile_db_id)
                    assert profile is not None
                    result = poll_profile(session, get_client(profile.profile_id), profile)
            except WappiError as exc:
                # Nothing is lost: the chat cursors did not move, and the next poll reads it again.
                level = logging.WARNING if isinstance(exc, WappiTransientError) else logging.ERROR
                log.log(level, "poll of profile %s failed: %s", profile_db_id, exc)
                continue
            # Enqueued only after the commit: a stage never sees a row that is not there yet.
            start_conversations(result.to_answer)
            started += len(result.to_answer)
            get_redis().set(key("last-poll-ok", profile.profile_id), profile.last_poll_at.isoformat()
                            if profile.last_poll_at else "")
            if result.chats_changed:
                log.info("poll %s: %d chats changed, %d messages stored, %d to answer",
                         profile.profile_id, result.chats_changed, result.stored, len(result.to_answer))
        return started
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            log.debug("poll lock had expired")
