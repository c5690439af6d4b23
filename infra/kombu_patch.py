"""Work around a kombu 5.7 Redis-transport bug: a worker holding unacknowledged messages (say, a
retry waiting for its countdown) died with `AttributeError: 'NoneType' object has no attribute
'hostname'` when Redis restarted, because the channel tried to hand the messages back through a
transport that had already been released.

The same hand-back, tried while Redis is still down, left the messages parked until the visibility
timeout (an hour). The patch retries it on a fresh connection, waiting briefly for Redis to return,
so the messages go straight back to their queues. If Redis stays away it gives up with a connection
error, which kombu handles as usual (the worker reconnects; the messages come back after the
visibility timeout, and the recovery sweep covers the database side).

A task that was running while this happened finishes afterwards and acknowledges (or rejects) its
message on the released channel; kombu then raised `AttributeError: 'NoneType' object has no
attribute 'client'` in the worker's event loop, and the worker stopped consuming for good. Its
message was handed back already, so there is nothing left to settle: the patch skips it, and the
redelivery costs a no-op (every stage is idempotent).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)
RESTORE_PATIENCE = 20.0  # seconds to wait for a restarting Redis

_original_restore_unacked = kombu_redis.QoS.restore_unacked
_original_ack = kombu_redis.QoS.ack
_original_reject = kombu_redis.QoS.reject


def _released(qos: Any) -> bool:
    """The channel was released by the transport (the broker connection was lost)."""
    return getattr(qos.channel, "connection", None) is None


def _ack(self: Any, delivery_tag: Any) -> Any:
    if _released(self):
        log.info("message %s was handed back when the broker connection was lost; not acknowledged",
                 delivery_tag)
        return None
    return _original_ack(self, delivery_tag)


def _reject(self: Any, delivery_tag: Any, requeue: bool = False) -> Any:
    if _released(self):
        log.info("message %s was handed back when the broker connection was lost; not rejected", delivery_tag)
        return None
    return _original_reject(self, delivery_tag, requeue=requeue)


def apply(broker_url: str) -> None:
    if getattr(kombu_redis.QoS.restore_unacked, "patched_by_assistant", False):
        return

    def restore_unacked(self: Any, client: Any = None) -> Any:
        try:
            return _original_restore_unacked(self, client)
        except (AttributeError, redis.ConnectionError, redis.TimeoutError):
            if not self._delivered:
                return None
        deadline = time.monotonic() + RESTORE_PATIENCE
        while True:
            try:
                with redis.Redis.from_url(broker_url, socket_timeout=5, socket_connect_timeout=2) as fresh:
                    count = len(self._delivered)
                    for tag in list(self._delivered):
                        self.restore_by_tag(tag, client=fresh)
                    self._delivered.clear()
                log.warning("restored %d unacknowledged message(s) after losing the broker", count)
                return None
            except redis.RedisError as exc:
                if time.monotonic() > deadline:
                    log.error("could not restore %d unacknowledged message(s): %s; they return after "
                              "the visibility timeout", len(self._delivered), exc)
                    raise
                time.sleep(0.5)

    restore_unacked.patched_by_assistant = True  # type: ignore[attr-defined]
    kombu_redis.QoS.restore_unacked = restore_unacked  # type: ignore[method-assign]  # the point of the patch
    kombu_redis.QoS.ack = _ack  # type: ignore[method-assign]
    kombu_redis.QoS.reject = _reject  # type: ignore[method-assign]
