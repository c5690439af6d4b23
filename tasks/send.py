"""Stage `send`: deliver one outbox row through Wappi, exactly once."""

from __future__ import annotations

from typing import Any

import redis

from clients.wappi import get_client
from db.models import Outbox, Profile
from db.session import session_scope
from infra.redis import get_redis, key
from pipeline.delivery import claim, deliver, mark_failed, mark_sent
from tasks.app import app
from tasks.base import Defer, PipelineTask

SEND_LOCK_SECONDS = 90  # longer than the task's hard time limit


class SendTask(PipelineTask):
    def after_dead_letter(self, args: Any, kwargs: Any, exc: BaseException) -> None:
        outbox_id = args[0] if args else None
        if isinstance(outbox_id, int):
            with session_scope() as session:
                mark_failed(session, outbox_id, f"{type(exc).__name__}: {exc}")


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
            item = claim(session, outbox_id)
            if item is None:
                return None
            row = session.get(Outbox, outbox_id)
            assert row is not None
            profile = session.get(Profile, row.profile_id)
            assert profile is not None
            provider_profile = profile.profile_id
        result = deliver(get_client(provider_profile), item)
        with session_scope() as session:
            mark_sent(session, outbox_id, result)
        return outbox_id
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            pass  # expired while we worked

