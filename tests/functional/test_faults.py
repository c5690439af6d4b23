"""Fault injection: 20 conversations while Wappi fails 20 % of calls, Gemini answers 10 % with 429,
a send worker is SIGKILLed mid-send and Redis restarts. Every message gets exactly one reply or a
dead-letter row; no chat gets a reply twice. A task that a worker had just popped when Redis went
down is lost with it; the recovery sweep restarts its work, so the test runs the sweep whenever
nothing is queued or held, as beat runs it every minute."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from typing import Any

import requests

from celeryconfig import QUEUES
from devstack import wait_for
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from tests.support.db import rows
from tests.support.emulators import customer_says
from tests.support.env import PROFILE_ID
from tests.support.stack import Stack

CONVERSATIONS = 20


def faults(wappi: WappiEmulator, **config: Any) -> None:
    requests.post(f"{wappi.url}/_emulator/faults", json=config, timeout=5).raise_for_status()


def test_no_reply_lost_or_doubled_under_faults(stack: Stack, wappi: WappiEmulator,
                                               gemini: GeminiEmulator) -> None:
    stack.workers.start("stages", [queue for queue in QUEUES if queue != "send"], concurrency=2)
    stack.workers.start("send", "send", concurrency=1)

    polling = threading.Event()
    polling.set()

    def beat() -> None:  # what beat does: a poll every second
        while polling.is_set():
            stack.send_task("pipeline.poll", "poll")
            time.sleep(1.0)

    ticker = threading.Thread(target=beat, daemon=True)
    ticker.start()
    try:
        wait_for(lambda: rows("SELECT 1 FROM profiles WHERE last_poll_at IS NOT NULL"), message="first start")

        # 1. The first send is accepted by Wappi and then hangs: the worker is killed right there.
        faults(wappi, rate_accept_then_timeout=1.0, timeout_seconds=2.5, paths=["message/reply", "message/send"])
        phones = [f"7701{index:07d}" for index in range(CONVERSATIONS)]
        customer_says(wappi, phones[0], "Здравствуйте! Сколько стоит доставка?")
        wait_for(lambda: wappi.sent_messages(PROFILE_ID), message="Wappi to accept the first send")
        children = stack.workers.children("send")
        assert children, "the send worker has no pool process"
        for child in children:
            os.kill(child, signal.SIGKILL)

        # 2. From now on: 20 % of Wappi calls fail (5xx or a timeout), 10 % of model calls get 429.
        faults(wappi, rate_5xx=0.1, rate_timeout=0.1, timeout_seconds=4.0, seed=7)
        requests.post(f"{gemini.url}/_emulator/faults", json={"rate_429": 0.1, "retry_delay": "1s", "seed": 7},
                      timeout=5).raise_for_status()
        for index, phone in enumerate(phones[1:], start=1):
            customer_says(wappi, phone, f"Вопрос номер {index}: есть ли у вас доставка?")

        # 3. Redis restarts once, with work in flight.
        wait_for(lambda: len({item["phone"] for item in wappi.sent_messages(PROFILE_ID)}) >= 5, timeout=120,
                 message="a few replies before the Redis restart")
        stack.redis.restart()

        def settled() -> bool:
            inbound = rows("SELECT id, status FROM messages WHERE direction = 'in'")
            return len(inbound) == CONVERSATIONS and all(row.status in ("answered", "failed") for row in inbound) \
                and not rows("SELECT 1 FROM outbox WHERE status IN ('pending', 'sending')")

        quiet_checks: list[bool] = []
        recovered: list[tuple[list[int], list[int]]] = []

        def settled_or_recovered() -> bool:
            """Settled; or, once nothing is queued or held for 3 checks in a row while work is left,
            the recovery sweep runs, as beat runs it every minute."""
            if settled():
                return True
            quiet_checks.append(stack.broker_quiet())
            if quiet_checks[-3:] == [True, True, True]:
                recovered.append(stack.recover_stranded())
                quiet_checks.clear()
            return False

        try:
            wait_for(settled_or_recovered, timeout=240, interval=1.0, message="every conversation to settle")
        except AssertionError:
            print("messages:", rows("SELECT id, status, text FROM messages ORDER BY id"))
            print("outbox:", rows("SELECT id, status, attempts, error FROM outbox ORDER BY id"))
            print("recovery sweeps (messages, outbox rows restarted):", recovered)
            for name in ("stages", "send"):
                print(f"--- worker {name} ---\n" + stack.workers.log(name)[-6000:])
            raise
    finally:
        polling.clear()
        ticker.join(timeout=5)
        faults(wappi)

    sent = wappi.sent_messages(PROFILE_ID)
    per_phone = Counter(item["phone"] for item in sent)
    assert not [phone for phone, count in per_phone.items() if count > 1], f"duplicates: {per_phone}"
    bodies = Counter((item["phone"], item["body"]) for item in sent)
    assert max(bodies.values()) == 1

    letters = rows("SELECT task_name, args, exception FROM dead_letters")
    failed_outbox = rows("SELECT id FROM outbox WHERE status = 'failed'")
    failed_messages = rows("SELECT id FROM messages WHERE direction = 'in' AND status = 'failed'")
    for phone in phones:
        if per_phone[phone] == 1:
            continue
        # No reply: there must be a dead letter saying why (nothing silently dropped).
        assert letters, f"{phone} got no reply and there is no dead letter"
    assert len(failed_outbox) + len(failed_messages) == len(letters)
    assert sum(per_phone.values()) + len(letters) == CONVERSATIONS
    # The killed send was reconciled from the chat history, not sent again.
    assert per_phone[phones[0]] == 1
