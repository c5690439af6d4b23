"""Merging rapid messages: the delay from a burst's window end to the start of its answer (the
sales agent's model call), over 50 bursts of 3 messages. Target: median under 250 ms.

    .venv/bin/python bench/batching.py [--window 3] [--bursts 50]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time

import sqlalchemy as sa
from common import Bench, first_start, machine, push

AGENT = "Рабочее время для созвонов"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=3.0, help="BATCH_WINDOW in seconds")
    parser.add_argument("--bursts", type=int, default=50)
    args = parser.parse_args()
    bench = Bench("assistant_bench_batching", BATCH_WINDOW=str(args.window))
    try:
        bench.workers.start("all", concurrency=4)
        first_start(bench)
        # deferred: project modules read the settings at import, after the bench set them

        from db.session import get_engine

        for burst in range(args.bursts):
            phone = f"7780{burst:07d}"
            for part in ("Хочу заказать торт", "на субботу", f"заказ номер {burst}"):
                push(bench, phone, part)
                time.sleep(0.05)
            time.sleep(0.25)
        deadline = time.time() + args.window + 120
        while bench.wappi.sent_count("be0c0000-0001") < args.bursts and time.time() < deadline:
            time.sleep(0.5)
        with get_engine().connect() as connection:
            last_stored: dict[str, float] = dict(connection.execute(sa.text(
                "SELECT c.phone, extract(epoch FROM max(m.created_at)) FROM messages m JOIN contacts c "
                "ON c.id = m.contact_id WHERE m.direction = 'in' GROUP BY c.phone")).tuples().all())
        started: dict[str, float] = {}
        for call in bench.gemini.requests_log():
            text = json.dumps(call["body"], ensure_ascii=False)
            match = re.search(r"заказ номер (\d+)", text)
            if AGENT in text and match:
                started.setdefault(f"7780{int(match.group(1)):07d}", call["received_at"])
        late = [(started[phone] - (float(last_stored[phone]) + args.window)) * 1000
                for phone in started if phone in last_stored]
        replies = bench.wappi.sent_count("be0c0000-0001")
        late.sort()
        p95 = late[max(0, int(len(late) * 0.95) - 1)]
        print(f"{len(late)} bursts answered ({replies} replies, one per burst expected); window {args.window:.1f} s; "
              f"late median {statistics.median(late):.0f} ms, p95 {p95:.0f} ms, max {late[-1]:.0f} ms")
    finally:
        bench.close()
    print(f"machine: {machine()}")
    print(json.dumps({"window_ms": int(args.window * 1000), "late_ms_median": round(statistics.median(late), 1),
                      "late_ms_p95": round(p95, 1)}))


if __name__ == "__main__":
    main()
