"""Stage `poll`: every tick the dispatcher enqueues one poll per due profile; each poll reads what
changed in its own account and starts the new conversations.

Each profile's poll is its own task with its own lock, time limit and backoff, so a profile that is
slow, failing or unauthorized delays no other: the poll workers serve the rest meanwhile.
"""

from __future__ import annotations

import logging

import redis

from celeryconfig import hard_limit
from db.session import session_scope
from infra.redis import get_redis, key
from pipeline.channels import channel_for
from pipeline.locks import LOCK_MARGIN
from pipeline.poll import backing_off, due_profiles, profile_backing_off, restart_overdue, run_poll_profile
from settings import get_settings
from tasks.app import app
from tasks.base import PipelineTask
from tasks.chains import start_conversations

log = logging.getLogger(__name__)
POLL_LOCK_SECONDS = hard_limit("pipeline.poll") + LOCK_MARGIN


@app.task(base=PipelineTask, name="pipeline.poll_dispatch")
def poll_dispatch() -> int:
    """Enqueue one poll per due profile, and restart bursts whose timers died. Returns how many
    polls were enqueued."""
    settings = get_settings()
    due = due_profiles(session_scope, settings)
    # A poll that waited longer than one interval is stale: the next tick brings a fresh one.
    expires = max(settings.poll_interval, 1.0)
    for profile in due:
        poll.apply_async(args=[profile.id], kwargs={"provider_id": profile.profile_id}, expires=expires)
    restart_overdue(session_scope, start_conversations)
    return len(due)


@app.task(base=PipelineTask, name="pipeline.poll")
def poll(profile_id: int | None = None, provider_id: str | None = None) -> int:
    """Poll one profile (our id). Without one (a message queued before the dispatcher existed, or an
    operator's `celery call pipeline.poll`), dispatch the polls of every profile. Returns the
    number of conversations started, or of polls dispatched. `provider_id` (the provider's profile
    id) saves a query to find it; without it (a message of an older dispatcher) it is read."""
    if profile_id is None:
        return int(poll_dispatch())
    lock = get_redis().lock(key("poll-lock", profile_id), timeout=POLL_LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        log.info("poll of profile %s skipped: its previous poll is still running", profile_id)
        return 0
    try:
        # A poll queued before the previous one failed would skip the backoff that failure set.
        waiting = backing_off(provider_id) if provider_id else profile_backing_off(session_scope, profile_id)
        if waiting:
            log.debug("poll of profile %s skipped: it is backing off", profile_id)
            return 0
        return run_poll_profile(session_scope, get_settings(), channel_for, start_conversations, profile_id)
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            log.debug("poll lock of profile %s had expired", profile_id)
