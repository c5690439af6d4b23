"""Throughput against the Celery floor, in one run: a five-task chain that makes the same emulator
calls as the pipeline (bench/floor_app.py), then the real pipeline (ingest, transcribe for a voice
note only, classify, respond, send) with the emulators answering at once, on the same Redis and the
same worker count. Target: the pipeline reaches 50 % of the floor. The bare no-op chain (no
emulator calls: the floor before issue 16) is measured too, once, for comparison. Each run starts
its worker afresh and sends `--warm-up` untimed messages through it first, so neither figure holds
the one-time work of a new pool child (imports, connections, compiled statements).

    .venv/bin/python bench/throughput.py [--messages 300] [--concurrency 4] [--rounds 3] [--warm-up 40]
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


def floor(bench: Bench, count: int, concurrency: int, calls: list[dict[str, Any]], offset: int,
          warm_up: int = 0) -> float:
    # deferred: project modules read the settings at import, after the bench set them
    from celery import chain

    with floor_worker(bench, concurrency, calls) as floor_app:
        client = redis.Redis.from_url(bench.redis.url)
        client.delete("floor:done")

        def publish(prefix: str, number: int) -> None:
            # The customer writes, as in the pipeline run (the emulator's work); nothing is stored.
            sent = bench.wappi.customer_message(PROFILE_ID, f"{prefix}{offset + number:07d}", f"Вопрос {number}")
            chain(floor_app.step.s(sent["message_id"]), floor_app.step.s(), floor_app.model.s(0),
                  floor_app.model.s(1), floor_app.done.s()).apply_async()

        def wait_for(done: int) -> None:
            while int(client.get("floor:done") or 0) < done:
                time.sleep(0.05)

        for number in range(warm_up):  # every pool child past its first tasks, untimed
            publish("7783", number)
        wait_for(warm_up)
        started = time.perf_counter()
        for number in range(count):
            publish("7781", number)
        wait_for(warm_up + count)
        return count / (time.perf_counter() - started)


def pipeline(bench: Bench, count: int, concurrency: int, offset: int, warm_up: int = 0) -> float:
    bench.workers.start("all", concurrency=concurrency)
    try:
        time.sleep(1)
        before = replies(bench)
        for number in range(warm_up):  # every pool child past its first tasks, untimed, as in the floor
            push(bench, f"7792{offset + number:07d}", f"Хочу заказать торт, вопрос {number}")
        wait_for_replies(bench, before + warm_up)
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
    parser.add_argument("--rounds", type=int, default=3, help="floor then pipeline, this many times")
    parser.add_argument("--warm-up", type=int, default=40,
                        help="untimed messages through each freshly started worker before its timed run")
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
            floors.append(floor(bench, args.messages, args.concurrency, calls, offset, args.warm_up))
            pipelines.append(pipeline(bench, args.messages, args.concurrency, offset, args.warm_up))
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
