"""A global token bucket in Redis: one limit shared by every send worker on every host.

The bucket is refilled and taken from in one Lua script on Redis's own clock, so concurrent
workers can neither overdraw it nor disagree about time. The same script reserves the per-chat gap
first, so a send costs one round trip for both. Celery's `rate_limit` is per worker and
cannot do this.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import redis

# KEYS[1] bucket hash, KEYS[2] (optional) the chat's gap key; ARGV: capacity, refill per second,
# tokens wanted, key TTL seconds, gap ms (0: no gap). The gap is reserved first (SET NX PX, as
# before a send to that chat), then a token is taken: one round trip for both.
# Returns {1, 0, 0} when taken, {0, ms until enough tokens, 0} when the bucket is empty, or
# {0, 0, ms left of the chat's gap} when the chat got a message moments ago.
_TAKE = """
local gap_ms = tonumber(ARGV[5] or '0')
if KEYS[2] and gap_ms > 0 and not redis.call('SET', KEYS[2], '1', 'NX', 'PX', gap_ms) then
  local remaining = redis.call('PTTL', KEYS[2])
  return {0, 0, math.max(remaining, 1)}
end
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
  result = {1, 0, 0}
else
  result = {0, math.ceil((wanted - tokens) / rate), 0}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now_ms)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return result
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds; 0 when allowed
    chat_gap: float = 0.0  # seconds left of the chat's gap, when that is what refused


class TokenBucket:
    def __init__(self, client: redis.Redis, bucket_key: str, *, per_minute: int, burst: int = 1) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self._client = client
        self._key = bucket_key
        self._capacity = max(1, burst)
        self._rate = per_minute / 60.0
        self._script = client.register_script(_TAKE)

    def take(self, chat_gap_key: str | None = None, *, min_gap: float = 0.0, max_gap: float = 0.0) -> Decision:
        """Take a token. With `chat_gap_key`, first reserve that chat's gap (a random `min_gap`-
        `max_gap` seconds before the next message to it: a small random gap between consecutive
        sends reads as a person typing, not a bot); while the gap holds, nothing is taken."""
        ttl = int(self._capacity / self._rate) + 60
        gap_ms = int(random.uniform(min_gap, max_gap) * 1000) if chat_gap_key is not None else 0
        keys = [self._key] if chat_gap_key is None else [self._key, chat_gap_key]
        allowed, wait_ms, gap_left_ms = self._script(keys=keys, args=[self._capacity, self._rate, 1, ttl, gap_ms])
        if int(gap_left_ms) > 0:
            return Decision(allowed=False, retry_after=0.0, chat_gap=max(0.05, int(gap_left_ms) / 1000.0))
        return Decision(allowed=bool(allowed), retry_after=int(wait_ms) / 1000.0)
