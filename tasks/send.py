"""Stage `send`: deliver one outbox row through Wappi, exactly once, within the global send limit."""

from __future__ import annotations

import random
from typing import Any

import redis

from clients.wappi import get_client
from db.models import Contact, Outbox, Profile
from db.session import session_scope
from infra.ratelimit import TokenBucket, chat_gap_wait
from infra.redis import get_redis, key
from pipeline.delivery import claim, deliver, mark_failed, mark_sent, reset_for_replay
from settings import get_settings
from tasks.app import app
from tasks.base import Defer, PipelineTask

SEND_LOCK_SECONDS = 65  # just longer than the task's hard time limit (60 s)


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


def _wait_for_limits(profile_id: str, contact_id: int) -> None:
    """Raise Defer while the chat's gap or the profile's global send limit says "not yet"."""
    settings = get_settings()
    client = get_redis()
    gap = chat_gap_wait(client, key("chat-gap", profile_id, contact_id),
                        min_gap=settings.send_chat_gap_min, max_gap=settings.send_chat_gap_max)
    if gap > 0:
        raise Defer(f"chat {contact_id} got a message moments ago", countdown=gap)
    bucket = TokenBucket(client, key("send-bucket", profile_id),
                         per_minute=settings.send_rate_per_minute, burst=settings.send_burst)
    decision = bucket.take()
    if not decision.allowed:
        raise Defer(f"profile {profile_id} is at its send limit",
                    countdown=decision.retry_after + random.uniform(0, 0.5))


@app.task(base=SendTask, name="pipeline.send")
def send(outbox_id: int | None) -> int | None:
    if outbox_id is None:
        return None
    # Two copies of this task (a redelivery, a replay) must never both reach Wappi.
    lock = get_redis().lock(key("outbox-lock", outbox_id), timeout=SEND_LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        raise Defer(f"outbox {outbox_id} is being sent", countdown=5.0)
    try:
        with session_scope() as session:
            row = session.get(Outbox, outbox_id)
            if row is None or row.status not in ("pending", "sending"):
                return None
            profile = session.get(Profile, row.profile_id)
            contact = session.get(Contact, row.contact_id)
            assert profile is not None and contact is not None
            provider_profile, contact_id = profile.profile_id, contact.id
        _wait_for_limits(provider_profile, contact_id)
        with session_scope() as session:
            item = claim(session, outbox_id)
        if item is None:
            return None
        result = deliver(get_client(provider_profile), item)
        with session_scope() as session:
            mark_sent(session, outbox_id, result)
        return outbox_id
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            pass  # expired while we worked
