"""The follow-up ladder through the workers: the beat's sweep sends a due touch to a silent lead,
and the lead's answer stops the chain and is answered. The ladder's rules: tests/unit/test_followup.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from db.session import session_scope
from devstack import wait_for
from emulators.wappi import WappiEmulator
from tasks import app
from tests.support.db import rows
from tests.support.emulators import customer_says, replies_to
from tests.support.followup import ALMATY, lead_went_silent
from tests.support.idle import wait_idle
from tests.support.polling import first_start, run_poll


@pytest.mark.usefixtures("workers", "clean")
def test_a_touch_goes_out_after_silence_and_an_answer_stops_the_chain(wappi: WappiEmulator) -> None:
    first_start()
    phone = "77300000099"
    # The first touch was due at noon of the last weekday before today (inside working hours).
    due = datetime.now(ALMATY).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
    while due.weekday() > 4:
        due -= timedelta(days=1)
    with session_scope() as session:
        lead_went_silent(session, phone, replied_at=(due - timedelta(hours=24)).astimezone(UTC))
    app.send_task("pipeline.followup_sweep", queue="followup")
    touches = wait_for(lambda: replies_to(wappi, phone), message="the first touch to reach the chat")
    assert len(touches) == 1 and touches[0]["body"]
    outbox = wait_for(lambda: [row for row in rows("SELECT kind, status FROM outbox") if row.status == "sent"],
                      message="the touch marked sent")
    assert [(row.kind, row.status) for row in outbox] == [("follow_up", "sent")]
    assert tuple(rows("SELECT touch_number, status FROM follow_ups")[0]) == (1, "active")
    # The lead answers the touch: the chain stops for good, and the question is answered.
    customer_says(wappi, phone, "А какие есть начинки?")
    run_poll()
    wait_for(lambda: len(replies_to(wappi, phone)) == 2, message="the answer to the lead's question")
    wait_idle()
    assert tuple(rows("SELECT status, stop_reason FROM follow_ups")[0]) == ("stopped", "client_responded")
    app.send_task("pipeline.followup_sweep", queue="followup")
    wait_idle()
    assert len(replies_to(wappi, phone)) == 2
    assert [row.kind for row in rows("SELECT kind FROM outbox ORDER BY id")] == ["follow_up", "reply"]
