"""A global token bucket in Redis: one limit shared by every send worker on every host.

The bucket is refilled and taken from in one Lua script on Redis's own clock, so concurrent
workers can neither overdraw it nor disagree about time. Celery's `rate_limit` is per worker and
cannot do this.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import redis

# KEYS[1] bucket hash; ARGV: capacity, refill per second, tokens wanted, key TTL seconds.
# Returns {1, 0} when taken, or {0, ms until enough tokens}.
_TAKE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2]) / 1000.0
local wanted = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now_ms
tokens = math.min(capacity, tokens + math.max(0, now_ms - at) * rate)
local result
if tokens >= wanted then
  tokens = tokens - wanted
  result = {1, 0}
else
  result = {0, math.ceil((wanted - tokens) / rate)}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now_ms)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return result
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds; 0 when allowed


class TokenBucket:
    def __init__(self, client: redis.Redis, bucket_key: str, *, per_minute: int, burst: int = 1) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self._client = client
        self._key = bucket_key
        self._capacity = max(1, burst)
        self._rate = per_minute / 60.0
        self._script = client.register_script(_TAKE)

    def take(self) -> Decision:
        ttl = int(self._capacity / self._rate) + 60
        allowed, wait_ms = self._script(keys=[self._key], args=[self._capacity, self._rate, 1, ttl])
        return Decision(allowed=bool(allowed), retry_after=int(wait_ms) / 1000.0)


def chat_gap_wait(client: redis.Redis, gap_key: str, *, min_gap: float, max_gap: float) -> float:
    """Seconds to wait before the next message to one chat; 0 means go, and the gap is reserved.

    A small random gap between consecutive sends to one chat reads as a person typing, not a bot.
    """
    gap_ms = int(random.uniform(min_gap, max_gap) * 1000)
    if gap_ms <= 0 or client.set(gap_key, "1", nx=True, px=gap_ms):
        return 0.0
    remaining = client.pttl(gap_key)
    return max(0.05, remaining / 1000.0) if remaining and remaining > 0 else 0.05
