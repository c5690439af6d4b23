"""Stage `poll`: every few seconds, read what changed in Wappi and start the new conversations."""

from __future__ import annotations

import logging

import redis

from celeryconfig import hard_limit
from clients.wappi import get_client
from db.session import session_scope
from infra.redis import get_redis, key
from pipeline.locks import LOCK_MARGIN
from pipeline.poll import run_poll
from settings import get_settings
from tasks.app import app
from tasks.base import PipelineTask
from tasks.chains import start_conversations

log = logging.getLogger(__name__)
POLL_LOCK_SECONDS = hard_limit("pipeline.poll") + LOCK_MARGIN


@app.task(base=PipelineTask, name="pipeline.poll")
def poll() -> int:
    """Poll every active profile. Returns the number of conversations started."""
    lock = get_redis().lock(key("poll-lock"), timeout=POLL_LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        log.info("poll skipped: the previous poll is still running")
        return 0
    try:
        return run_poll(session_scope, get_settings(), get_client, start_conversations)
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            log.debug("poll lock had expired")
