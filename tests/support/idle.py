"""Wait until the pipeline is idle, so that "nothing more happened" is checked, not hoped for.

Idle: every Celery queue empty and no task held by a worker (kombu's `unacked` hash: with
`acks_late`, a running or deferred task stays there), no customer message left in `received`, no
burst timer open, and no outbox row `pending` or `sending`; the same on several checks in a row.
"""

from __future__ import annotations

import time

import redis

from celeryconfig import QUEUES
from tests.support.db import rows
from tests.support.env import TEST_REDIS_URL


def busy(broker_url: str = TEST_REDIS_URL) -> list[str]:
    """What is still going on; empty when idle. Priority sub-queues (`send\x06\x163`) count too."""
    client = redis.Redis.from_url(broker_url)
    try:
        found = [f"queue {name!r}" for queue in QUEUES for name in client.scan_iter(f"{queue}*")
                 if client.type(name) == b"list" and client.llen(name)]
        if client.hlen("unacked"):
            found.append("a task held by a worker")
    finally:
        client.close()
    if rows("SELECT 1 FROM messages WHERE direction = 'in' AND status = 'received' LIMIT 1"):
        found.append("a message in received")
    if rows("SELECT 1 FROM contacts WHERE batch_due_at IS NOT NULL LIMIT 1"):
        found.append("a burst window open")
    if rows("SELECT 1 FROM outbox WHERE status IN ('pending', 'sending') LIMIT 1"):
        found.append("an outbox row pending")
    return found


def wait_idle(broker_url: str = TEST_REDIS_URL, *, timeout: float = 60.0, checks: int = 3,
              interval: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    quiet = 0
    last: list[str] = []
    while time.monotonic() < deadline:
        last = busy(broker_url)
        quiet = 0 if last else quiet + 1
        if quiet >= checks:
            return
        time.sleep(interval)
    raise AssertionError(f"the pipeline is not idle after {timeout} s: {', '.join(last)}")
