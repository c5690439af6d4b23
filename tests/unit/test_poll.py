"""The poll under Wappi faults, run in-process with `now` injected: crossed `messages/get` answers,
a chat whose history always fails, a download body in a history answer, an error outside one message."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from celeryconfig import redbeat_key_prefix
from clients.wappi import WappiClient, build_client
from db.session import SessionFactory
from emulators.wappi import WappiEmulator
from infra.redis import get_redis
from pipeline.ops import health
from pipeline.poll import CHATS_PAGE, PollResult, poll_profile
from pipeline.profiles import ensure_profile
from settings import get_settings
from tests.support import chain
from tests.support.db import rows_in
from tests.support.emulators import customer_says, replies_to
from tests.support.env import PROFILE_ID
from tests.support.intake import answer_new

Poll = Callable[..., PollResult]


def wappi_client() -> WappiClient:
    settings = get_settings()
    return build_client(settings.wappi_base_url, settings.wappi_token, PROFILE_ID, timeout=3)


def in_process_poll(sessions: SessionFactory, client: WappiClient, started: list[int], *,
                    chats_page: int = CHATS_PAGE) -> Poll:
    """The poll function the task runs, with `now` under the test's control; the messages it
    starts are collected in `started`."""
    with sessions() as session:
        profile_id = ensure_profile(session, get_settings()).id

    def poll(now: float | None = None, stale_after: float = 600.0) -> PollResult:
        return poll_profile(sessions, client, profile_id, started.extend, now=now, stale_after=stale_after,
                            chats_page=chats_page)
    return poll


def answer_all(sessions: SessionFactory, started: list[int]) -> None:
    while started:
        chain.answer(sessions, started.pop(0))


def test_a_crossed_messages_get_answer_is_refused(sessions: SessionFactory, session: Session,
                                                  wappi: WappiEmulator) -> None:
    assert chain.poll(sessions) == []  # the first start
    first = customer_says(wappi, "77018000001", "Здравствуйте, сколько стоит торт?")
    second = customer_says(wappi, "77018000002", "Есть ли доставка в Алматы?")
    wappi.set_chat_faults({"cross_next": 1})  # the next history answer holds the other chat's messages
    assert len(answer_new(sessions)) == 2
    for _ in range(2):
        assert answer_new(sessions) == []
    assert wappi.chat_faults()["crossed"] == 1
    assert [r["reply_to"] for r in replies_to(wappi, "77018000001")] == [first]
    assert [r["reply_to"] for r in replies_to(wappi, "77018000002")] == [second]
    stored = {(r.provider_message_id, r.phone) for r in rows_in(session, (
        "SELECT m.provider_message_id, c.phone FROM messages m JOIN contacts c ON c.id = m.contact_id "
        "WHERE m.direction = 'in'"))}
    assert stored == {(first, "77018000001"), (second, "77018000002")}


def test_a_chat_that_always_fails_never_freezes_the_poll(sessions: SessionFactory, session: Session,
                                                         wappi: WappiEmulator,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    settings = get_settings()
    client = wappi_client()
    started: list[int] = []
    # A page of five chats, so that a frozen watermark shows in pages within a few customers.
    poll = in_process_poll(sessions, client, started, chats_page=5)
    wappi.seed_chats(PROFILE_ID, 12)  # old, read chats: more than one page of five
    start = time.time()
    poll(now=start)  # the first start
    failing = "77018000099"
    failing_message = customer_says(wappi, failing, "Мой чат всегда падает")
    wappi.set_chat_faults({"fail_chats": [failing]})
    customers = [f"7701810{index:04d}" for index in range(10)]
    pages: list[int] = []
    caplog.set_level(logging.WARNING, logger="pipeline.poll")
    for number in range(50):  # a poll every two seconds for 100 s, Wappi's clock in step
        wappi.set_faults({"clock_offset_seconds": 2 * (number + 1)})
        if number % 5 == 0:
            customer_says(wappi, customers[number // 5], f"Здравствуйте, вопрос номер {number // 5}")
        wappi.clear_requests()
        poll(now=start + 2 * (number + 1))
        pages.append(sum(1 for entry in wappi.requests_log() if entry["path"] == "/api/sync/chats/get"))
        answer_all(sessions, started)  # the customer of this round is answered before the next one writes
        if number % 5 == 0:
            assert len(replies_to(wappi, customers[number // 5])) == 1
    assert pages == [1] * 50  # the idle poll still reads one page of chats
    assert all(len(replies_to(wappi, phone)) == 1 for phone in customers)
    assert replies_to(wappi, failing) == []
    failed_calls = wappi.chat_faults()["failed"]
    assert 1 <= failed_calls <= 20  # retried with backoff, not 50 times (two tries a retry)
    # The watermark moved past the failing chat.
    watermark = rows_in(session, "SELECT poll_watermark FROM profiles")[0][0]
    newest = rows_in(session, "SELECT max(extract(epoch FROM sent_at)) FROM messages WHERE direction = 'in'")[0][0]
    assert watermark >= newest - 1
    # Reported in /health and the log.
    _ok, checks = health(sessions, get_redis(), poll_interval=settings.poll_interval,
                         redbeat_prefix=redbeat_key_prefix)
    report = checks[f"chats:{PROFILE_ID}"]
    assert not report["ok"] and "*******0099" in report["error"] and failing not in str(report)
    assert any("*******0099" in record.getMessage() or failing in record.getMessage()
               for record in caplog.records if record.levelno >= logging.WARNING)
    # Once Wappi answers again, the chat is read at its next retry and its customer answered.
    wappi.set_chat_faults({})
    wappi.set_faults({"clock_offset_seconds": 1000})
    poll(now=start + 1000, stale_after=3600)
    answer_all(sessions, started)
    assert [r["reply_to"] for r in replies_to(wappi, failing)] == [failing_message]
    _ok, checks = health(sessions, get_redis(), poll_interval=settings.poll_interval,
                         redbeat_prefix=redbeat_key_prefix)
    assert checks[f"chats:{PROFILE_ID}"]["ok"]


def test_a_download_body_in_a_history_answer_loses_no_customer_message(sessions: SessionFactory, session: Session,
                                                                         wappi: WappiEmulator) -> None:
    """A messages/get answer that is a media/download body is crossed, never an empty page: the
    chat's cursor stays, the chat is read again, and the customer is answered once."""
    started: list[int] = []
    poll = in_process_poll(sessions, wappi_client(), started)
    poll()  # the first start
    phone = "77018000011"
    said = customer_says(wappi, phone, "Здравствуйте, торт на завтра можно?")
    wappi.set_chat_faults({"cross_next": 2, "cross_kind": "media"})  # both tries of the client's retry are crossed
    assert poll().chats_failed == 1
    assert wappi.chat_faults()["crossed"] == 2
    assert rows_in(session, "SELECT count(*) FROM messages WHERE provider_message_id = :id", id=said)[0][0] == 0
    assert started == []
    poll(now=time.time() + 60)  # the chat's retry is due
    assert len(started) == 1
    answer_all(sessions, started)
    poll(now=time.time() + 120)
    assert started == []
    assert [r["reply_to"] for r in replies_to(wappi, phone)] == [said]
    assert [tuple(r) for r in rows_in(session, "SELECT status FROM messages WHERE provider_message_id = :id",
                                      id=said)] == [("answered",)]


def test_an_error_outside_one_message_costs_only_its_chat(sessions: SessionFactory, session: Session,
                                                          wappi: WappiEmulator) -> None:
    """A chat whose contact row cannot be written (here an unread count PostgreSQL's integer
    refuses) is recorded as failing; the other chats of the same poll are answered."""
    started: list[int] = []
    poll = in_process_poll(sessions, wappi_client(), started)
    poll()  # the first start
    other, broken = "77018000021", "77018000022"
    other_said = customer_says(wappi, other, "Сколько стоит доставка?")
    customer_says(wappi, broken, "А у меня странный чат")  # newer: read first
    wappi.set_chat_faults({"dialog_overrides": {broken: {"unread_count": 2 ** 40}}})
    result = poll()
    assert result.chats_failed == 1 and len(started) == 1
    answer_all(sessions, started)
    assert [r["reply_to"] for r in replies_to(wappi, other)] == [other_said]
    failures = rows_in(session, "SELECT chat_id, failures, error FROM chat_poll_failures")
    assert [(r[0], r[1]) for r in failures] == [(f"{broken}@c.us", 1)] and "DataError" in failures[0][2]
