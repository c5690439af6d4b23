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


# -- replies before follow-up touches, within one shared limit -------------------------------

def test_a_reply_overtakes_a_backlog_of_touches_within_the_shared_limit(clean: None, tmp_path: Any,
                                                                        wappi: Any) -> None:
    from db.models import Contact, Outbox, Profile
    from db.session import session_scope
    from tests.conftest import PROFILE_ID, wait_for
    from tests.test_faults import Stack

    stack = Stack(tmp_path, SEND_RATE_PER_MINUTE="60", SEND_BURST="1")
    try:
        # As the Procfile runs them: replies on `send`, touches on `followup`.
        stack.workers.start("send", "send", concurrency=2)
        stack.workers.start("followup", "followup", concurrency=2)
        with session_scope() as session:
            profile = Profile(profile_id=PROFILE_ID, name="test")
            session.add(profile)
            session.flush()
            contacts = [Contact(profile_id=profile.id, phone=f"7705000{index:04d}",
                                chat_id=f"7705000{index:04d}@c.us", is_client=True, last_author="bot")
                        for index in range(13)]
            session.add_all(contacts)
            session.flush()
            touches = [Outbox(profile_id=profile.id, contact_id=contact.id, idempotency_key=f"follow_up:0:{index}",
                              kind="follow_up", body=f"Касание {index}", status="pending")
                       for index, contact in enumerate(contacts[:12])]
            session.add_all(touches)
            session.flush()
            touch_ids = [touch.id for touch in touches]
            profile_pk, reply_contact = profile.id, contacts[12].id
        for touch_id in touch_ids:
            stack.app.send_task("pipeline.send", args=[touch_id], queue="followup")
        wait_for(lambda: len(wappi.sent_messages(PROFILE_ID)) >= 2, message="the touches to start going out")
        with session_scope() as session:
            reply = Outbox(profile_id=profile_pk, contact_id=reply_contact, idempotency_key="reply:test",
                           kind="reply", body="Ответ клиенту", status="pending")
            session.add(reply)
            session.flush()
            reply_id = reply.id
        already = len(wappi.sent_messages(PROFILE_ID))
        stack.app.send_task("pipeline.send", args=[reply_id], queue="send")
        wait_for(lambda: len(wappi.sent_messages(PROFILE_ID)) == 13, timeout=90, message="everything to go out")
        sent = wappi.sent_messages(PROFILE_ID)
        position = [item["body"] for item in sent].index("Ответ клиенту")
        # At most one touch that already held a token goes between; 12 queued ahead did not.
        assert position <= already + 1, [item["body"] for item in sent]
        # The limit held for all of them together: 60 a minute, a burst of 1.
        times = sorted(item["accepted_at"] for item in sent)
        assert times[-1] - times[0] >= (len(times) - 1) * 1.0 - 0.5
    finally:
        stack.close()
