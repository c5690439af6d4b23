"""Operations: /health, /stats, the webhook (with polling, no double answers), logs, warm shutdown."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from celeryconfig import QUEUES
from devstack import WorkerPool, free_port
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from infra.logging import JsonFormatter, log_context
from tests.conftest import PROFILE_ID, WAPPI_TOKEN, run_poll, wait_for
from tests.test_pipeline import customer_says, replies_to, rows

SECRET = "webhook-secret-for-tests"


@pytest.fixture(scope="module")
def web(workers: WorkerPool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    processes = WorkerPool(tmp_path_factory.mktemp("web"), {**os.environ, "WEBHOOK_SECRET": SECRET})
    yield processes.start_web(free_port())
    processes.stop_all()


@pytest.mark.usefixtures("clean")
def test_health_reports_each_check(web: str, wappi: WappiEmulator) -> None:
    run_poll()
    response = requests.get(f"{web}/health", timeout=10)
    body = response.json()
    checks = body["checks"]
    assert checks["database"]["ok"] and checks["redis"]["ok"]
    assert checks[f"wappi:{PROFILE_ID}"] == {**checks[f"wappi:{PROFILE_ID}"], "ok": True, "app_status": "open"}
    assert checks[f"poll:{PROFILE_ID}"]["ok"]
    # No beat runs in the test suite: the check says so, and the whole answer is 503.
    assert not checks["beat"]["ok"] and "redbeat lock" in checks["beat"]["error"]
    assert response.status_code == 503 and body["status"] == "failing"
    requests.post(f"{wappi.url}/_emulator/profile", json={"profile_id": PROFILE_ID, "authorized": False,
                                                           "app_status": "close"}, timeout=5)
    unauthorized = requests.get(f"{web}/health", timeout=10).json()["checks"][f"wappi:{PROFILE_ID}"]
    assert not unauthorized["ok"] and "authorized=False" in unauthorized["error"]


@pytest.mark.usefixtures("clean")
def test_stats_count_todays_work(web: str, wappi: WappiEmulator) -> None:
    run_poll()
    customer_says(wappi, "77600000001", "Хочу заказать торт, сколько стоит доставка?")
    run_poll()
    wait_for(lambda: replies_to(wappi, "77600000001"), message="a reply")
    stats = wait_for(lambda: (lambda body: body if body["replies"] == 1 else None)(
        requests.get(f"{web}/stats", timeout=10).json()), message="stats to count the reply")
    assert stats["timezone"] == "Asia/Almaty"
    assert stats["messages"]["received"] == 1 and stats["messages"]["sent"] == 1
    assert stats["classified"]["lead"] == 1
    assert set(stats["queues"]) == set(QUEUES)
    assert stats["dead_letters"] == 0 and stats["model_tokens"]["total"] > 0


@pytest.mark.usefixtures("clean")
def test_webhook_and_polling_together_answer_once(web: str, wappi: WappiEmulator) -> None:
    run_poll()
    requests.post(f"{wappi.url}/_emulator/webhook", json={"profile_id": PROFILE_ID,
                                                           "url": f"{web}/webhooks/wappi", "secret": SECRET},
                  timeout=5).raise_for_status()
    try:
        customer_says(wappi, "77600000002", "Здравствуйте! Хочу заказать медовик")
        wait_for(lambda: rows("SELECT 1 FROM messages WHERE direction = 'in'"), message="the webhook to store it")
        run_poll()  # the poll sees the same message: deduplicated
        wait_for(lambda: replies_to(wappi, "77600000002"), message="the reply")
        time.sleep(2.0)
        assert len(replies_to(wappi, "77600000002")) == 1
        assert rows("SELECT count(*) FROM messages WHERE direction = 'in'")[0][0] == 1
    finally:
        requests.post(f"{wappi.url}/_emulator/webhook", json={"profile_id": PROFILE_ID, "url": "", "secret": ""},
                      timeout=5)


@pytest.mark.usefixtures("clean")
def test_webhook_refuses_bad_secret_and_bad_bodies(web: str) -> None:
    url = f"{web}/webhooks/wappi"
    assert requests.post(url, json={"messages": []}, headers={"Authorization": "wrong"}, timeout=5).status_code == 401
    bad = requests.post(url, data=b"{not json", headers={"Authorization": SECRET}, timeout=5)
    assert bad.status_code == 400 and "invalid body" in bad.json()["error"]
    assert requests.post(url, json={"messages": ["x"]}, headers={"Authorization": SECRET}, timeout=5).status_code == 400
    single = requests.post(url, headers={"Authorization": SECRET}, timeout=5, json={"messages": {
        "wh_type": "delivery_status", "id": "AB12", "status": "delivered"}})
    assert single.status_code == 200 and single.json()["new"] == 0


def test_logs_are_json_with_context_and_no_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    formatter = JsonFormatter([WAPPI_TOKEN])
    record = logging.LogRecord("pipeline", logging.WARNING, __file__, 1,
                               "call to 77011234567 failed with token %s", (WAPPI_TOKEN,), None)
    with log_context(profile=PROFILE_ID, message_id=42):
        line = json.loads(formatter.format(record))
    assert line["level"] == "WARNING" and line["profile"] == PROFILE_ID and line["message_id"] == 42
    assert WAPPI_TOKEN not in line["msg"] and "***" in line["msg"]
    assert "77011234567" not in line["msg"] and "*******4567" in line["msg"]


@pytest.mark.usefixtures("clean")
def test_sigterm_lets_the_running_task_finish(wappi: WappiEmulator, gemini: GeminiEmulator, tmp_path: Path) -> None:
    from tests.test_faults import Stack

    stack = Stack(tmp_path, BATCH_WINDOW="0")
    try:
        stack.workers.start("all", concurrency=1)
        stack.send_task("pipeline.poll", "poll")
        wait_for(lambda: rows("SELECT 1 FROM profiles WHERE last_poll_at IS NOT NULL"), message="first start")
        # The model takes 4 s over this answer; SIGTERM arrives in the middle of it.
        gemini.script([{"delay": 4.0, "json": {"reply": "Ответ, который успел уйти", "call": None},
                        "match": "Рабочее время для созвонов"}])
        customer_says(wappi, "77600000003", "Хочу заказать торт")
        stack.send_task("pipeline.poll", "poll")
        wait_for(lambda: any("Рабочее время для созвонов" in json.dumps(call["body"], ensure_ascii=False)
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


