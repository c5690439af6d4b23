"""The global send limit and the per-chat gap, on real Redis, shared by separate connections; and the
send stage keeping to them, replies to customers going before follow-up touches."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from sqlalchemy.orm import Session

from db.session import SessionFactory
from domain.states import OutboxKind
from emulators.wappi import WappiEmulator
from infra.ratelimit import Decision, TokenBucket
from pipeline.locks import Defer
from tests.support import chain
from tests.support.db import add_contact, add_outbox_row, rows_in
from tests.support.delivery import settings_with
from tests.support.emulators import replies_to
from tests.support.env import PROFILE_ID, TEST_REDIS_URL


def test_bucket_is_shared_by_every_worker(redis_client: Any) -> None:
    redis_client.delete("assistant:test-bucket")
    # Two connections stand for two send workers on two hosts.
    hosts = [redis.Redis.from_url(TEST_REDIS_URL) for _ in range(2)]
    buckets = [TokenBucket(host, "assistant:test-bucket", per_minute=20, burst=3) for host in hosts]
    decisions = [buckets[index % 2].take() for index in range(6)]
    assert [decision.allowed for decision in decisions] == [True, True, True, False, False, False]
    # 20 a minute is one every 3 s: the refused ones are told to come back within that.
    assert all(0 < decision.retry_after <= 3.0 for decision in decisions[3:])
    for host in hosts:
        host.close()


def test_bucket_refills_at_the_configured_rate(redis_client: Any) -> None:
    redis_client.delete("assistant:fast-bucket")
    bucket = TokenBucket(redis_client, "assistant:fast-bucket", per_minute=600, burst=1)  # one per 0.1 s
    assert bucket.take().allowed
    refused = bucket.take()
    assert not refused.allowed
    # The bucket runs on Redis's own clock (TIME), so this one waits for real: a tenth of a second.
    time.sleep(refused.retry_after + 0.05)
    assert bucket.take().allowed


def test_chat_gap_spaces_messages_to_one_chat_only(redis_client: Any) -> None:
    for name in ("assistant:gap:a", "assistant:gap:b", "assistant:gap-bucket"):
        redis_client.delete(name)
    bucket = TokenBucket(redis_client, "assistant:gap-bucket", per_minute=1, burst=3)
    assert bucket.take("assistant:gap:a", min_gap=1.0, max_gap=2.0) == Decision(allowed=True, retry_after=0.0)
    refused = bucket.take("assistant:gap:a", min_gap=1.0, max_gap=2.0)
    assert not refused.allowed and 0.5 < refused.chat_gap <= 2.0
    assert bucket.take("assistant:gap:b", min_gap=1.0, max_gap=2.0).allowed
    # The gap refused without taking a token: two were taken, one is left.
    assert bucket.take().allowed and not bucket.take().allowed


def test_a_second_message_to_one_chat_waits_for_the_gap_and_another_chat_does_not(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator) -> None:
    settings = settings_with(send_chat_gap_min=2.0, send_chat_gap_max=2.0)
    first_contact, profile_id = add_contact(session, "77050000001")
    other_contact, _ = add_contact(session, "77050000002")
    first = add_outbox_row(session, first_contact, profile_id, "test:a1", "Первое сообщение")
    second = add_outbox_row(session, first_contact, profile_id, "test:a2", "Второе сообщение")
    elsewhere = add_outbox_row(session, other_contact, profile_id, "test:b1", "Другой чат")
    assert chain.send(sessions, first, settings) == first
    with pytest.raises(Defer, match="got a message moments ago") as deferral:
        chain.send(sessions, second, settings)
    assert 0 < deferral.value.countdown <= 2.0
    assert chain.send(sessions, elsewhere, settings) == elsewhere
    assert [item["body"] for item in replies_to(wappi, "77050000001")] == ["Первое сообщение"]
    assert [item["body"] for item in replies_to(wappi, "77050000002")] == ["Другой чат"]


def test_a_reply_overtakes_waiting_touches_within_the_shared_limit(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator) -> None:
    """Touches give way while a reply to a customer waits; the reply, then the touch, keep to one
    limit for the profile (60 a minute, a burst of 1)."""
    settings = settings_with(send_rate_per_minute=60, send_burst=1)
    touched = [add_contact(session, f"770500001{index:02d}", last_author="bot") for index in range(3)]
    touches = [add_outbox_row(session, contact_id, profile_id, f"follow_up:0:{index}", f"Касание {index}",
                          kind=OutboxKind.FOLLOW_UP) for index, (contact_id, profile_id) in enumerate(touched)]
    customer, profile_id = add_contact(session, "77050000199")
    reply = add_outbox_row(session, customer, profile_id, "reply:test", "Ответ клиенту", kind=OutboxKind.REPLY)

    for touch in touches:
        with pytest.raises(Defer, match="replies to customers are waiting") as deferral:
            chain.send(sessions, touch, settings)
        assert 15.0 <= deferral.value.countdown <= 30.0
    assert wappi.sent_messages(PROFILE_ID) == []
    assert rows_in(session, "SELECT count(*) FROM outbox WHERE next_attempt_at IS NOT NULL")[0][0] == 3

    assert chain.send(sessions, reply, settings) == reply
    # No reply waits now, but the reply took the only token: the touch waits for the next one.
    with pytest.raises(Defer, match="at its send limit") as deferral:
        chain.send(sessions, touches[0], settings)
    assert 0 < deferral.value.countdown <= 1.5
    assert [item["body"] for item in wappi.sent_messages(PROFILE_ID)] == ["Ответ клиенту"]
    assert rows_in(session, "SELECT status FROM outbox WHERE id = :id", id=reply)[0].status == "sent"
