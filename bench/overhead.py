"""Overhead per message: from the webhook's HTTP POST to a real gunicorn web process (as the
Procfile runs it) until Wappi accepted the reply, with no batching window and the Gemini emulator
answering at once (so the model's own time is close to zero and is not subtracted: the figure
includes the two model round trips over loopback). Messages go one at a time, so queueing behind
other messages is not counted. Both ends are timestamps (the POST's start here, the emulator's
`accepted_at`), so how often the bench looks for the reply does not change the figure; it looks
every 20 ms, not every 1 ms under the emulator's lock that the pipeline's own calls need.
Targets: median under 50 ms, p95 under 100 ms. Then the same figure for the Celery floor
(bench/floor_app.py: five tasks, the same two model requests and Wappi reply, no web process and no
database), one chain at a time: what Celery and the emulators alone take on this machine.

    .venv/bin/python bench/overhead.py [--messages 100]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import requests
from common import PROFILE_ID, ROOT, Bench, first_start, floor_worker, machine, model_calls

SECRET = "bench-webhook-secret"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_web(bench: Bench) -> tuple[subprocess.Popen[bytes], str]:
    """gunicorn web.app:application as the Procfile runs it (2 workers, 4 threads each)."""
    port = free_port()
    log = (bench.work_dir / "web.log").open("ab")
    web = subprocess.Popen([sys.executable, "-m", "gunicorn", "web.app:application", "--bind", f"127.0.0.1:{port}",
                            "--workers", "2", "--threads", "4"], cwd=ROOT, env=bench.env, stdout=log,
                           stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return web, url
        except OSError:
            if web.poll() is not None or time.monotonic() > deadline:
                tail = (bench.work_dir / "web.log").read_text()[-2000:]
                raise RuntimeError(f"gunicorn did not start: {tail}") from None
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100)
    args = parser.parse_args()
    bench = Bench("assistant_bench_overhead", WEBHOOK_SECRET=SECRET)
    overheads: list[float] = []
    web = None
    try:
        bench.workers.start("all", concurrency=4)
        web, url = start_web(bench)
        first_start(bench)
        http = requests.Session()  # keep-alive, as Wappi's pushes would be
        for number in range(args.messages + 5):
            before = bench.wappi.sent_count(PROFILE_ID)
            text = f"Хочу заказать торт, вопрос {number}"
            sent = bench.wappi.customer_message(PROFILE_ID, f"7791{number:07d}", text)
            item = {"wh_type": "incoming_message", "id": sent["message_id"], "chatId": sent["chat_id"],
                    "from": sent["chat_id"], "type": "chat", "body": text, "time": sent["time"], "is_me": False,
                    "senderName": "Bench"}
            posted = time.time()
            response = http.post(f"{url}/webhooks/wappi", json={"messages": [item]},
                                 headers={"Authorization": SECRET}, timeout=10)
            assert response.status_code == 200 and response.json()["new"] == 1, response.text
            while bench.wappi.sent_count(PROFILE_ID) <= before:
                time.sleep(0.02)
            if number >= 5:  # the first few warm up connections and caches
                overheads.append((bench.wappi.sent_since(PROFILE_ID, before)[0]["accepted_at"] - posted) * 1000)
        p95 = percentile95(overheads)
        print(f"{len(overheads)} messages: webhook POST -> reply accepted: "
              f"median {statistics.median(overheads):.1f} ms, p95 {p95:.1f} ms")
        web.terminate()
        web.wait(timeout=30)
        web = None
        bench.workers.stop("all")
        floors = floor_latencies(bench, args.messages, model_calls(bench)[:2])
        print(f"the Celery floor, one chain at a time (5 tasks, the same two model calls and Wappi reply): "
              f"median {statistics.median(floors):.1f} ms, p95 {percentile95(floors):.1f} ms")
    finally:
        if web is not None:
            web.terminate()
            web.wait(timeout=30)
        bench.close()
    print(f"machine: {machine()}")
    print(json.dumps({"median_ms": round(statistics.median(overheads), 1), "p95_ms": round(p95, 1),
                      "floor_median_ms": round(statistics.median(floors), 1),
                      "floor_p95_ms": round(percentile95(floors), 1)}))


def percentile95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.95) - 1)]


def floor_latencies(bench: Bench, count: int, calls: list[dict[str, Any]]) -> list[float]:
    """The floor of this figure: the bare five-task Celery chain of bench/floor_app.py (two no-op
    steps, the pipeline's two model requests, a Wappi reply), one chain at a time on the same Redis
    and worker concurrency, from its publish to the Wappi emulator accepting the reply. No web
    process, no database: what Celery and the emulators alone take."""
    # deferred: project modules read the settings at import, after the bench set them
    from celery import chain

    latencies: list[float] = []
    with floor_worker(bench, 4, calls) as floor_app:
        for number in range(count + 5):
            before = bench.wappi.sent_count(PROFILE_ID)
            sent = bench.wappi.customer_message(PROFILE_ID, f"7792{number:07d}", f"Вопрос {number}")
            published = time.time()
            chain(floor_app.step.s(sent["message_id"]), floor_app.step.s(), floor_app.model.s(0),
                  floor_app.model.s(1), floor_app.done.s()).apply_async()
            while bench.wappi.sent_count(PROFILE_ID) <= before:
                time.sleep(0.02)
            if number >= 5:
                latencies.append((bench.wappi.sent_since(PROFILE_ID, before)[0]["accepted_at"] - published) * 1000)
    return latencies


if __name__ == "__main__":
    main()
