"""The kombu Redis-transport patch (infra/kombu_patch.py), against a real Redis.

When Redis restarts, the worker's channel is closed and its unacknowledged messages are handed back
to their queues. A task that was running then finishes and acknowledges its message on the closed
channel: unpatched kombu 5.7 raises `AttributeError: 'NoneType' object has no attribute 'client'`
from the worker's event loop, and the worker stops consuming for good."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kombu import Connection, Exchange, Queue

from infra import kombu_patch
from tests.support.env import TEST_REDIS_URL

QUEUE = Queue("kombu-patch-test", Exchange("kombu-patch-test"), routing_key="kombu-patch-test")


@pytest.fixture()
def connection(redis_client: object) -> Iterator[Connection]:
    kombu_patch.apply(TEST_REDIS_URL)
    with Connection(TEST_REDIS_URL) as connection:
        with connection.channel() as channel:
            QUEUE(channel).declare()
            QUEUE(channel).purge()
        yield connection


def _deliver(connection: Connection) -> object:
    with connection.Producer() as producer:
        producer.publish({"n": 1}, exchange=QUEUE.exchange, routing_key=QUEUE.routing_key, declare=[QUEUE])
    channel = connection.channel()
    message = QUEUE(channel).get(no_ack=False)
    assert message is not None
    return message


@pytest.mark.parametrize("settle", ["ack", "reject"])
def test_settling_a_message_on_a_channel_closed_by_a_broker_restart_does_not_crash(
        connection: Connection, settle: str) -> None:
    message = _deliver(connection)
    channel = message.channel  # type: ignore[attr-defined]
    # What losing the broker leaves of the worker's channel: its messages handed back, the channel
    # released by the transport, its connection pools dropped.
    channel.close()
    channel._disconnect_pools()
    getattr(message, settle)()  # the task finished afterwards: unpatched, AttributeError
    with connection.channel() as fresh:  # handed back at the close: it is redelivered, not lost
        assert QUEUE(fresh).get(no_ack=True) is not None


def test_a_message_on_a_live_channel_is_still_acknowledged(connection: Connection) -> None:
    message = _deliver(connection)
    message.ack()  # type: ignore[attr-defined]
    with connection.channel() as channel:
        assert QUEUE(channel).get(no_ack=True) is None  # gone: not handed back
