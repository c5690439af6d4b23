"""Opt-out through real workers: STOP gets one confirmation, and a later question is still answered.
The rule's table, the model's part and the follow-ups it ends: tests/unit/test_opt_out.py."""

from __future__ import annotations

import pytest

from devstack import wait_for
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from settings import get_settings
from tests.support.db import rows
from tests.support.emulators import customer_says, replies_to
from tests.support.idle import wait_idle
from tests.support.polling import first_start, run_poll


@pytest.mark.usefixtures("workers", "clean")
def test_stop_confirms_once(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    first_start()
    phone = "77500000005"
    customer_says(wappi, phone, "стоп")
    run_poll()
    confirmation = wait_for(lambda: replies_to(wappi, phone), message="the confirmation")
    assert confirmation[0]["body"] == get_settings().opt_out_confirmation
    assert rows("SELECT opted_out FROM contacts WHERE phone = :phone", phone=phone)[0].opted_out is True
    customer_says(wappi, phone, "стоп")  # a second STOP gets no second confirmation
    run_poll()
    wait_idle()
    assert len(replies_to(wappi, phone)) == 1
    assert gemini.requests_log() == []  # decided before any model saw it
    # A later question of their own is answered, and the contact stays opted out.
    customer_says(wappi, phone, "Хотя скажите, сколько стоит медовик?")
    run_poll()
    wait_for(lambda: len(replies_to(wappi, phone)) == 2, message="the answer to the question")
    wait_idle()
    assert "медовик" in replies_to(wappi, phone)[1]["body"]
    assert rows("SELECT opted_out FROM contacts WHERE phone = :phone", phone=phone)[0].opted_out is True
    assert [row.kind for row in rows("SELECT kind FROM outbox ORDER BY id")] == ["notice", "reply"]
    assert rows("SELECT count(*) FROM follow_ups")[0][0] == 0
