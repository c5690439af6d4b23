"""HTTP-level tests of the Agno AgentOS emulator (emulators/agentos/): form bodies and FastAPI's
422s, the RunOutput dict and Server-Sent Events, the security key, sessions and their owners,
scripted outcomes, faults, the control endpoints and the command line."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from emulators.agentos import AgentOSEmulator
from tests.support.emulators import emulator_command

KEY = "os-security-key-0b8d"
AGENT = "sales-assistant"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture()
def emulator() -> Iterator[AgentOSEmulator]:
    with AgentOSEmulator(api_key=KEY, agents=(AGENT, "support")) as emu:
        yield emu


def run(emu: AgentOSEmulator, agent: str = AGENT, headers: dict[str, str] | None = None,
        **fields: str) -> requests.Response:
    return requests.post(f"{emu.url}/agents/{agent}/runs", data=fields,
                         headers=AUTH if headers is None else headers, timeout=5)


def ctl(emu: AgentOSEmulator, path: str, body: Any = None) -> Any:
    if body is None:
        response = requests.get(f"{emu.url}/_emulator/{path}", timeout=5)
    else:
        response = requests.post(f"{emu.url}/_emulator/{path}", json=body, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def events_of(response: requests.Response) -> list[tuple[str, dict[str, Any]]]:
    assert response.headers["Content-Type"].startswith("text/event-stream")
    frames = []
    for block in response.text.split("\n\n"):
        if block.strip():
            name_line, data_line = block.split("\n")
            assert name_line.startswith("event: ") and data_line.startswith("data: ")
            frames.append((name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))))
    return frames


# ------------------------------------------------------------------ the run route


def test_a_form_run_answers_the_run_output_dict(emulator: AgentOSEmulator) -> None:
    response = run(emulator, message="Сколько стоит доставка?", stream="false", session_id="tg:1", user_id="tg:1")

    body = response.json()
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    assert body["content"] == f"Ответ агента {AGENT} (сообщение №1 в сессии): «Сколько стоит доставка?»"
    assert (body["content_type"], body["status"], body["agent_id"], body["agent_name"]) == (
        "str", "COMPLETED", AGENT, "Sales Assistant")
    assert (body["session_id"], body["user_id"]) == ("tg:1", "tg:1")
    assert uuid.UUID(body["run_id"]) and isinstance(body["created_at"], int)
    assert body["input"] == {"input_content": "Сколько стоит доставка?"}
    assert [item["role"] for item in body["messages"]] == ["system", "user", "assistant"]
    metrics = body["metrics"]
    assert metrics["input_tokens"] > 0 and metrics["output_tokens"] > 0
    assert metrics["total_tokens"] == metrics["input_tokens"] + metrics["output_tokens"]


def test_a_multipart_form_is_read_like_an_urlencoded_one(emulator: AgentOSEmulator) -> None:
    parts = {"message": (None, "Привет из multipart"), "stream": (None, "false"), "session_id": (None, "wa:7")}
    response = requests.post(f"{emulator.url}/agents/{AGENT}/runs", files=parts, headers=AUTH, timeout=5)

    assert response.status_code == 200
    assert response.json()["content"].endswith("«Привет из multipart»")
    assert emulator.runs()[0]["form"] == {"message": "Привет из multipart", "stream": "false", "session_id": "wa:7"}


def test_history_grows_per_session_and_the_messages_show_it(emulator: AgentOSEmulator) -> None:
    run(emulator, message="Первый", stream="false", session_id="s-1")
    run(emulator, message="Чужая сессия", stream="false", session_id="s-2")
    second = run(emulator, message="Второй", stream="false", session_id="s-1").json()

    assert second["content"] == f"Ответ агента {AGENT} (сообщение №2 в сессии): «Второй»"
    assert [(item["role"], item["content"][:20], item["from_history"]) for item in second["messages"][1:]] == [
        ("user", "Первый", True),
        ("assistant", f"Ответ агента {AGENT} (сообщ"[:20], True),
        ("user", "Второй", False),
        ("assistant", second["content"][:20], False),
    ]


def test_a_missing_message_a_json_body_and_a_bad_boolean_are_422(emulator: AgentOSEmulator) -> None:
    missing = run(emulator, stream="false")
    as_json = requests.post(f"{emulator.url}/agents/{AGENT}/runs", json={"message": "Привет", "stream": False},
                            headers=AUTH, timeout=5)
    bad_bool = run(emulator, message="Привет", stream="maybe")

    field_required = {"type": "missing", "loc": ["body", "message"], "msg": "Field required", "input": None}
    assert (missing.status_code, missing.json()) == (422, {"detail": [field_required]})
    assert (as_json.status_code, as_json.json()) == (422, {"detail": [field_required]})
    assert bad_bool.status_code == 422
    assert bad_bool.json()["detail"][0]["type"] == "bool_parsing"
    assert bad_bool.json()["detail"][0]["loc"] == ["body", "stream"]
    assert emulator.sessions() == []


def test_stream_omitted_or_true_answers_server_sent_events(emulator: AgentOSEmulator) -> None:
    omitted = run(emulator, message="Расскажите про доставку и оплату заказа", session_id="sse")
    explicit = run(emulator, message="Ещё", stream="true", session_id="sse")

    frames = events_of(omitted)
    names = [name for name, _ in frames]
    assert names[0] == "RunStarted" and names[-1] == "RunCompleted"
    deltas = [data["content"] for name, data in frames if name == "RunContent"]
    assert len(deltas) > 1
    completed = frames[-1][1]
    assert "".join(deltas) == completed["content"]
    assert completed["content"].endswith("«Расскажите про доставку и оплату заказа»")
    assert {data["session_id"] for _, data in frames} == {"sse"}
    assert {data["event"] for _, data in frames} == set(names)
    assert events_of(explicit)[-1][1]["content"].startswith(f"Ответ агента {AGENT} (сообщение №2")


def test_a_streamed_error_run_ends_with_run_error(emulator: AgentOSEmulator) -> None:
    emulator.script({"status": "ERROR", "reply": "provider exploded"})

    frames = events_of(run(emulator, message="Привет"))

    assert [name for name, _ in frames] == ["RunStarted", "RunError"]
    assert frames[-1][1]["content"] == "provider exploded"


def test_an_unknown_agent_is_404(emulator: AgentOSEmulator) -> None:
    response = run(emulator, agent="ghost", message="Привет", stream="false")

    assert (response.status_code, response.json()) == (404, {"detail": "Agent not found"})


# ------------------------------------------------------------------ auth, health, agents


def test_the_security_key(emulator: AgentOSEmulator) -> None:
    missing = run(emulator, headers={}, message="Привет", stream="false")
    basic = run(emulator, headers={"Authorization": f"Basic {KEY}"}, message="Привет", stream="false")
    wrong = run(emulator, headers={"Authorization": "Bearer nope"}, message="Привет", stream="false")
    right = run(emulator, message="Привет", stream="false")
    agents_without_key = requests.get(f"{emulator.url}/agents", timeout=5)

    assert (missing.status_code, missing.json()) == (401, {"detail": "Authorization header required"})
    assert basic.json() == {"detail": "Authorization header required"}
    assert (wrong.status_code, wrong.json()) == (401, {"detail": "Invalid authentication token"})
    assert right.status_code == 200
    assert agents_without_key.status_code == 401
    log = emulator.runs()
    assert [entry["http_status"] for entry in log] == [401, 401, 401, 200]
    assert KEY not in json.dumps(log) and "nope" not in json.dumps(log)
    assert log[3]["headers"]["authorization"] == "Bearer <redacted>"


def test_the_key_can_be_turned_off_and_on(emulator: AgentOSEmulator) -> None:
    assert ctl(emulator, "key", {"api_key": None}) == {"auth": False}
    open_run = run(emulator, headers={}, message="Привет", stream="false")
    assert ctl(emulator, "key", {"api_key": "other-key"}) == {"auth": True}
    closed = run(emulator, message="Привет", stream="false")  # the old key

    assert open_run.status_code == 200 and closed.status_code == 401


def test_health_is_open_and_agents_are_listed(emulator: AgentOSEmulator) -> None:
    health = requests.get(f"{emulator.url}/health", timeout=5)
    agents = requests.get(f"{emulator.url}/agents", headers=AUTH, timeout=5)
    one = requests.get(f"{emulator.url}/agents/support", headers=AUTH, timeout=5)
    ghost = requests.get(f"{emulator.url}/agents/ghost", headers=AUTH, timeout=5)

    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["instantiated_at"].endswith("Z")
    assert [agent["id"] for agent in agents.json()] == [AGENT, "support"]
    assert one.json()["name"] == "Support"
    assert (ghost.status_code, ghost.json()) == (404, {"detail": "Agent not found"})


# ------------------------------------------------------------------ sessions


def test_an_omitted_session_id_gets_a_new_uuid(emulator: AgentOSEmulator) -> None:
    first = run(emulator, message="Привет", stream="false").json()
    second = run(emulator, message="Привет", stream="false", session_id="").json()

    assert uuid.UUID(first["session_id"]).version == 4
    assert first["session_id"] != second["session_id"]
    assert second["content"].startswith(f"Ответ агента {AGENT} (сообщение №1")
    assert "user_id" not in first


def test_a_session_owned_by_another_user_is_404(emulator: AgentOSEmulator) -> None:
    run(emulator, message="Мой заказ", stream="false", session_id="owned", user_id="alice")
    run(emulator, message="Общая", stream="false", session_id="unowned")

    intruder = run(emulator, message="Чужой", stream="false", session_id="owned", user_id="mallory")
    anonymous = run(emulator, message="Без имени", stream="false", session_id="owned")
    anyone = run(emulator, message="Кто угодно", stream="false", session_id="unowned", user_id="bob")

    assert intruder.status_code == 404 and anonymous.status_code == 404
    assert anyone.status_code == 200 and anyone.json()["user_id"] == "bob"
    sessions = {item["session_id"]: item for item in ctl(emulator, "sessions")}
    assert [turn["message"] for turn in sessions["owned"]["runs"]] == ["Мой заказ"]
    assert sessions["owned"]["user_id"] == "alice" and sessions["unowned"]["user_id"] is None


# ------------------------------------------------------------------ scripts and faults


def test_scripted_items_are_used_in_order_by_matching_runs(emulator: AgentOSEmulator) -> None:
    ctl(emulator, "script", [{"match": "оплат", "reply": "Оплата картой или наличными."},
                             {"agent_id": "support", "reply": "Поддержка на связи."},
                             {"reply": "Первый по очереди."}])

    general = run(emulator, message="Привет", stream="false").json()
    payment = run(emulator, message="Как оплатить?", stream="false").json()
    support = run(emulator, agent="support", message="Помогите", stream="false").json()
    echo = run(emulator, message="Привет", stream="false").json()

    assert general["content"] == "Первый по очереди."
    assert payment["content"] == "Оплата картой или наличными."
    assert support["content"] == "Поддержка на связи."
    assert echo["content"].endswith("«Привет»")
    assert ctl(emulator, "script") == []


def test_scripted_run_statuses(emulator: AgentOSEmulator) -> None:
    emulator.script({"status": "ERROR"}, {"status": "PAUSED"}, {"status": "CANCELLED"})

    error, paused, cancelled = (run(emulator, message="Привет", stream="false") for _ in range(3))

    assert error.status_code == paused.status_code == cancelled.status_code == 200
    assert error.json()["status"] == "ERROR" and error.json()["content"].startswith("Error code: 503")
    assert paused.json()["status"] == "PAUSED" and "content" not in paused.json()
    assert paused.json()["requirements"]
    assert cancelled.json()["status"] == "CANCELLED"


def test_scripted_http_errors_store_no_turn(emulator: AgentOSEmulator) -> None:
    emulator.script({"http_status": 500}, {"http_status": 429, "retry_after": 3}, {"http_status": 409})

    failed, limited, busy = (run(emulator, message="Привет", stream="false", session_id="x") for _ in range(3))
    after = run(emulator, message="Снова", stream="false", session_id="x")

    assert (failed.status_code, failed.json()) == (500, {"detail": "Internal server error (RuntimeError)"})
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
    assert busy.status_code == 409 and "Retry-After" not in busy.headers
    assert after.json()["content"].startswith(f"Ответ агента {AGENT} (сообщение №1")


def test_faults_come_before_the_key_check_and_are_used_up(emulator: AgentOSEmulator) -> None:
    ctl(emulator, "faults", {"rate_limited_next": 1, "retry_after": 11, "fail_next": 1, "fail_status": 503})

    limited = run(emulator, headers={}, message="Привет", stream="false")
    failed = run(emulator, message="Привет", stream="false")
    fine = run(emulator, message="Привет", stream="false")

    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "11")
    assert (failed.status_code, failed.json()) == (503, {"detail": "Internal server error (RuntimeError)"})
    assert fine.status_code == 200
    assert ctl(emulator, "faults")["rate_limited_next"] == 0


def test_a_dropped_connection_gets_no_answer(emulator: AgentOSEmulator) -> None:
    emulator.set_faults({"drop_next": 1, "agents": ["support"]})

    untouched = run(emulator, message="Привет", stream="false")
    with pytest.raises(requests.ConnectionError):
        run(emulator, agent="support", message="Привет", stream="false")

    assert untouched.status_code == 200
    assert [entry["outcome"] for entry in emulator.runs()] == ["answered", "dropped"]


def test_a_delayed_run_still_completes_for_the_next_turn(emulator: AgentOSEmulator) -> None:
    emulator.script({"delay": 1})

    with pytest.raises(requests.Timeout):
        requests.post(f"{emulator.url}/agents/{AGENT}/runs", headers=AUTH, timeout=0.3,
                      data={"message": "Медленно", "stream": "false", "session_id": "slow"})
    assert emulator.wait_idle()
    later = requests.post(f"{emulator.url}/agents/{AGENT}/runs", headers=AUTH, timeout=5,
                          data={"message": "Повтор", "stream": "false", "session_id": "slow"})

    # The platform finished the slow run although the client gave up: the retry is turn two.
    assert later.json()["content"] == f"Ответ агента {AGENT} (сообщение №2 в сессии): «Повтор»"


# ------------------------------------------------------------------ control


def test_control_agents_runs_and_reset(emulator: AgentOSEmulator) -> None:
    added = ctl(emulator, "agents", {"agent_id": "order-bot", "name": "Order Bot"})
    reply = run(emulator, agent="order-bot", message="Привет", stream="false")
    bad_script = requests.post(f"{emulator.url}/_emulator/script", json=[{"status": "DONE"}], timeout=5)
    bad_fault = requests.post(f"{emulator.url}/_emulator/faults", json={"explode": 1}, timeout=5)
    log = ctl(emulator, "runs")
    ctl(emulator, "key", {"api_key": None})
    ctl(emulator, "reset", {})

    assert added["name"] == "Order Bot" and reply.status_code == 200
    assert bad_script.status_code == 400 and "status must be one of" in bad_script.json()["error"]
    assert bad_fault.status_code == 400
    assert log[0]["agent_id"] == "order-bot" and log[0]["form"]["message"] == "Привет"
    assert [agent["id"] for agent in ctl(emulator, "agents")] == [AGENT, "support"]
    assert ctl(emulator, "key") == {"auth": True}  # back to the key it was built with
    assert ctl(emulator, "runs") == [] and ctl(emulator, "sessions") == []


def test_the_command_line() -> None:
    command = ("--api-key", "cli-key", "--agent", "shop-bot")
    with emulator_command("emulators.agentos", *command) as (port, banner, process):
        url = f"http://127.0.0.1:{port}"
        ok = requests.post(f"{url}/agents/shop-bot/runs", headers={"Authorization": "Bearer cli-key"}, timeout=5,
                           data={"message": "Привет", "stream": "false"})
        default_agent = requests.post(f"{url}/agents/{AGENT}/runs", headers={"Authorization": "Bearer cli-key"},
                                      timeout=5, data={"message": "Привет", "stream": "false"})
        keyless = requests.post(f"{url}/agents/shop-bot/runs", timeout=5, data={"message": "Привет"})
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=10)

    assert banner == f"AgentOS emulator listening on {url}"
    assert ok.status_code == 200 and ok.json()["content"].startswith("Ответ агента shop-bot")
    assert default_agent.status_code == 404 and keyless.status_code == 401
    assert exit_code == 0
