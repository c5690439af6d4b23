"""Throughput against the Celery floor, in one run: a five-task chain that makes the same emulator
calls as the pipeline (bench/floor_app.py), then the real pipeline (ingest, transcribe for a voice
note only, classify, respond, send) with the emulators answering at once, on the same Redis and the
same worker count. Target: the pipeline reaches 50 % of the floor. The bare no-op chain (no
emulator calls: the floor before issue 16) is measured too, once, for comparison.

    .venv/bin/python bench/throughput.py [--messages 300] [--concurrency 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import redis
from common import PROFILE_ID, Bench, first_start, floor_worker, machine, model_calls, push


def replies(bench: Bench) -> int:
    """Replies Wappi accepted so far: a count, not a copy of them all under the lock the pipeline's
    own Wappi calls need (the floor's run waits on a Redis counter, as cheap)."""
    return bench.wappi.sent_count(PROFILE_ID)


def wait_for_replies(bench: Bench, count: int) -> None:
    """Until Wappi accepted `count` replies; both runs wait the same way."""
    while replies(bench) < count:
        time.sleep(0.05)


def warm_up_calls(bench: Bench) -> list[dict[str, Any]]:
    """One warm-up message through the pipeline: the model calls it made, for the floor to repeat."""
    bench.workers.start("all", concurrency=1)
    first_start(bench)
    before = replies(bench)
    push(bench, "77800000000", "Хочу заказать торт, вопрос 0")
    wait_for_replies(bench, before + 1)
    bench.workers.stop("all")
    calls = model_calls(bench)
    assert len(calls) == 2, [call["model"] for call in calls]  # classify, respond
    return calls


def floor(bench: Bench, count: int, concurrency: int, calls: list[dict[str, Any]], offset: int) -> float:
    # deferred: project modules read the settings at import, after the bench set them
    from celery import chain

    with floor_worker(bench, concurrency, calls) as floor_app:
        client = redis.Redis.from_url(bench.redis.url)
        client.delete("floor:done")
        started = time.perf_counter()
        for number in range(count):
            # The customer writes, as in the pipeline run (the emulator's work); nothing is stored.
            sent = bench.wappi.customer_message(PROFILE_ID, f"7781{offset + number:07d}", f"Вопрос {number}")
            chain(floor_app.step.s(sent["message_id"]), floor_app.step.s(), floor_app.model.s(0),
                  floor_app.model.s(1), floor_app.done.s()).apply_async()
        while int(client.get("floor:done") or 0) < count:
            time.sleep(0.05)
        return count / (time.perf_counter() - started)


def pipeline(bench: Bench, count: int, concurrency: int, offset: int) -> float:
    bench.workers.start("all", concurrency=concurrency)
    try:
        time.sleep(1)
        before = replies(bench)
        started = time.perf_counter()
        for number in range(count):
            push(bench, f"7790{offset + number:07d}", f"Хочу заказать торт, вопрос {number}")
        wait_for_replies(bench, before + count)
        return count / (time.perf_counter() - started)
    finally:
        bench.workers.stop("all")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="floor then pipeline, this many times")
    args = parser.parse_args()
    bench = Bench("assistant_bench_throughput")
    floors: list[float] = []
    pipelines: list[float] = []
    try:
        calls = warm_up_calls(bench)
        bare = floor(bench, args.messages, args.concurrency, [], offset=0)
        print(f"bare floor (no emulator calls): {args.messages} five-task no-op chains at {bare:.1f} chains/s")
        for round_number in range(args.rounds):
            offset = (round_number + 1) * args.messages
            floors.append(floor(bench, args.messages, args.concurrency, calls, offset))
            pipelines.append(pipeline(bench, args.messages, args.concurrency, offset))
            print(f"round {round_number + 1}: floor {floors[-1]:.1f} chains/s (two model calls and a Wappi reply "
                  f"each), pipeline {pipelines[-1]:.1f} messages/s ({pipelines[-1] / floors[-1]:.0%} of the floor)")
    finally:
        bench.close()
    ratios = [rate / floor_rate for rate, floor_rate in zip(pipelines, floors, strict=True)]
    print(f"machine: {machine()}, worker concurrency {args.concurrency}")
    print(json.dumps({"bare_floor_msgs_per_s": round(bare, 1), "floor_msgs_per_s": [round(rate, 1) for rate in floors],
                      "pipeline_msgs_per_s": [round(rate, 1) for rate in pipelines],
                      "ratios": [round(ratio, 2) for ratio in ratios], "ratio": round(statistics.median(ratios), 2),
                      "ratio_to_bare_floor": round(statistics.median(pipelines) / bare, 2)}))


if __name__ == "__main__":
    main()
