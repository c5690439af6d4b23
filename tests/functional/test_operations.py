"""Operations through real processes: the web process (/health and /stats behind the login,
/health/live open, the webhook with polling, no double answers) and a worker's warm shutdown. What
/health and /stats compute, and the JSON log lines, are tested in tests/unit/test_operations.py."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import requests

from celeryconfig import QUEUES
from devstack import wait_for
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from tests.support.db import rows
from tests.support.emulators import customer_says, replies_to
from tests.support.env import DASHBOARD_PASSWORD, DASHBOARD_USER, PROFILE_ID
from tests.support.env import WEBHOOK_SECRET as SECRET
from tests.support.idle import wait_idle
from tests.support.model_calls import AGENT
from tests.support.polling import run_poll
from tests.support.stack import Stack

LOGIN = (DASHBOARD_USER, DASHBOARD_PASSWORD)


@pytest.mark.usefixtures("clean")
def test_the_web_process_reports_health_and_refuses_bad_webhooks(web: str, wappi: WappiEmulator) -> None:
    run_poll()
    assert requests.get(f"{web}/health/live", timeout=10).json() == {"status": "alive"}
    refused = requests.get(f"{web}/health", timeout=10)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
    wappi.clear_requests()
    response = requests.get(f"{web}/health", auth=LOGIN, timeout=10)
    body = response.json()
    checks = body["checks"]
    assert checks["database"]["ok"] and checks["redis"]["ok"]
    assert checks[f"wappi:{PROFILE_ID}"] == {**checks[f"wappi:{PROFILE_ID}"], "ok": True, "state": "up"}
    assert checks[f"poll:{PROFILE_ID}"]["ok"]
    assert wappi.requests_log() == [], "the poll's recorded state is read, Wappi is not asked"
    # No beat runs in the test suite: the check says so, and the whole answer is 503.
    assert not checks["beat"]["ok"] and "redbeat lock" in checks["beat"]["error"]
    assert response.status_code == 503 and body["status"] == "failing"

    url = f"{web}/webhooks/wappi"
    assert requests.post(url, json={"messages": []}, headers={"Authorization": "wrong"}, timeout=5).status_code == 401
    bad = requests.post(url, data=b"{not json", headers={"Authorization": SECRET}, timeout=5)
    assert bad.status_code == 400 and "invalid body" in bad.json()["error"]
    assert requests.post(url, json={"messages": ["x"]}, headers={"Authorization": SECRET}, timeout=5).status_code == 400
    single = requests.post(url, headers={"Authorization": SECRET}, timeout=5, json={"messages": {
        "wh_type": "delivery_status", "id": "AB12", "status": "delivered"}})
    assert single.status_code == 200 and single.json()["new"] == 0


@pytest.mark.usefixtures("clean")
def test_webhook_and_polling_together_answer_once_and_stats_count_it(web: str, wappi: WappiEmulator) -> None:
    run_poll()
    requests.post(f"{wappi.url}/_emulator/webhook", json={"profile_id": PROFILE_ID,
                                                           "url": f"{web}/webhooks/wappi", "secret": SECRET},
                  timeout=5).raise_for_status()
    try:
        customer_says(wappi, "77600000002", "Здравствуйте! Хочу заказать медовик")
        wait_for(lambda: rows("SELECT 1 FROM messages WHERE direction = 'in'"), message="the webhook to store it")
        run_poll()  # the poll sees the same message: deduplicated
        wait_for(lambda: replies_to(wappi, "77600000002"), message="the reply")
        wait_idle()
        assert len(replies_to(wappi, "77600000002")) == 1
        assert rows("SELECT count(*) FROM messages WHERE direction = 'in'")[0][0] == 1
    finally:
        requests.post(f"{wappi.url}/_emulator/webhook", json={"profile_id": PROFILE_ID, "url": "", "secret": ""},
                      timeout=5)
    assert requests.get(f"{web}/stats", timeout=10).status_code == 401
    stats = requests.get(f"{web}/stats", auth=LOGIN, timeout=10).json()
    assert stats["timezone"] == "Asia/Almaty"
    assert stats["messages"]["received"] == 1 and stats["messages"]["sent"] == 1
    assert stats["classified"]["lead"] == 1 and stats["replies"] == 1
    assert set(stats["queues"]) == set(QUEUES)
    assert stats["dead_letters"] == 0 and stats["model_tokens"]["total"] > 0


@pytest.mark.usefixtures("clean")
def test_sigterm_lets_the_running_task_finish(wappi: WappiEmulator, gemini: GeminiEmulator, tmp_path: Path) -> None:
    stack = Stack(tmp_path, BATCH_WINDOW="0")
    try:
        stack.workers.start("all", concurrency=1)
        stack.first_start()
        # The model takes 4 s over this answer; SIGTERM arrives in the middle of it.
        gemini.script([{"delay": 4.0, "json": {"reply": "Ответ, который успел уйти", "call": None},
                        "match": AGENT}])
        customer_says(wappi, "77600000003", "Хочу заказать торт")
        stack.send_task("pipeline.poll", "poll")
        wait_for(lambda: any(AGENT in json.dumps(call["body"], ensure_ascii=False)
                             for call in gemini.requests_log()), message="the model call to start")
        process = stack.workers.processes.pop("all")
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        log = stack.workers.log("all")
        assert code == 0 and "Warm shutdown" in log
        assert rows("SELECT status FROM messages WHERE direction = 'in'")[0].status == "answered"
        # The send was queued after the answer; a new worker delivers it.
        stack.workers.start("again", concurrency=1)
        replies = wait_for(lambda: replies_to(wappi, "77600000003"), message="the reply after restart")
        assert [reply["body"] for reply in replies] == ["Ответ, который успел уйти"]
    finally:
        stack.close()


