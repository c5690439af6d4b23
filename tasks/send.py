"""Stage `send`: deliver one outbox row through Wappi, exactly once, within the global send limit.

Every other stage that writes an outbox row enqueues this task with `tasks.app.enqueue_send` once
its transaction has committed."""

from __future__ import annotations

from typing import Any

import redis

from db.session import session_scope
from infra.redis import get_redis, key
from pipeline.channels import channel_for
from pipeline.locks import Defer
from pipeline.send import SEND_LOCK_SECONDS, mark_failed, reset_for_replay, run_send
from settings import get_settings
from tasks.app import app
from tasks.base import PipelineTask


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


@app.task(base=SendTask, name="pipeline.send")
def send(outbox_id: int | None) -> int | None:
    if outbox_id is None:
        return None
    # Two copies of this task (a redelivery, a replay) must never both reach Wappi.
    lock = get_redis().lock(key("outbox-lock", outbox_id), timeout=SEND_LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        raise Defer(f"outbox {outbox_id} is being sent", countdown=5.0)
    try:
        return run_send(session_scope, outbox_id, get_settings(), channel_for)
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            pass  # expired while we worked

