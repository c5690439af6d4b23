"""Reconciliation end to end: 20 customers through real workers while Wappi shows accepted sends
10 s late and loses half their acknowledgements; the retries find the delivered copies, and each
customer gets one reply. The decisions themselves (settle, recheck, Wappi's clock, a repeated
text) are tested in tests/unit/test_reconcile.py."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from devstack import wait_for
from emulators.wappi import WappiEmulator
from tests.support.db import rows
from tests.support.delivery import SEND_PATHS
from tests.support.emulators import customer_says
from tests.support.env import PROFILE_ID
from tests.support.idle import wait_idle
from tests.support.polling import run_poll

CUSTOMERS = 20


@pytest.mark.usefixtures("workers", "clean")
def test_lagging_history_and_lost_acks_give_each_customer_one_reply(wappi: WappiEmulator) -> None:
    run_poll()  # first start
    # 10 s until an accepted send shows in the history; half the accepted sends lose their answer.
    wappi.set_faults({"history_lag_seconds": 10, "rate_accept_then_5xx": 0.25, "rate_accept_then_timeout": 0.25,
                      "timeout_seconds": 1.0, "paths": SEND_PATHS, "seed": 11})
    phones = [f"7702{index:07d}" for index in range(CUSTOMERS)]
    polling = threading.Event()
    polling.set()

    def beat() -> None:
        while polling.is_set():
            run_poll()
            time.sleep(1.0)

    ticker = threading.Thread(target=beat, daemon=True)
    ticker.start()
    try:
        for index, phone in enumerate(phones):
            customer_says(wappi, phone, f"Здравствуйте! Вопрос {index}: вы работаете в субботу?")
        try:
            wait_for(lambda: {item["phone"] for item in wappi.sent_messages(PROFILE_ID)} >= set(phones),
                     timeout=180, interval=0.5, message="a reply to every customer")
            wait_idle(timeout=180)
        except AssertionError:
            print("sent:", Counter(item["phone"] for item in wappi.sent_messages(PROFILE_ID)))
            print("messages:", rows("SELECT id, contact_id, direction, status, text FROM messages ORDER BY id"))
            print("outbox:", rows("SELECT id, status, attempts, error FROM outbox ORDER BY id"))
            print("dead letters:", rows("SELECT task_name, args, exception FROM dead_letters"))
            raise
    finally:
        polling.clear()
        ticker.join(timeout=30)
        wappi.set_faults()
    lost_acks = [entry for entry in wappi.requests_log() if entry.get("fault", "").startswith("accept_then")]
    assert lost_acks, "the run had no lost acknowledgement: it proved nothing"
    per_phone = Counter(item["phone"] for item in wappi.sent_messages(PROFILE_ID))
    assert {phone: count for phone, count in per_phone.items() if count != 1} == {}
    assert set(per_phone) == set(phones)
    assert rows("SELECT 1 FROM dead_letters") == []
    assert {row.status for row in rows("SELECT status FROM outbox")} == {"sent"}
