"""Fault-injection run: N conversations through real workers while Wappi fails 20 % of calls (half
of them accepted-then-5xx, with every accepted send showing in the history only 10 s later),
Gemini answers 10 % with 429, pool processes are SIGKILLed at times spread over the whole run, and
Redis restarts half-way through it. The last line is one JSON object with the fault counts
actually applied; duplicates and lost must be 0.

    .venv/bin/python bench/faults.py [--conversations 300] [--feed-seconds 150]

Uses the local PostgreSQL (database `assistant_bench`, recreated) and a private Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests
import sqlalchemy as sa
from common import KEY, PG_ADMIN, PROFILE_ID, TOKEN


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=300)
    parser.add_argument("--kills", type=int, default=12, help="random SIGKILLs of pool processes")
    parser.add_argument("--feed-seconds", type=float, default=None,
                        help="how long the customers keep writing (default: half a second each)")
    parser.add_argument("--history-lag", type=float, default=10.0, help="seconds until a send shows in the history")
    parser.add_argument("--timeout", type=float, default=1500.0)
    args = parser.parse_args()

    # deferred: project modules read the settings at import, after the bench set them

    from devstack import Stack, wait_for

    stack = Stack(Path(tempfile.mkdtemp(prefix="faults-bench-")), {
        **os.environ, "WAPPI_TIMEOUT": "3", "GEMINI_TIMEOUT_MS": "5000", "SEND_RATE_PER_MINUTE": "6000",
        "SEND_BURST": "100", "SEND_CHAT_GAP_MIN": "0", "SEND_CHAT_GAP_MAX": "0", "TASK_MAX_ATTEMPTS": "8",
        "LOG_LEVEL": "WARNING"})
    wappi, gemini = stack.start_emulators(TOKEN, PROFILE_ID, KEY)
    redis_server = stack.start_redis(durable=True)  # it restarts half-way and must keep the queues
    engine = sa.create_engine(stack.create_database(PG_ADMIN, "assistant_bench"))
    stack.migrate(knowledge_base=False)

    def rows(query: str) -> list[sa.Row[tuple[object, ...]]]:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(query)).all())

    workers = stack.workers
    layout = {"poll": "poll", "ingest": "ingest,transcribe", "classify": "classify", "respond": "respond",
              "send": "send"}
    for name, queues in layout.items():
        workers.start(name, queues, concurrency=2)
    app = stack.app
    running = threading.Event()
    running.set()

    def beat() -> None:
        while running.is_set():
            try:
                app.send_task("pipeline.poll", queue="poll", expires=5)
            except Exception:  # noqa: BLE001 - the broker is restarting; the next tick retries
                pass
            time.sleep(1.0)

    started = time.monotonic()
    ticker = threading.Thread(target=beat, daemon=True)
    ticker.start()
    rng = random.Random(42)
    feed_seconds = args.feed_seconds if args.feed_seconds is not None else args.conversations * 0.5
    # The run: the feed, then the tail while the last replies settle (reconciliation's 45 s check).
    run_seconds = feed_seconds + 60.0
    kill_times = sorted(rng.uniform(0, run_seconds) for _ in range(args.kills))
    restart_time = run_seconds / 2
    applied: dict[str, list[float]] = {"kills": [], "redis_restarts": []}

    def chaos() -> None:
        """SIGKILLs at their times over the whole run, and one Redis restart half-way."""
        events = [(at, "kill") for at in kill_times] + [(restart_time, "restart")]
        for at, what in sorted(events):
            while running.is_set() and time.monotonic() - started < at:
                time.sleep(0.1)
            if not running.is_set():
                return
            if what == "restart":
                redis_server.restart()
                applied["redis_restarts"].append(round(time.monotonic() - started, 1))
                continue
            victim = rng.choice(list(layout))
            children = workers.children(victim)
            if children:
                os.kill(children[0], signal.SIGKILL)
                applied["kills"].append(round(time.monotonic() - started, 1))

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    try:
        wait_for(lambda: rows("SELECT 1 FROM profiles WHERE last_poll_at IS NOT NULL"), timeout=60,
                 message="first start")
        # 20 % of calls fail: 5 % a 5xx, 5 % a timeout, and on sends 10 % accepted-then-5xx (a lost
        # acknowledgement); every accepted send shows in the history only after the lag.
        requests.post(f"{wappi.url}/_emulator/faults", json={
            "rate_5xx": 0.05, "rate_timeout": 0.05, "timeout_seconds": 4.0, "rate_accept_then_5xx": 0.1,
            "history_lag_seconds": args.history_lag, "seed": 1}, timeout=5)
        requests.post(f"{gemini.url}/_emulator/faults", json={"rate_429": 0.1, "retry_delay": "1s", "seed": 1},
                      timeout=5)
        phones = [f"7702{index:07d}" for index in range(args.conversations)]
        chaos_thread.start()
        feed_started = time.monotonic()
        for index, phone in enumerate(phones):
            due = feed_started + feed_seconds * index / max(1, args.conversations)
            time.sleep(max(0.0, due - time.monotonic()))
            wappi.customer_message(PROFILE_ID, phone, f"Здравствуйте! Вопрос {index}: сколько стоит доставка?")

        def settled() -> bool:
            pending = rows("SELECT count(*) FROM messages WHERE direction = 'in' AND status = 'received'")[0][0]
            unsent = rows("SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')")[0][0]
            inbound = rows("SELECT count(*) FROM messages WHERE direction = 'in'")[0][0]
            return inbound == args.conversations and pending == 0 and unsent == 0

        try:
            wait_for(settled, timeout=args.timeout, interval=2.0, message="all conversations to settle")
        except AssertionError as exc:
            print(f"not settled: {exc}", file=sys.stderr)
    finally:
        seconds = time.monotonic() - started
        running.clear()
        ticker.join(timeout=5)
        if chaos_thread.is_alive():
            chaos_thread.join(timeout=30)
        wappi_faults = Counter(entry["fault"] for entry in wappi.requests_log() if entry.get("fault"))
        gemini_429 = sum(workers.log(name).count("GeminiTransientError") for name in layout
                         if workers.log_path(name).exists())
        sent = wappi.sent_messages(PROFILE_ID)
        per_phone = Counter(item["phone"] for item in sent)
        dead_letters = rows("SELECT count(*) FROM dead_letters")[0][0]
        failed = rows("SELECT count(*) FROM messages WHERE direction = 'in' AND status = 'failed'")[0][0] + \
            rows("SELECT count(*) FROM outbox WHERE status = 'failed'")[0][0]
        replied = sum(1 for count in per_phone.values() if count >= 1)
        duplicates = sum(count - 1 for count in per_phone.values() if count > 1)
        lost = args.conversations - replied - failed
        stack.close()
    print(json.dumps({"conversations": args.conversations, "replies": replied, "duplicates": duplicates,
                      "dead_letters": dead_letters, "lost": lost, "seconds": round(seconds, 1),
                      "faults": {"worker_kills": len(applied["kills"]), "kill_times": applied["kills"],
                                 "redis_restarts": applied["redis_restarts"], "wappi": dict(wappi_faults),
                                 "history_lag_seconds": args.history_lag,
                                 "gemini_retries_logged": gemini_429}}))
    return 0 if duplicates == 0 and lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
