"""Overhead per message: from the moment a message is visible to the webhook until Wappi accepted
the reply, with no batching window and the Gemini emulator answering at once (so the model's own
time is close to zero and is not subtracted: the figure includes the two model round trips over
loopback). Messages go one at a time, so queueing behind other messages is not counted. Target:
median under 50 ms.

    .venv/bin/python bench/overhead.py [--messages 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from common import Bench, first_start, machine, push


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100)
    args = parser.parse_args()
    bench = Bench("assistant_bench_overhead")
    overheads: list[float] = []
    try:
        bench.workers.start("all", concurrency=4)
        first_start(bench)
        for number in range(args.messages + 5):
            before = len(bench.wappi.sent_messages("be0c0000-0001"))
            visible = push(bench, f"7791{number:07d}", f"Хочу заказать торт, вопрос {number}")
            while len(bench.wappi.sent_messages("be0c0000-0001")) <= before:
                time.sleep(0.001)
            accepted = bench.wappi.sent_messages("be0c0000-0001")[-1]["accepted_at"]
            if number >= 5:  # the first few warm up connections and caches
                overheads.append((accepted - visible) * 1000)
        overheads.sort()
        p95 = overheads[max(0, int(len(overheads) * 0.95) - 1)]
        print(f"{len(overheads)} messages: visible -> reply accepted: "
              f"median {statistics.median(overheads):.1f} ms, p95 {p95:.1f} ms")
    finally:
        bench.close()
    print(f"machine: {machine()}")
    print(json.dumps({"median_ms": round(statistics.median(overheads), 1), "p95_ms": round(p95, 1)}))


if __name__ == "__main__":
    main()
