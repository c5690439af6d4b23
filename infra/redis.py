"""The process's Redis connection for locks, counters and limits (not the Celery broker's)."""

from __future__ import annotations

import os

import redis

from settings import get_settings

_client: redis.Redis | None = None
_client_pid: int | None = None


def get_redis() -> redis.Redis:
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=10,
                                       socket_connect_timeout=5, health_check_interval=25)
        _client_pid = os.getpid()
    return _client


def key(*parts: object) -> str:
    """Every key of ours carries one prefix, so an operator can tell them from Celery's."""
    return "assistant:" + ":".join(str(part) for part in parts)
