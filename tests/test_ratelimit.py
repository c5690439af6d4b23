"""The global send limit and the per-chat gap, on real Redis, shared by separate connections."""

from __future__ import annotations

import time
from typing import Any

import redis

from infra.ratelimit import TokenBucket, chat_gap_wait
from tests.conftest import TEST_REDIS_URL


def test_bucket_is_shared_by_every_worker(redis_client: Any) -> None:
    redis_client.delete("assistant:test-bucket")
    # Two connections stand for two send workers on two hosts.
    hosts = [redis.Redis.from_url(TEST_REDIS_URL) for _ in range(2)]
    buckets = [TokenBucket(host, "assistant:test-bucket", per_minute=20, burst=3) for host in hosts]
    decisions = [buckets[index % 2].take() for index in range(6)]
    assert [decision.allowed for decision in decisions] == [True, True, True, False, False, False]
    # 20 a minute is one every 3 s: the refused ones are told to come back within that.
    assert all(0 < decision.retry_after <= 3.0 for decision in decisions[3:])


def test_bucket_refills_at_the_configured_rate(redis_client: Any) -> None:
    redis_client.delete("assistant:fast-bucket")
    bucket = TokenBucket(redis_client, "assistant:fast-bucket", per_minute=600, burst=1)  # one per 0.1 s
    assert bucket.take().allowed
    refused = bucket.take()
    assert not refused.allowed
    time.sleep(refused.retry_after + 0.05)
    assert bucket.take().allowed


def test_chat_gap_spaces_messages_to_one_chat_only(redis_client: Any) -> None:
    for name in ("assistant:gap:a", "assistant:gap:b"):
        redis_client.delete(name)
    assert chat_gap_wait(redis_client, "assistant:gap:a", min_gap=1.0, max_gap=2.0) == 0.0
    wait = chat_gap_wait(redis_client, "assistant:gap:a", min_gap=1.0, max_gap=2.0)
    assert 0.5 < wait <= 2.0
    assert chat_gap_wait(redis_client, "assistant:gap:b", min_gap=1.0, max_gap=2.0) == 0.0
