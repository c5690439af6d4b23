"""Waiting without failing: `Defer` (run again later, at no cost to the retry budget) and the short
Redis locks that turn "busy" into one.

Each lock outlives the hard time limit of the task that holds it (celeryconfig.STAGES), so it never
expires under a live run; a worker killed mid-run frees it at that limit at the latest."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import redis

from celeryconfig import hard_limit
from infra.redis import get_redis, key

LOCK_MARGIN = 10  # seconds a lock outlives its task's hard time limit


class Defer(Exception):
    """Run this task again after `countdown` seconds; does not count as a failed attempt."""

    def __init__(self, reason: str, countdown: float) -> None:
        super().__init__(reason)
        self.countdown = countdown


def lock_seconds(*task_names: str) -> int:
    """How long a lock held by any of these tasks lives."""
    return max(hard_limit(name) for name in task_names) + LOCK_MARGIN


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


# One conversation step at a time per contact (classify or respond), so answers follow the
# customer's messages in order.
CONTACT_LOCK_SECONDS = lock_seconds("pipeline.classify", "pipeline.respond")


def contact_turn(contact_id: int) -> AbstractContextManager[None]:
    return held("contact-lock", contact_id, timeout=CONTACT_LOCK_SECONDS, busy_retry=2.0, what="contact")
