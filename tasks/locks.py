"""Short Redis locks that turn "busy" into a Defer (a retry that costs no attempt)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import redis

from infra.redis import get_redis, key
from tasks.base import Defer


@contextmanager
def held(name: str, ident: object, *, timeout: float, busy_retry: float, what: str) -> Iterator[None]:
    """Hold `name:ident` for the block, or Defer when another worker holds it."""
    lock = get_redis().lock(key(name, ident), timeout=timeout)
    if not lock.acquire(blocking=False):
        raise Defer(f"{what} {ident} is busy", countdown=busy_retry)
    try:
        yield
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            pass  # it expired while we worked; another worker may hold it now, which is fine


# One conversation step at a time per contact (classify or respond), longer than either's
# hard time limit, so answers follow the customer's messages in order.
CONTACT_LOCK_SECONDS = 190


def contact_turn(contact_id: int) -> AbstractContextManager[None]:
    return held("contact-lock", contact_id, timeout=CONTACT_LOCK_SECONDS, busy_retry=2.0, what="contact")
