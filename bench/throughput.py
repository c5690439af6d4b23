"""Throughput against the Celery floor, in one run: a bare five-task no-op chain, then the real
pipeline (ingest, transcribe, classify, respond, send) with the emulators answering at once, on
the same Redis and the same worker count. Target: the pipeline reaches 50 % of the floor.

    .venv/bin/python bench/throughput.py [--messages 300] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import redis
from common import Bench, first_start, machine, push


def floor(bench: Bench, count: int, concurrency: int) -> float:
    # deferred: project modules read the settings at import, after the bench set them
    from celery import chain

    env = {**bench.env, "PYTHONPATH": str(Path(__file__).parent)}
    log = (bench.work_dir / "floor.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "floor_app", "worker", "-c", str(concurrency),
                               "-n", "floor@%h", "--without-mingle", "--without-gossip", "-l", "WARNING"],
                              cwd=Path(__file__).parent, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        sys.path.insert(0, str(Path(__file__).parent))
        os.environ["REDIS_URL"] = bench.redis.url
        # deferred: project modules read the settings at import, after the bench set them
        import floor_app

        client = redis.Redis.from_url(bench.redis.url)
        client.delete("floor:done")
        time.sleep(3)  # the worker's start-up is not part of the figure
        started = time.perf_counter()
        for number in range(count):
            chain(floor_app.step.s(number), floor_app.step.s(), floor_app.step.s(), floor_app.step.s(),
                  floor_app.done.s()).apply_async()
        while int(client.get("floor:done") or 0) < count:
            time.sleep(0.05)
        return count / (time.perf_counter() - started)
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def pipeline(bench: Bench, count: int, concurrency: int) -> float:
    bench.workers.start("all", concurrency=concurrency)
    first_start(bench)
    time.sleep(1)
    started = time.perf_counter()
    for number in range(count):
        push(bench, f"7790{number:07d}", f"Хочу заказать торт, вопрос {number}")
    while len(bench.wappi.sent_messages("be0c0000-0001")) < count:
        time.sleep(0.05)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    bench = Bench("assistant_bench_throughput")
    try:
        floor_rate = floor(bench, args.messages, args.concurrency)
        print(f"floor: {args.messages} five-task no-op chains at {floor_rate:.1f} chains/s")
        pipeline_rate = pipeline(bench, args.messages, args.concurrency)
        print(f"pipeline: {args.messages} messages answered at {pipeline_rate:.1f} messages/s "
              f"({pipeline_rate / floor_rate:.0%} of the floor)")
    finally:
        bench.close()
    print(f"machine: {machine()}, worker concurrency {args.concurrency}")
    print(json.dumps({"floor_msgs_per_s": round(floor_rate, 1), "pipeline_msgs_per_s": round(pipeline_rate, 1),
                      "ratio": round(pipeline_rate / floor_rate, 2)}))


if __name__ == "__main__":
    main()
