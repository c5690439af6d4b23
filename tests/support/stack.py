"""A private stack for a test that kills, restarts or reconfigures things: its own Redis (durable, so
it can restart) and workers bound to it, on the session's database and emulators."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

import devstack
from celeryconfig import QUEUES
from db.session import session_scope
from devstack import wait_for
from pipeline.recover import stranded_messages, stranded_outbox
from settings import get_settings
from tasks.chains import conversation_chain
from tests.support.db import rows

# How far ahead the recovery sweep looks when a test runs it: past every threshold it has, so what
# it finds is what beat's sweep would restart some minutes later.
SWEEP_AHEAD = timedelta(minutes=15)


class Stack(devstack.Stack):
    def __init__(self, root: Path, **settings: str) -> None:
        super().__init__(root, {**os.environ, "TASK_MAX_ATTEMPTS": "8", **settings})
        self.redis = self.start_redis(durable=True)

    def first_start(self) -> None:
        """The product's first poll through this stack's workers (what is in the chats now is history)."""
        self.send_task("pipeline.poll", "poll")
        wait_for(lambda: rows("SELECT 1 FROM profiles WHERE last_poll_at IS NOT NULL"), message="first start")

    def broker_quiet(self) -> bool:
        """No task in any queue and none held by a worker (a deferred one is held too)."""
        client = redis.Redis.from_url(self.env["REDIS_URL"])
        try:
            queued = any(client.type(name) == b"list" and client.llen(name)
                         for queue in QUEUES for name in client.scan_iter(f"{queue}*"))
            return not queued and not client.hlen("unacked")
        except redis.RedisError:
            return False  # restarting
        finally:
            client.close()

    def recover_stranded(self) -> tuple[list[int], list[int]]:
        """What beat's recovery sweep (`pipeline.recover`) does once its thresholds have passed: restart
        the messages and outbox rows nothing holds, through this stack's broker. A Redis restart can
        lose a task a worker had just popped; this is the product's answer to it."""
        settings, later = get_settings(), datetime.now(UTC) + SWEEP_AHEAD
        with session_scope() as session:
            messages = stranded_messages(session, later, settings)
        with session_scope() as session:
            outbox = stranded_outbox(session, later, settings)
        with self.app.connection_for_write() as connection:
            for message_id in messages:
                conversation_chain(message_id).apply_async(connection=connection)
        for outbox_id in outbox:
            self.send_task("pipeline.send", "send", args=[outbox_id])
        return messages, outbox
