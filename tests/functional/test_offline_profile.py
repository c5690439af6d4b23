"""A number that goes offline, through a real send worker: sends are held (deferred, not burned into
dead letters) while Wappi says the profile is not authorized, and go out once and in order when
it is back. The rules (either reason, one status check per interval, HOLD_MAX_AGE, the poll's
backoff) are tested in tests/unit/test_offline_profile.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import wait_for
from emulators.wappi import WappiEmulator
from tests.support.db import a_contact, outbox_row, rows
from tests.support.env import PROFILE_ID
from tests.support.stack import Stack


@pytest.fixture()
def stack(clean: None, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path, HOLD_CHECK_INTERVAL="1", HOLD_MAX_AGE="3600", SEND_CHAT_GAP_MIN="0",
                  SEND_CHAT_GAP_MAX="0")
    try:
        yield stack
    finally:
        stack.close()


def status_checks(wappi: WappiEmulator) -> int:
    return sum(1 for entry in wappi.requests_log() if entry["path"].endswith("get/status"))


def test_sends_are_held_while_the_profile_is_down_and_go_out_once_in_order(stack: Stack,
                                                                          wappi: WappiEmulator) -> None:
    stack.workers.start("send", "send", concurrency=2)
    contact_id, profile_id = a_contact("77040000001")
    reason = "not authorized"
    wappi.set_profile(PROFILE_ID, authorized=False)
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

    wappi.set_profile(PROFILE_ID, authorized=True)
    wait_for(lambda: {row.status for row in rows("SELECT status FROM outbox")} == {"sent"}, timeout=60,
             message="the held sends to go out")
    assert [item["body"] for item in wappi.sent_messages(PROFILE_ID)] == bodies
    assert rows("SELECT down_reason FROM profiles")[0].down_reason is None
    log = stack.workers.log("send")
    assert log.count(f"cannot send ({reason}): sends are held") == 1, "the outage is logged once, not every retry"
    assert log.count("can send again") == 1
