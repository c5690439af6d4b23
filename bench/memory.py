"""Memory: resident size of each worker after 5,000 and 10,000 messages through the pipeline.
Target: under 150 MB, and no growth between the two.

    .venv/bin/python bench/memory.py [--messages 10000]
"""

from __future__ import annotations

import argparse
import json
import time

from common import Bench, first_start, machine, push, worker_rss_mb

WORKERS = {"intake": "poll,ingest,transcribe", "brain": "classify,respond", "send": "send,followup"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    half = args.messages // 2
    bench = Bench("assistant_bench_memory")
    readings: dict[int, dict[str, dict[str, float]]] = {}
    try:
        for name, queues in WORKERS.items():
            bench.workers.start(name, queues, concurrency=1)
        first_start(bench)
        for number in range(args.messages):
            push(bench, f"7792{number:07d}", f"Хочу заказать торт, вопрос {number}")
            if number + 1 in (half, args.messages):
                while len(bench.wappi.sent_messages("be0c0000-0001")) < number + 1:
                    time.sleep(0.2)
                readings[number + 1] = {name: worker_rss_mb(bench.workers, name) for name in WORKERS}
                print(f"after {number + 1} messages: " + ", ".join(
                    f"{name} rss {mb['rss']:.0f} MB / pss {mb['pss']:.0f} MB"
                    for name, mb in readings[number + 1].items()), flush=True)
            elif number % 200 == 199:  # keep the queues short, like real traffic would
                while len(bench.wappi.sent_messages("be0c0000-0001")) < number - 100:
                    time.sleep(0.1)
    finally:
        bench.close()
    print(f"machine: {machine()} (each worker: main process + 1 pool process; the figures below are the "
          f"largest single process's RSS)")
    largest = {count: round(max(item["rss"] for item in reading.values()), 1) for count, reading in readings.items()}
    print(json.dumps({f"rss_mb_{half}": largest[half], f"rss_mb_{args.messages}": largest[args.messages]}))


if __name__ == "__main__":
    main()
