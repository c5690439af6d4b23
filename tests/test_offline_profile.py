"""A number that goes offline: sends are held (not burned into dead letters) while Wappi says the
profile is not authorized or not paid, go out once and in order when it is back, and a reply
held longer than HOLD_MAX_AGE is dead-lettered with a clear reason instead of arriving late."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from emulators.wappi import WappiEmulator
from tests.conftest import PROFILE_ID, wait_for
from tests.test_faults import Stack
from tests.test_pipeline import rows
from tests.test_reconcile import a_contact, outbox_row

DOWN_STATES = [({"authorized": False}, {"authorized": True}, "not authorized"),
               ({"paid": False}, {"paid": True}, "not paid")]


@pytest.fixture()
def stack(clean: None, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path, HOLD_CHECK_INTERVAL="1", HOLD_MAX_AGE="3600", SEND_CHAT_GAP_MIN="0",
                  SEND_CHAT_GAP_MAX="0")
    try:
        yield stack
    finally:
        stack.close()


def set_profile(wappi: WappiEmulator, **state: Any) -> None:
    requests.post(f"{wappi.url}/_emulator/profile", json={"profile_id": PROFILE_ID, **state},
                  timeout=5).raise_for_status()


def status_checks(wappi: WappiEmulator) -> int:
    return sum(1 for entry in wappi.requests_log() if entry["path"].endswith("get/status"))


@pytest.mark.parametrize(("down", "up", "reason"), DOWN_STATES, ids=["unauthorized", "unpaid"])
def test_sends_are_held_while_the_profile_is_down_and_go_out_once_in_order(
        stack: Stack, wappi: WappiEmulator, down: dict[str, bool], up: dict[str, bool], reason: str) -> None:
    stack.workers.start("send", "send", concurrency=2)
    contact_id, profile_id = a_contact("77040000001")
    set_profile(wappi, **down)
    bodies = [f"Ответ номер {index}" for index in range(3)]
    for index, body in enumerate(bodies):
        stack.app.send_task("pipeline.send", args=[outbox_row(contact_id, profile_id, f"test:{index}", body)],
                            queue="send")
    wait_for(lambda: rows("SELECT 1 FROM profiles WHERE down_reason = :reason", reason=reason),
             message="the profile to be marked down")
    # Held for several status checks: nothing sent, nothing dead-lettered, every row still waiting.
    checks = status_checks(wappi)
    wait_for(lambda: status_checks(wappi) >= checks + 3, timeout=30, message="three more status checks")
    assert wappi.sent_messages(PROFILE_ID) == []
    assert rows("SELECT 1 FROM dead_letters") == []
    assert {row.status for row in rows("SELECT status FROM outbox")} == {"pending"}

    set_profile(wappi, **up)
    wait_for(lambda: {row.status for row in rows("SELECT status FROM outbox")} == {"sent"}, timeout=60,
             message="the held sends to go out")
    assert [item["body"] for item in wappi.sent_messages(PROFILE_ID)] == bodies
    assert rows("SELECT down_reason FROM profiles")[0].down_reason is None
    log = stack.workers.log("send")
    assert log.count(f"cannot send ({reason}): sends are held") == 1, "the outage is logged once, not every retry"
    assert log.count("can send again") == 1


def test_a_reply_held_longer_than_hold_max_age_is_dead_lettered(stack: Stack, wappi: WappiEmulator) -> None:
    from db.models import Outbox
    from db.session import session_scope

    stack.workers.start("send", "send", concurrency=1)
    contact_id, profile_id = a_contact("77040000002")
    set_profile(wappi, authorized=False)
    old = outbox_row(contact_id, profile_id, "test:old", "Ответ, которому уже два часа")
    with session_scope() as session:
        row = session.get(Outbox, old)
        assert row is not None
        row.created_at = datetime.now(UTC) - timedelta(hours=2)
    stack.app.send_task("pipeline.send", args=[old], queue="send")
    letters = wait_for(lambda: rows("SELECT task_name, exception FROM dead_letters"), timeout=30,
                       message="a dead letter for the stale reply")
    assert letters[0].task_name == "pipeline.send" and "HOLD_MAX_AGE" in letters[0].exception
    assert "not authorized" in letters[0].exception
    assert rows("SELECT status FROM outbox")[0].status == "failed"
    set_profile(wappi, authorized=True)
    assert wappi.sent_messages(PROFILE_ID) == []


def test_the_poll_of_a_refused_profile_backs_off_and_resumes_when_it_is_back(
        clean: None, wappi: WappiEmulator, caplog: pytest.LogCaptureFixture) -> None:
    """Wappi refuses an unauthorized profile: the poll does not hammer it every tick, marks it down
    with the reason (so /health says why), logs the outage once, and polls again once it is back."""
    from tasks.poll import poll

    def chats_calls() -> int:
        return sum(1 for entry in wappi.requests_log() if entry["path"].endswith("chats/get"))

    poll.run()  # first start: the profile is created and its history recorded
    set_profile(wappi, authorized=False)
    before = chats_calls()
    with caplog.at_level("DEBUG", logger="tasks.poll"):
        for _ in range(6):
            poll.run()
    assert chats_calls() == before + 1, "a refused profile is asked once, then backed off"
    assert rows("SELECT down_reason FROM profiles")[0].down_reason == "not authorized"
    assert sum("refused by Wappi" in record.getMessage() for record in caplog.records) == 1

    set_profile(wappi, authorized=True)
    wait_for(lambda: poll.run() is not None and chats_calls() > before + 1, timeout=30, interval=0.5,
             message="the poll to try the profile again after its backoff")
    assert rows("SELECT down_reason FROM profiles")[0].down_reason is None
