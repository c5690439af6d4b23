"""Throughput against the Celery floor, in one run: a five-task chain that makes the same emulator
calls as the pipeline (bench/floor_app.py), then the real pipeline (ingest, transcribe for a voice
note only, classify, respond, send) with the emulators answering at once, on the same Redis and the
same worker count. Target: the pipeline reaches 50 % of the floor. The bare no-op chain (no
emulator calls: the floor before issue 16) is measured too, once, for comparison. Beside the rates,
each run reports the machine's busy CPU per message (every process: workers, the bench and its
emulators, PostgreSQL, Redis), which a neighbour on a shared host does not move as it moves the
rates; `cpu_ratio` is the floor's CPU per chain over the pipeline's per message. Each run starts
its worker afresh and sends `--warm-up` untimed messages through it first, so neither figure holds
the one-time work of a new pool child (imports, connections, compiled statements).

    .venv/bin/python bench/throughput.py [--messages 300] [--concurrency 4] [--rounds 3] [--warm-up 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

import redis
from common import PROFILE_ID, Bench, cpu_times, first_start, floor_worker, machine, model_calls, push


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


@dataclass(frozen=True)
class Run:
    rate: float  # messages (or chains) a second
    cpu_ms: float  # the machine's busy CPU per message, every process (workers, bench, emulators, databases)
    steal_ms: float  # CPU the hypervisor took for other guests meanwhile, per message


class Timed:
    """Wall clock and the machine's CPU from now on."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.busy, self.steal = cpu_times()

    def result(self, count: int) -> Run:
        busy, steal = cpu_times()
        return Run(rate=count / (time.perf_counter() - self.started), cpu_ms=(busy - self.busy) * 1000 / count,
                   steal_ms=(steal - self.steal) * 1000 / count)


def floor(bench: Bench, count: int, concurrency: int, calls: list[dict[str, Any]], offset: int,
          warm_up: int = 0) -> Run:
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
        timer = Timed()
        for number in range(count):
            publish("7781", number)
        wait_for(warm_up + count)
        return timer.result(count)


def pipeline(bench: Bench, count: int, concurrency: int, offset: int, warm_up: int = 0) -> Run:
    bench.workers.start("all", concurrency=concurrency)
    try:
        time.sleep(1)
        before = replies(bench)
        for number in range(warm_up):  # every pool child past its first tasks, untimed, as in the floor
            push(bench, f"7792{offset + number:07d}", f"Хочу заказать торт, вопрос {number}")
        wait_for_replies(bench, before + warm_up)
        before = replies(bench)
        timer = Timed()
        for number in range(count):
            push(bench, f"7790{offset + number:07d}", f"Хочу заказать торт, вопрос {number}")
        wait_for_replies(bench, before + count)
        return timer.result(count)
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
    floors: list[Run] = []
    pipelines: list[Run] = []
    try:
        calls = warm_up_calls(bench)
        bare = floor(bench, args.messages, args.concurrency, [], offset=0, warm_up=args.warm_up)
        print(f"bare floor (no emulator calls): {args.messages} five-task no-op chains at {bare.rate:.1f} chains/s")
        for round_number in range(args.rounds):
            offset = (round_number + 1) * args.messages
            floors.append(floor(bench, args.messages, args.concurrency, calls, offset, args.warm_up))
            pipelines.append(pipeline(bench, args.messages, args.concurrency, offset, args.warm_up))
            ours, theirs = pipelines[-1], floors[-1]
            print(f"round {round_number + 1}: floor {theirs.rate:.1f} chains/s (two model calls and a Wappi reply "
                  f"each), pipeline {ours.rate:.1f} messages/s ({ours.rate / theirs.rate:.0%} of the floor); "
                  f"machine CPU per message {theirs.cpu_ms:.1f} vs {ours.cpu_ms:.1f} ms "
                  f"({theirs.cpu_ms / ours.cpu_ms:.0%}), stolen {theirs.steal_ms:.1f} vs {ours.steal_ms:.1f} ms")
    finally:
        bench.close()
    ratios = [ours.rate / theirs.rate for ours, theirs in zip(pipelines, floors, strict=True)]
    cpu_ratios = [theirs.cpu_ms / ours.cpu_ms for ours, theirs in zip(pipelines, floors, strict=True)]
    print(f"machine: {machine()}, worker concurrency {args.concurrency}")
    print(json.dumps({"bare_floor_msgs_per_s": round(bare.rate, 1),
                      "floor_msgs_per_s": [round(run.rate, 1) for run in floors],
                      "pipeline_msgs_per_s": [round(run.rate, 1) for run in pipelines],
                      "ratios": [round(ratio, 2) for ratio in ratios], "ratio": round(statistics.median(ratios), 2),
                      "ratio_to_bare_floor": round(statistics.median(run.rate for run in pipelines) / bare.rate, 2),
                      "floor_cpu_ms": [round(run.cpu_ms, 1) for run in floors],
                      "pipeline_cpu_ms": [round(run.cpu_ms, 1) for run in pipelines],
                      "cpu_ratio": round(statistics.median(cpu_ratios), 2),
                      "stolen_ms": [round(run.steal_ms, 1)
                                    for pair in zip(floors, pipelines, strict=True) for run in pair]}))


if __name__ == "__main__":
    main()
