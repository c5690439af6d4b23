"""The poll under Wappi faults: a chat whose history always fails, and crossed `messages/get` answers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
import requests

from emulators.wappi import WappiEmulator
from pipeline.poll import PollResult
from tests.conftest import PROFILE_ID, run_poll, wait_for
from tests.idle import wait_idle
from tests.test_pipeline import customer_says, first_start, replies_to, rows

pytestmark = pytest.mark.usefixtures("workers", "clean")


def chat_faults(wappi: WappiEmulator, **config: object) -> dict[str, object]:
    response = requests.post(f"{wappi.url}/_emulator/chat_faults", json=config, timeout=5)
    response.raise_for_status()
    result: dict[str, object] = response.json()["chat_faults"]
    return result


def test_a_crossed_messages_get_answer_is_refused(wappi: WappiEmulator) -> None:
    first_start()
    first = customer_says(wappi, "77018000001", "Здравствуйте, сколько стоит торт?")
    second = customer_says(wappi, "77018000002", "Есть ли доставка в Алматы?")
    chat_faults(wappi, cross_next=1)  # the next history answer holds the other chat's messages
    run_poll()
    wait_for(lambda: replies_to(wappi, "77018000001") and replies_to(wappi, "77018000002"),
             message="both replies")
    for _ in range(2):
        run_poll()
        wait_idle()
    assert requests.get(f"{wappi.url}/_emulator/chat_faults", timeout=5).json()["crossed"] == 1
    assert [r["reply_to"] for r in replies_to(wappi, "77018000001")] == [first]
    assert [r["reply_to"] for r in replies_to(wappi, "77018000002")] == [second]
    stored = {(r.provider_message_id, r.phone) for r in rows(
        "SELECT m.provider_message_id, c.phone FROM messages m JOIN contacts c ON c.id = m.contact_id "
        "WHERE m.direction = 'in'")}
    assert stored == {(first, "77018000001"), (second, "77018000002")}


def test_a_chat_that_always_fails_never_freezes_the_poll(wappi: WappiEmulator,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    from celeryconfig import redbeat_key_prefix
    from clients.wappi import build_client
    from db.session import session_scope
    from infra.redis import get_redis
    from pipeline.ops import health
    from pipeline.poll import poll_profile
    from pipeline.profiles import ensure_profile
    from settings import get_settings
    from tasks.chains import start_conversations

    settings = get_settings()
    wappi.seed_chats(PROFILE_ID, 12)  # old, read chats: more than one page of five
    client = build_client(settings.wappi_base_url, settings.wappi_token, PROFILE_ID, timeout=3)
    with session_scope() as session:
        profile_id = ensure_profile(session, settings).id

    def poll(now: float | None = None, stale_after: float = 600.0) -> None:
        # The poll function the task runs, in-process, with a page of five chats so that a
        # frozen watermark shows in pages within a few customers.
        poll_profile(session_scope, client, profile_id, start_conversations, chats_page=5, now=now,
                     stale_after=stale_after)

    poll()  # the first start
    failing = "77018000099"
    failing_message = customer_says(wappi, failing, "Мой чат всегда падает")
    chat_faults(wappi, fail_chats=[failing])
    customers = [f"7701810{index:04d}" for index in range(10)]
    pages: list[int] = []
    caplog.set_level(logging.WARNING, logger="pipeline.poll")
    for number in range(50):
        if number % 5 == 0:
            customer_says(wappi, customers[number // 5], f"Здравствуйте, вопрос номер {number // 5}")
        wappi.clear_requests()
        poll()
        pages.append(sum(1 for entry in wappi.requests_log() if entry["path"] == "/api/sync/chats/get"))
        if number % 5 == 0:  # the customer of this round is answered before the next one writes
            phone = customers[number // 5]
            wait_for(lambda: replies_to(wappi, phone), timeout=30, message=f"the reply to {phone}")  # noqa: B023
    assert pages == [1] * 50  # the idle poll still reads one page of chats
    wait_idle()
    assert all(len(replies_to(wappi, phone)) == 1 for phone in customers)
    assert replies_to(wappi, failing) == []
    failed_calls = requests.get(f"{wappi.url}/_emulator/chat_faults", timeout=5).json()["failed"]
    assert 1 <= failed_calls <= 20  # retried with backoff, not 50 times (two tries a retry)
    # The watermark moved past the failing chat.
    watermark = rows("SELECT poll_watermark FROM profiles")[0][0]
    assert watermark >= rows("SELECT max(extract(epoch FROM sent_at)) FROM messages WHERE direction = 'in'")[0][0] - 1
    # Reported in /health and the log.
    _ok, checks = health(session_scope, get_redis(), lambda _pid: client.get_status(),
                         poll_interval=settings.poll_interval, redbeat_prefix=redbeat_key_prefix)
    report = checks[f"chats:{PROFILE_ID}"]
    assert not report["ok"] and "*******0099" in report["error"] and failing not in str(report)
    assert any("*******0099" in record.getMessage() or failing in record.getMessage()
               for record in caplog.records if record.levelno >= logging.WARNING)
    # Once Wappi answers again, the chat is read at its next retry and its customer answered.
    chat_faults(wappi)
    poll(now=time.time() + 900, stale_after=3600)
    replies = wait_for(lambda: replies_to(wappi, failing), timeout=30, message="the failing chat's reply")
    assert [r["reply_to"] for r in replies] == [failing_message]
    _ok, checks = health(session_scope, get_redis(), lambda _pid: client.get_status(),
                         poll_interval=settings.poll_interval, redbeat_prefix=redbeat_key_prefix)
    assert checks[f"chats:{PROFILE_ID}"]["ok"]


def _in_process_poll(wappi: WappiEmulator) -> Callable[..., PollResult]:
    """The poll function the task runs, in-process, with `now` under the test's control."""
    from clients.wappi import build_client
    from db.session import session_scope
    from pipeline.poll import poll_profile
    from pipeline.profiles import ensure_profile
    from settings import get_settings
    from tasks.chains import start_conversations

    settings = get_settings()
    client = build_client(settings.wappi_base_url, settings.wappi_token, PROFILE_ID, timeout=3)
    with session_scope() as session:
        profile_id = ensure_profile(session, settings).id

    def poll(now: float | None = None) -> PollResult:
        return poll_profile(session_scope, client, profile_id, start_conversations, now=now)
    return poll


def test_a_download_body_in_a_history_answer_loses_no_customer_message(wappi: WappiEmulator) -> None:
    """A messages/get answer that is a media/download body is crossed, never an empty page: the
    chat's cursor stays, the chat is read again, and the customer is answered once."""
    poll = _in_process_poll(wappi)
    poll()  # the first start
    phone = "77018000011"
    said = customer_says(wappi, phone, "Здравствуйте, торт на завтра можно?")
    chat_faults(wappi, cross_next=2, cross_kind="media")  # both tries of the client's retry are crossed
    poll()
    assert requests.get(f"{wappi.url}/_emulator/chat_faults", timeout=5).json()["crossed"] == 2
    assert rows("SELECT count(*) FROM messages WHERE provider_message_id = :id", id=said)[0][0] == 0
    poll(now=time.time() + 60)  # the chat's retry is due
    replies = wait_for(lambda: replies_to(wappi, phone), timeout=30, message="the reply")
    poll(now=time.time() + 120)
    wait_idle()
    assert [r["reply_to"] for r in replies_to(wappi, phone)] == [said] == [r["reply_to"] for r in replies]
    assert [tuple(r) for r in rows("SELECT status FROM messages WHERE provider_message_id = :id", id=said)] == [
        ("answered",)]


def test_an_error_outside_one_message_costs_only_its_chat(wappi: WappiEmulator) -> None:
    """A chat whose contact row cannot be written (here an unread count PostgreSQL's integer
    refuses) is recorded as failing; the other chats of the same poll are answered."""
    poll = _in_process_poll(wappi)
    poll()  # the first start
    other, broken = "77018000021", "77018000022"
    other_said = customer_says(wappi, other, "Сколько стоит доставка?")
    customer_says(wappi, broken, "А у меня странный чат")  # newer: read first
    chat_faults(wappi, dialog_overrides={broken: {"unread_count": 2 ** 40}})
    result = poll()
    assert result.chats_failed == 1
    replies = wait_for(lambda: replies_to(wappi, other), timeout=30, message="the other chat's reply")
    assert [r["reply_to"] for r in replies] == [other_said]
    failures = rows("SELECT chat_id, failures, error FROM chat_poll_failures")
    assert [(r[0], r[1]) for r in failures] == [(f"{broken}@c.us", 1)] and "DataError" in failures[0][2]
