"""Reconciliation against a Wappi that shows accepted sends late, loses acknowledgements, runs on
its own clock, and a chat where the same text legitimately goes out twice."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from emulators.wappi import WappiEmulator
from tests.conftest import PROFILE_ID, run_poll, wait_for
from tests.idle import wait_idle
from tests.test_faults import Stack
from tests.test_pipeline import customer_says, rows

CUSTOMERS = 20
SEND_PATHS = ["message/send", "message/reply"]


def faults(wappi: WappiEmulator, **config: Any) -> None:
    requests.post(f"{wappi.url}/_emulator/faults", json=config, timeout=5).raise_for_status()


def _one_reply_each(wappi: WappiEmulator, *, clock_offset: float = 0.0) -> None:
    run_poll()  # first start
    boundary = rows("SELECT history_boundary FROM profiles")[0].history_boundary
    # 10 s until an accepted send shows in the history; half the accepted sends lose their answer.
    faults(wappi, history_lag_seconds=10, rate_accept_then_5xx=0.25, rate_accept_then_timeout=0.25,
           timeout_seconds=1.0, clock_offset_seconds=clock_offset, paths=SEND_PATHS, seed=11)
    if clock_offset < 0:  # the customers write after the first start on Wappi's (slower) clock too
        wait_for(lambda: time.time() + clock_offset > boundary + 1, timeout=30, message="Wappi's clock")
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
        faults(wappi)
    lost_acks = [entry for entry in wappi.requests_log() if entry.get("fault", "").startswith("accept_then")]
    assert lost_acks, "the run had no lost acknowledgement: it proved nothing"
    per_phone = Counter(item["phone"] for item in wappi.sent_messages(PROFILE_ID))
    assert {phone: count for phone, count in per_phone.items() if count != 1} == {}
    assert set(per_phone) == set(phones)
    assert rows("SELECT 1 FROM dead_letters") == []
    assert {row.status for row in rows("SELECT status FROM outbox")} == {"sent"}


@pytest.mark.usefixtures("workers", "clean")
def test_lagging_history_and_lost_acks_give_each_customer_one_reply(wappi: WappiEmulator) -> None:
    _one_reply_each(wappi)


@pytest.mark.usefixtures("workers", "clean")
def test_a_worker_clock_8s_ahead_of_wappi_still_finds_the_delivered_copy(wappi: WappiEmulator) -> None:
    _one_reply_each(wappi, clock_offset=-8.0)


# -- the same text twice ---------------------------------------------------------------------

@pytest.fixture()
def quick_stack(clean: None, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path, RECONCILE_SETTLE="2", RECONCILE_RECHECK="5")
    try:
        yield stack
    finally:
        stack.close()


def outbox_row(contact_id: int, profile_id: int, key: str, body: str) -> int:
    from db.models import Outbox
    from db.session import session_scope

    with session_scope() as session:
        row = Outbox(profile_id=profile_id, contact_id=contact_id, idempotency_key=key, kind="notice",
                     body=body, status="pending")
        session.add(row)
        session.flush()
        return row.id


def a_contact(phone: str) -> tuple[int, int]:
    from db.models import Contact, Profile
    from db.session import session_scope

    with session_scope() as session:
        profile = Profile(profile_id=PROFILE_ID, name="test")
        session.add(profile)
        session.flush()
        contact = Contact(profile_id=profile.id, phone=phone, chat_id=f"{phone}@c.us", is_client=True)
        session.add(contact)
        session.flush()
        return contact.id, profile.id


def test_a_repeated_text_is_not_taken_for_the_delivered_copy(quick_stack: Stack, wappi: WappiEmulator) -> None:
    quick_stack.workers.start("send", "send", concurrency=1)
    phone = "77030000001"
    contact_id, profile_id = a_contact(phone)
    text = "Напоминаем: завтра у нас скидка 10 % на всё."
    first = outbox_row(contact_id, profile_id, "test:first", text)
    quick_stack.app.send_task("pipeline.send", args=[first], queue="send")
    wait_for(lambda: rows("SELECT 1 FROM outbox WHERE id = :id AND status = 'sent'", id=first),
             message="the first copy to go out")
    # The second copy's first send fails before Wappi took it: nothing reached the customer.
    faults(wappi, fail_next=1, fail_status=503, paths=SEND_PATHS)
    second = outbox_row(contact_id, profile_id, "test:second", text)
    quick_stack.app.send_task("pipeline.send", args=[second], queue="send")
    wait_for(lambda: rows("SELECT 1 FROM outbox WHERE id = :id AND status IN ('sent', 'failed')", id=second),
             timeout=60, message="the second copy to settle")
    rows_now = rows("SELECT id, status, provider_message_id FROM outbox ORDER BY id")
    assert [row.status for row in rows_now] == ["sent", "sent"]
    assert rows_now[0].provider_message_id != rows_now[1].provider_message_id
    assert [item["body"] for item in wappi.sent_messages(PROFILE_ID)] == [text, text]


# -- the recovery sweep restarts only what nothing holds --------------------------------------

@pytest.mark.usefixtures("workers", "clean")
def test_the_sweep_leaves_deferred_rows_alone_and_restarts_a_stranded_one_once(wappi: WappiEmulator) -> None:
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from db.session import get_engine
    from tasks.recover import recover

    contact_id, profile_id = a_contact("77030000009")
    other_contact = outbox_contact(profile_id, "77030000010")
    deferred = outbox_row(contact_id, profile_id, "test:deferred", "Ждёт лимита отправки")
    stranded = outbox_row(other_contact, profile_id, "test:stranded", "Никто не держит")
    long_ago = datetime.now(UTC) - timedelta(hours=3)
    with get_engine().begin() as connection:  # both untouched for hours; one is held by a deferral
        connection.execute(sa.text("UPDATE outbox SET updated_at = :at, created_at = :at"), {"at": long_ago})
        connection.execute(sa.text("UPDATE outbox SET next_attempt_at = :due WHERE id = :id"),
                           {"due": datetime.now(UTC) + timedelta(seconds=60), "id": deferred})
    assert recover() == 1
    assert recover() == 0  # restarted once, not every minute
    wait_for(lambda: rows("SELECT 1 FROM outbox WHERE id = :id AND status = 'sent'", id=stranded),
             message="the stranded row to go out")
    assert [item["body"] for item in wappi.sent_messages(PROFILE_ID)] == ["Никто не держит"]
    with get_engine().begin() as connection:  # nothing really holds the fake deferral: settle it
        connection.execute(sa.text("UPDATE outbox SET status = 'failed' WHERE id = :id"), {"id": deferred})


def outbox_contact(profile_id: int, phone: str) -> int:
    from db.models import Contact
    from db.session import session_scope

    with session_scope() as session:
        contact = Contact(profile_id=profile_id, phone=phone, chat_id=f"{phone}@c.us", is_client=True)
        session.add(contact)
        session.flush()
        return contact.id


def test_a_touch_behind_replies_waits_at_least_15_seconds_with_jitter() -> None:
    from pipeline.send import yield_wait

    waits = {yield_wait() for _ in range(50)}
    assert min(waits) >= 15.0 and max(waits) <= 30.0 and len(waits) > 1
