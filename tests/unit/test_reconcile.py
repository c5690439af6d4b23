"""Reconciling an unclear send with the chat history, in the send stage's own functions (no workers):
a send Wappi took without telling us is found after the settle delay, on Wappi's clock, and not sent
again; a send that never went is looked for once more, then sent; an earlier copy of the same text
is never taken for it. And the recovery sweep restarts only the rows nothing holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from clients.channel import Channel
from clients.wappi import WappiTransientError
from db.models import Outbox
from db.session import SessionFactory
from domain.states import OutboxKind
from emulators.wappi import WappiEmulator
from pipeline.credentials import CredentialsError
from pipeline.locks import Defer
from pipeline.recover import stranded_outbox
from pipeline.send import run_send, yield_wait
from settings import get_settings
from tests.support import chain
from tests.support.db import add_contact, add_outbox_row, rows_in
from tests.support.delivery import SEND_PATHS, last_send_call_ago
from tests.support.emulators import customer_says, replies_to


@pytest.mark.parametrize("wappi_clock", [0.0, -8.0], ids=["same-clock", "wappi-8s-behind"])
def test_a_send_wappi_took_without_answering_is_found_in_the_history_not_sent_again(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator, wappi_clock: float) -> None:
    """Whatever our clock says, the copy is looked for after the newest Wappi time of the chat."""
    settle = get_settings().reconcile_settle
    phone = "77030000001"
    wappi.set_faults({"clock_offset_seconds": wappi_clock})
    customer_says(wappi, phone, "Здравствуйте! Вы работаете в субботу?")
    chain.poll(sessions)  # the first start keeps the chat's message, at Wappi's time, as history
    contact_id, profile_id = rows_in(session, "SELECT id, profile_id FROM contacts WHERE phone = :phone",
                                     phone=phone)[0]
    outbox_id = add_outbox_row(session, contact_id, profile_id, "test:reply", "Да, в субботу с 10 до 16.")

    # Wappi takes the message and then answers 503: the customer has it, we do not know.
    wappi.set_faults({"clock_offset_seconds": wappi_clock, "rate_accept_then_5xx": 1.0, "paths": SEND_PATHS})
    with pytest.raises(WappiTransientError):
        chain.send(sessions, outbox_id)
    delivered = replies_to(wappi, phone)
    assert len(delivered) == 1
    wappi.set_faults({"clock_offset_seconds": wappi_clock})

    # At once: the history may not show it yet; wait for the settle delay, send nothing.
    with pytest.raises(Defer) as deferral:
        chain.send(sessions, outbox_id)
    assert settle - 5 < deferral.value.countdown <= settle + 0.5
    assert rows_in(session, "SELECT status, next_attempt_at IS NOT NULL FROM outbox")[0] == ("sending", True)

    last_send_call_ago(session, outbox_id, settle + 1)
    assert chain.send(sessions, outbox_id) == outbox_id
    assert len(replies_to(wappi, phone)) == 1
    row = rows_in(session, "SELECT status, provider_message_id, attempts FROM outbox")[0]
    assert (row.status, row.provider_message_id, row.attempts) == ("sent", delivered[0]["message_id"], 1)
    ours = rows_in(session, "SELECT provider_message_id FROM messages WHERE direction = 'out'")
    assert [message.provider_message_id for message in ours] == [delivered[0]["message_id"]]


def test_a_repeated_text_is_not_taken_for_the_delivered_copy(sessions: SessionFactory, session: Session,
                                                             wappi: WappiEmulator) -> None:
    """The same reminder twice: the first copy in the chat belongs to the first row. The second
    row's send failed before Wappi took it, so after two looks it goes out again: once."""
    settings = get_settings()
    phone = "77030000002"
    contact_id, profile_id = add_contact(session, phone)
    text = "Напоминаем: завтра у нас скидка 10 % на всё."
    first = add_outbox_row(session, contact_id, profile_id, "test:first", text)
    assert chain.send(sessions, first) == first

    wappi.set_faults({"fail_next": 1, "fail_status": 503, "paths": SEND_PATHS})
    second = add_outbox_row(session, contact_id, profile_id, "test:second", text)
    with pytest.raises(WappiTransientError):
        chain.send(sessions, second)
    assert len(replies_to(wappi, phone)) == 1

    # After the settle delay: the only copy in the chat is the first row's, so one more look later.
    last_send_call_ago(session, second, settings.reconcile_settle + 1)
    with pytest.raises(Defer, match="one more look"):
        chain.send(sessions, second)
    assert len(replies_to(wappi, phone)) == 1

    # Not there at the recheck either: it never went out, so it is sent now.
    last_send_call_ago(session, second, settings.reconcile_recheck + 1)
    assert chain.send(sessions, second) == second
    outbox = rows_in(session, "SELECT status, provider_message_id FROM outbox ORDER BY id")
    assert [row.status for row in outbox] == ["sent", "sent"]
    assert outbox[0].provider_message_id != outbox[1].provider_message_id
    assert [item["body"] for item in replies_to(wappi, phone)] == [text, text]


def test_the_sweep_leaves_deferred_rows_alone_and_restarts_a_stranded_one_once(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator) -> None:
    settings = get_settings()
    contact_id, profile_id = add_contact(session, "77030000009")
    other_contact, _ = add_contact(session, "77030000010")
    deferred = add_outbox_row(session, contact_id, profile_id, "test:deferred", "Ждёт лимита отправки")
    stranded = add_outbox_row(session, other_contact, profile_id, "test:stranded", "Никто не держит")
    now = datetime.now(UTC)
    # Both untouched for hours; one is held by a deferral that is due in a minute.
    session.execute(sa.update(Outbox).values(updated_at=now - timedelta(hours=3),
                                             created_at=now - timedelta(hours=3)))
    session.execute(sa.update(Outbox).where(Outbox.id == deferred).values(next_attempt_at=now + timedelta(minutes=1)))
    assert stranded_outbox(session, now, settings) == [stranded]
    assert stranded_outbox(session, now, settings) == []  # restarted once, not every minute
    assert stranded_outbox(session, now + timedelta(minutes=1), settings) == []
    session.commit()
    assert chain.send(sessions, stranded) == stranded
    assert [item["body"] for item in replies_to(wappi, "77030000010")] == ["Никто не держит"]
    assert replies_to(wappi, "77030000009") == []


def test_a_touch_behind_replies_waits_at_least_15_seconds_with_jitter() -> None:
    waits = {yield_wait() for _ in range(50)}
    assert min(waits) >= 15.0 and max(waits) <= 30.0 and len(waits) > 1


def test_a_channel_that_cannot_be_built_leaves_the_row_unsent_not_unclear(
        sessions: SessionFactory, session: Session) -> None:
    """The profile's client fails to build (its stored token cannot be opened, the database blinked):
    nothing went out, so the row stays pending, with no send call recorded that the next run would
    wait a settle delay and read the history for."""
    contact_id, profile_id = add_contact(session, "77001231111")
    outbox_id = add_outbox_row(session, contact_id, profile_id, "reply:channel", "Здравствуйте!",
                               kind=OutboxKind.REPLY)

    def no_channel(profile: str) -> Channel:
        raise CredentialsError(f"the token of profile {profile} cannot be opened with CREDENTIALS_KEY")

    with pytest.raises(CredentialsError):
        run_send(sessions, outbox_id, get_settings(), no_channel)

    row = rows_in(session, "SELECT status, attempts, last_send_at FROM outbox WHERE id = :id", id=outbox_id)[0]
    assert (row.status, row.attempts, row.last_send_at) == ("pending", 0, None)
