"""The agent platform client (clients/agent_platform.py) against the AgentOS emulator over HTTP:
the form it sends, the reply it returns, the session the platform keeps, and a typed error for
each way a run can fail, with the provider's error text never returned as a reply and the API key
kept out of errors, reprs and logs."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import requests

from clients.agent_platform import (
    KEY_MASK,
    AgentAuthError,
    AgentBusyError,
    AgentNotFoundError,
    AgentPlatformClient,
    AgentPlatformError,
    AgentRejectedError,
    AgentReply,
    AgentRunError,
    AgentTransientError,
)
from emulators.agentos import AgentOSEmulator

KEY = "agno-os-key-5f2c9a1e"
AGENT = "sales-assistant"
CHAT = "tg:123456789"
PROVIDER_TEXT = "Error code: 429 - {'error': {'message': 'quota exceeded for gpt-sales'}}"


@pytest.fixture()
def emulator() -> Iterator[AgentOSEmulator]:
    with AgentOSEmulator(api_key=KEY) as emu:
        yield emu


@pytest.fixture()
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture()
def client(emulator: AgentOSEmulator, http: requests.Session) -> AgentPlatformClient:
    return AgentPlatformClient(http, emulator.url, KEY, timeout=5)


def say(client: AgentPlatformClient, text: str, chat: str = CHAT, *, user: str | None = None) -> AgentReply:
    return client.run(AGENT, text, session_id=chat, user_id=user or chat)


def error_of(client: AgentPlatformClient, text: str = "Сколько стоит доставка?", chat: str = CHAT, *,
             agent: str = AGENT, user: str | None = None) -> AgentPlatformError:
    with pytest.raises(AgentPlatformError) as caught:
        client.run(agent, text, session_id=chat, user_id=user or chat)
    return caught.value


def assert_no_key(exc: AgentPlatformError, key: str = KEY) -> None:
    for shown in (str(exc), repr(exc), exc.detail, exc.response_excerpt):
        assert key not in shown
    # A logged traceback prints the chain: no requests exception is in it.
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)


# ------------------------------------------------------------------ a completed run


def test_a_turn_is_posted_as_a_form_and_the_reply_comes_back(emulator: AgentOSEmulator,
                                                             client: AgentPlatformClient) -> None:
    reply = say(client, "Сколько стоит доставка в Казань?")

    [request] = emulator.runs()
    assert request["form"] == {"message": "Сколько стоит доставка в Казань?", "stream": "false",
                               "session_id": CHAT, "user_id": CHAT}
    assert request["content_type"] == "application/x-www-form-urlencoded"
    assert request["headers"]["authorization"] == "Bearer <redacted>"
    assert reply.text == f"Ответ агента {AGENT} (сообщение №1 в сессии): «Сколько стоит доставка в Казань?»"
    assert (reply.session_id, reply.status, reply.run_id) == (CHAT, "COMPLETED", request["run_id"])
    assert reply.input_tokens > 0 and reply.output_tokens > 0
    assert reply.text in reply.raw_excerpt


def test_the_platform_keeps_one_history_per_session_id(emulator: AgentOSEmulator,
                                                       client: AgentPlatformClient) -> None:
    first = say(client, "Здравствуйте")
    other = say(client, "Есть доставка?", "tg:555")
    second = say(client, "А самовывоз?")

    assert first.text.startswith(f"Ответ агента {AGENT} (сообщение №1 в сессии)")
    assert second.text == f"Ответ агента {AGENT} (сообщение №2 в сессии): «А самовывоз?»"
    assert other.text.startswith(f"Ответ агента {AGENT} (сообщение №1 в сессии)")
    assert first.session_id == second.session_id == CHAT
    sessions = {item["session_id"]: item for item in emulator.sessions()}
    assert [turn["message"] for turn in sessions[CHAT]["runs"]] == ["Здравствуйте", "А самовывоз?"]
    assert [turn["message"] for turn in sessions["tg:555"]["runs"]] == ["Есть доставка?"]
    assert sessions[CHAT]["user_id"] == CHAT


def test_the_playground_route_of_agno_1_is_a_path_template(emulator: AgentOSEmulator,
                                                            http: requests.Session) -> None:
    legacy = AgentPlatformClient(http, emulator.url, None, timeout=5,
                                 path_template="/v1/playground/agents/{agent_id}/runs")

    reply = say(legacy, "Привет")

    assert reply.text.endswith("«Привет»")
    assert emulator.runs()[0]["path"] == f"/v1/playground/agents/{AGENT}/runs"


# ------------------------------------------------------------------ runs that did not complete


def test_an_error_run_is_an_error_and_its_provider_text_is_not_a_reply(emulator: AgentOSEmulator,
                                                                        client: AgentPlatformClient) -> None:
    emulator.script({"status": "ERROR", "reply": PROVIDER_TEXT})

    exc = error_of(client)

    assert type(exc) is AgentRunError
    assert (exc.status_code, exc.run_status) == (200, "ERROR")
    assert exc.run_id == emulator.runs()[0]["run_id"]
    assert PROVIDER_TEXT not in str(exc)  # what a careless caller might forward is clean
    assert exc.detail == PROVIDER_TEXT and "quota exceeded" in exc.response_excerpt  # kept for the dead letter


def test_the_error_fault_gives_http_200_with_status_error(emulator: AgentOSEmulator,
                                                          client: AgentPlatformClient) -> None:
    emulator.set_faults({"error_next": 1, "error_text": PROVIDER_TEXT})

    exc = error_of(client)
    reply = say(client, "Ещё раз")

    assert isinstance(exc, AgentRunError) and exc.run_status == "ERROR" and exc.detail == PROVIDER_TEXT
    assert [entry["http_status"] for entry in emulator.runs()] == [200, 200]
    assert reply.text.endswith("«Ещё раз»")


@pytest.mark.parametrize("status", ["PAUSED", "CANCELLED", "RUNNING"])
def test_a_paused_or_cancelled_run_is_an_error(emulator: AgentOSEmulator, client: AgentPlatformClient,
                                               status: str) -> None:
    # A paused run may carry the agent's partial text: it is still not a reply.
    emulator.script({"status": status, "reply": "Оформляю заказ, подтвердите, пожалуйста."})

    exc = error_of(client)

    assert isinstance(exc, AgentRunError) and exc.run_status == status
    assert f"ended {status}" in str(exc)


@pytest.mark.parametrize(("content", "kind"), [("   \n ", "empty"), (None, "missing"),
                                               ({"price": 350}, "dict")])
def test_a_completed_run_without_text_is_an_error(emulator: AgentOSEmulator, client: AgentPlatformClient,
                                                  content: object, kind: str) -> None:
    emulator.script({"reply": content})

    exc = error_of(client)

    assert isinstance(exc, AgentRunError) and exc.run_status == "COMPLETED"
    assert f"completed with {kind} content" in str(exc)


def test_a_body_that_is_not_json_is_a_run_error(emulator: AgentOSEmulator, client: AgentPlatformClient) -> None:
    emulator.set_faults({"garbage_next": 1})

    exc = error_of(client)

    assert type(exc) is AgentRunError and exc.status_code == 200
    assert "<title>502 Bad Gateway</title>" in exc.response_excerpt


# ------------------------------------------------------------------ retry later


def test_a_500_is_transient_and_the_client_does_not_retry(emulator: AgentOSEmulator,
                                                          client: AgentPlatformClient) -> None:
    emulator.set_faults({"fail_next": 1})

    exc = error_of(client)

    assert type(exc) is AgentTransientError
    assert (exc.status_code, exc.detail, exc.retry_after) == (500, "Internal server error (RuntimeError)", None)
    assert len(emulator.runs()) == 1


def test_a_429_is_transient_with_retry_after(emulator: AgentOSEmulator, client: AgentPlatformClient) -> None:
    emulator.set_faults({"rate_limited_next": 1, "retry_after": 13})
    emulator.script({"http_status": 503, "retry_after": 2, "detail": "Service Unavailable"})

    limited = error_of(client)
    unavailable = error_of(client)

    assert isinstance(limited, AgentTransientError) and (limited.status_code, limited.retry_after) == (429, 13.0)
    assert isinstance(unavailable, AgentTransientError)
    assert (unavailable.status_code, unavailable.retry_after) == (503, 2.0)


def test_a_busy_session_is_retried_not_rejected(emulator: AgentOSEmulator, client: AgentPlatformClient) -> None:
    emulator.set_faults({"busy_next": 1})

    exc = error_of(client)

    assert isinstance(exc, AgentBusyError) and isinstance(exc, AgentTransientError) and exc.status_code == 409


@pytest.mark.parametrize("slow", [{"faults": {"timeout_next": 1, "timeout_seconds": 10}},
                                  {"script": {"delay": 10}}])
def test_an_answer_past_the_timeout_is_transient(emulator: AgentOSEmulator, http: requests.Session,
                                                 slow: dict[str, dict[str, float]]) -> None:
    if "faults" in slow:
        emulator.set_faults(slow["faults"])
    else:
        emulator.script(slow["script"])
    impatient = AgentPlatformClient(http, emulator.url, KEY, timeout=0.3)

    started = time.monotonic()
    exc = error_of(impatient)

    assert type(exc) is AgentTransientError and exc.status_code is None
    assert "timed out after 0.3s" in str(exc)
    assert time.monotonic() - started < 5
    assert_no_key(exc)


def test_a_dropped_connection_is_transient(emulator: AgentOSEmulator, client: AgentPlatformClient) -> None:
    emulator.set_faults({"drop_next": 1})

    exc = error_of(client)

    assert type(exc) is AgentTransientError and exc.status_code is None
    assert emulator.runs()[0]["outcome"] == "dropped"
    assert say(client, "Снова").text.endswith("«Снова»")  # the next call gets a fresh connection


def test_an_unreachable_platform_is_transient_and_unhealthy(http: requests.Session) -> None:
    with AgentOSEmulator() as emulator:
        url = emulator.url
        alive = AgentPlatformClient(http, url, None, timeout=2).health()
    client = AgentPlatformClient(http, url, None, timeout=2)

    exc = error_of(client)

    assert alive is True and client.health() is False
    assert type(exc) is AgentTransientError and exc.status_code is None


# ------------------------------------------------------------------ give up


def test_a_wrong_or_missing_key_is_an_auth_error_without_the_key(emulator: AgentOSEmulator,
                                                                 http: requests.Session) -> None:
    wrong_key = "agno-os-key-WRONG-77"
    wrong = AgentPlatformClient(http, emulator.url, wrong_key, timeout=5)
    keyless = AgentPlatformClient(http, emulator.url, None, timeout=5)

    invalid = error_of(wrong)
    missing = error_of(keyless)

    assert isinstance(invalid, AgentAuthError) and invalid.status_code == 401
    assert invalid.detail == "Invalid authentication token"
    assert isinstance(missing, AgentAuthError) and missing.detail == "Authorization header required"
    assert_no_key(invalid, wrong_key)
    assert_no_key(invalid, KEY)
    assert wrong_key not in repr(wrong) and KEY_MASK in repr(wrong)
    assert emulator.sessions() == []  # nothing reached the agent


def test_the_key_is_masked_when_the_platform_echoes_it(emulator: AgentOSEmulator,
                                                       client: AgentPlatformClient) -> None:
    emulator.script({"http_status": 400, "detail": f"guardrail tripped for token {KEY}"})

    exc = error_of(client)

    assert type(exc) is AgentRejectedError and exc.status_code == 400
    assert exc.detail == f"guardrail tripped for token {KEY_MASK}"
    assert_no_key(exc)


def test_the_key_stays_out_of_debug_logs(emulator: AgentOSEmulator, client: AgentPlatformClient,
                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        say(client, "Привет")
        emulator.set_faults({"fail_next": 1})
        error_of(client)

    assert caplog.records and KEY not in caplog.text


def test_an_unknown_agent_is_not_found(client: AgentPlatformClient) -> None:
    exc = error_of(client, agent="no-such-agent")

    assert type(exc) is AgentNotFoundError and (exc.status_code, exc.detail) == (404, "Agent not found")


def test_a_session_of_another_user_is_not_found(emulator: AgentOSEmulator, client: AgentPlatformClient) -> None:
    say(client, "Первое сообщение", user="wa:79990001122")

    intruder = error_of(client, "Чужое сообщение", user="wa:79995556677")
    owner = say(client, "Второе сообщение", user="wa:79990001122")

    assert type(intruder) is AgentNotFoundError and intruder.status_code == 404
    assert owner.text == f"Ответ агента {AGENT} (сообщение №2 в сессии): «Второе сообщение»"
    [session] = emulator.sessions()
    assert [turn["message"] for turn in session["runs"]] == ["Первое сообщение", "Второе сообщение"]


def test_a_validation_error_is_rejected(emulator: AgentOSEmulator, client: AgentPlatformClient) -> None:
    exc = error_of(client, "")

    assert type(exc) is AgentRejectedError and exc.status_code == 422
    assert exc.detail == "body.message: Field required"
