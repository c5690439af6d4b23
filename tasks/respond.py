"""Stage `respond`: ask the model for the answer and write it to the outbox."""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from clients.gemini import get_client
from db.models import Message
from db.session import session_scope
from domain.clock import human_datetime
from infra.redis import get_redis, key
from pipeline.conversation import commit_reply, generate_reply, reply_context
from settings import get_settings
from tasks.app import app
from tasks.base import Defer, MessageStageTask

CONTACT_LOCK_SECONDS = 150  # longer than the task's hard time limit


@app.task(base=MessageStageTask, name="pipeline.respond")
def respond(message_id: int | None) -> int | None:
    if message_id is None:
        return None
    settings = get_settings()
    with session_scope() as session:
        message = session.get(Message, message_id)
        if message is None:
            return None
        contact_id = message.contact_id
    # One answer at a time per contact, so answers follow the customer's message order.
    lock = get_redis().lock(key("contact-lock", contact_id), timeout=CONTACT_LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        raise Defer(f"contact {contact_id} is being answered", countdown=2.0)
    try:
        with session_scope() as session:
            context = reply_context(session, message_id, history_limit=settings.history_limit,
                                    business_name=settings.business_name,
                                    current_datetime=human_datetime(datetime.now(UTC), settings.timezone))
            if context is None:  # answered already, or nothing to answer
                return None
        answer = generate_reply(get_client(), context)
        with session_scope() as session:
            return commit_reply(session, context, answer)
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            pass  # expired while we worked: another worker may hold it now, and that is fine
