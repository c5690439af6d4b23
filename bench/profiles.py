"""Many profiles, nothing new (issue 13). First the idle poll cost per profile at 10 and 100 profiles,
counted in this process (a tick: the dispatcher's `due_profiles`, then each profile's `pipeline.poll`
task body); then 100 profiles under a real poll worker (`-Q poll -c 4`, as the Procfile) and beat,
one profile's Wappi calls timing out: the other 99 must keep their poll period.

    .venv/bin/python bench/profiles.py [--window 60] [--baseline 20]

Uses the local PostgreSQL (database `assistant_bench_profiles`, recreated), a private Redis and the
emulators, all on 127.0.0.1. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime
from itertools import pairwise
from typing import Any

import redis
import sqlalchemy as sa
from common import PROFILE_ID, Bench, machine
from sqlalchemy.dialects import postgresql

# 2 s, not the default 5 s: 60 s then hold ~30 periods per profile (a p95 worth the name), and the
# interval is shorter than one failing poll (two client attempts of WAPPI_TIMEOUT each), so the
# timing-out profile holds a pool process across several ticks: the case where it could starve others.
POLL_INTERVAL = 2.0
WAPPI_TIMEOUT = 3.0
SLOW_ANSWER = 5.0  # the emulator's answer for the failing profile: later than the client waits
CHATS_PER_PROFILE = 3
POLLS = 500  # idle polls measured at each size: 50 ticks of 10 profiles, 5 ticks of 100
SAMPLE_EVERY = 0.25  # s between reads of profiles.last_poll_at (a poll period is ~8 times longer)


def profile_ids(count: int) -> list[str]:
    """`count` provider profile ids; the first is the environment's (`due_profiles` creates its row)."""
    return [PROFILE_ID[:-4] + f"{number:04d}" for number in range(1, count + 1)]


def add_profiles(bench: Bench, providers: list[str]) -> None:
    """Rows in `profiles` (provider wappi, WAPPI_TOKEN: no stored credentials), each profile in the
    emulator with a few old chats, and each profile's first poll (records them as history)."""
    # deferred: project modules read the settings at import, after the bench set them
    from db.models import Profile
    from db.session import session_scope
    from tasks.poll import poll

    with session_scope() as session:
        for provider_id in providers:
            session.execute(postgresql.insert(Profile).values(
                provider="wappi", profile_id=provider_id, name=f"Bench {provider_id}", active=True,
            ).on_conflict_do_nothing(index_elements=["profile_id"]))
        database_ids = {provider_id: database_id for provider_id, database_id in session.execute(
            sa.select(Profile.profile_id, Profile.id).where(Profile.profile_id.in_(providers)))}
    for provider_id in providers:
        if provider_id not in bench.wappi.profile_ids:
            bench.wappi.add_profile(provider_id)
        bench.wappi.seed_chats(provider_id, CHATS_PER_PROFILE)
        poll.run(database_ids[provider_id])


class Counters:
    """SQL statements and transactions of this process, Redis commands of the private Redis (every
    client's), and Wappi calls (the emulator's request log)."""

    def __init__(self, bench: Bench, engine: sa.Engine) -> None:
        self.bench = bench
        self.redis = redis.Redis.from_url(bench.redis.url)
        self.statements = 0
        self.transactions = 0
        sa.event.listen(engine, "before_cursor_execute", self._statement)
        sa.event.listen(engine, "checkout", self._checkout)

    def _statement(self, *_: Any) -> None:
        self.statements += 1

    def _checkout(self, *_: Any) -> None:
        self.transactions += 1

    def redis_calls(self) -> Counter[str]:
        stats = self.redis.info("commandstats")
        return Counter({name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()
                        if name != "cmdstat_info"})  # our own reading is no product call

    def snapshot(self) -> tuple[int, int, Counter[str], int]:
        return self.statements, self.transactions, self.redis_calls(), len(self.bench.wappi.requests_log())


def idle_cost(bench: Bench, counters: Counters, count: int) -> dict[str, float]:
    """Ticks over `count` profiles with nothing new (POLLS polls in all), as the dispatcher and the
    tasks do them."""
    # deferred: project modules read the settings at import, after the bench set them
    from db.session import session_scope
    from pipeline.poll import due_profiles
    from settings import get_settings
    from tasks.poll import poll

    settings = get_settings()
    tick_ms = []
    statements, transactions, redis_before, wappi_before = counters.snapshot()
    for _ in range(POLLS // count):
        started = time.perf_counter()
        due = due_profiles(session_scope, settings)
        assert len(due) == count, f"{len(due)} profiles due, {count} expected"
        for profile in due:
            assert poll.run(profile.id, provider_id=profile.profile_id) == 0  # nothing new: no conversation starts
        tick_ms.append((time.perf_counter() - started) * 1000)
    after_statements, after_transactions, redis_after, wappi_after = counters.snapshot()
    redis_calls = redis_after - redis_before
    polls = POLLS // count * count
    figures = {
        "tick_ms": statistics.median(tick_ms),
        "ms_per_profile": statistics.median(tick_ms) / count,
        "sql_per_profile": (after_statements - statements) / polls,
        "transactions_per_profile": (after_transactions - transactions) / polls,
        "redis_per_profile": sum(redis_calls.values()) / polls,
        "wappi_per_profile": (wappi_after - wappi_before) / polls,
    }
    print(f"  {count} profiles, Redis commands a poll: "
          + ", ".join(f"{name} {calls / polls:.2f}" for name, calls in redis_calls.most_common()))
    return figures


class PollSampler:
    """Reads every profile's `last_poll_at` (the moment its poll started, written when it ends)
    every SAMPLE_EVERY seconds: the emulator's request log says which calls were made, not when."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.polls: dict[str, set[float]] = defaultdict(set)
        self._running = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self._running.is_set():
            with self.engine.connect() as connection:
                for provider_id, moment in connection.execute(sa.text(
                        "SELECT profile_id, last_poll_at FROM profiles WHERE last_poll_at IS NOT NULL")):
                    self.polls[provider_id].add(moment.timestamp())  # timestamptz: an aware datetime
            time.sleep(SAMPLE_EVERY)

    def start(self) -> PollSampler:
        self._running.set()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._running.clear()
        self._thread.join(timeout=5)

    def periods(self, provider_id: str, start: float, end: float) -> list[float]:
        moments = sorted(moment for moment in self.polls[provider_id] if start <= moment <= end)
        return [later - earlier for earlier, later in pairwise(moments)]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def period_figures(sampler: PollSampler, healthy: list[str], start: float, end: float) -> dict[str, float]:
    """The healthy profiles' poll periods pooled, and the worst one profile's own p95 (a starved
    profile would show there even if the pool hides it)."""
    each = {provider_id: sampler.periods(provider_id, start, end) for provider_id in healthy}
    periods = [period for own in each.values() for period in own]
    return {"median_s": statistics.median(periods), "p95_s": percentile(periods, 0.95), "max_s": max(periods),
            "p95_ratio": percentile(periods, 0.95) / POLL_INTERVAL, "periods": len(periods),
            "worst_profile_p95_s": max(percentile(own, 0.95) for own in each.values() if own)}


def cpu_seconds(bench: Bench, name: str) -> float:
    """CPU time (user + system) used so far by one worker's main process and its pool processes."""
    total = 0
    for pid in (bench.workers.processes[name].pid, *bench.workers.children(name)):
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / os.sysconf("SC_CLK_TCK")


def early_retries(poll_log: str, failing: str) -> list[tuple[float, float]]:
    """(announced backoff, seconds from one failure to the next poll's start) of the failing profile's
    retries that started before their backoff ended. A failing poll lasts at least two client
    attempts of WAPPI_TIMEOUT, so a start is at most that long before the failure it logs."""
    failures: list[tuple[float, float]] = []  # (logged at, announced delay)
    for line in poll_log.splitlines():
        if line.startswith("{") and f"poll of profile {failing} failed" in line:
            entry = json.loads(line)
            delay = float(entry["msg"].split("next try in ")[1].split(" s")[0])
            failures.append((datetime.fromisoformat(entry["ts"]).timestamp(), delay))
    early = []
    for (failed_at, delay), (next_failed_at, _) in pairwise(failures):
        latest_start = next_failed_at - 2 * WAPPI_TIMEOUT
        if latest_start < failed_at + delay:
            early.append((delay, max(0.0, latest_start - failed_at)))
    return early


def starvation(bench: Bench, counters: Counters, providers: list[str], failing: list[str], baseline: float,
               window: float) -> dict[str, Any]:
    """Real poll worker and beat; `baseline` seconds healthy, then `window` seconds with the `failing`
    profiles timing out on every Wappi call."""
    from devstack import wait_for

    engine = sa.create_engine(bench.env["DATABASE_URL"])
    sampler = PollSampler(engine)
    healthy = [provider_id for provider_id in providers if provider_id not in failing]
    # The poll worker as the Procfile runs it. No worker for the other queues: nothing new arrives,
    # so the polls enqueue nothing (the follow-up sweep's tick waits in its queue unserved).
    # INFO, as deployed: beat says it started at INFO, and the worker logs the polls it drops as expired.
    bench.env["LOG_LEVEL"] = "INFO"
    bench.workers.start("poll", "poll", concurrency=4)
    bench.workers.start_beat()
    started = time.time()
    sampler.start()
    try:
        wait_for(lambda: all(any(moment > started for moment in sampler.polls[provider_id])
                             for provider_id in providers), timeout=30, message="every profile polled by the workers")
        baseline_start = time.time()
        time.sleep(baseline)
        bench.wappi.clear_requests()
        redis_before, cpu_before = counters.redis_calls(), cpu_seconds(bench, "poll")
        fault_start = time.time()
        bench.wappi.set_faults({"rate_timeout": 1.0, "timeout_seconds": SLOW_ANSWER, "profile_ids": failing})
        time.sleep(window)
        fault_end = time.time()
        redis_calls, cpu = counters.redis_calls() - redis_before, cpu_seconds(bench, "poll") - cpu_before
        log = bench.wappi.requests_log()
        failures = [counters.redis.hget(f"assistant:poll-backoff:{provider_id}", "failures")
                    for provider_id in failing]
        time.sleep(1.5)  # the polls still running at the end commit their last_poll_at, to be sampled
    finally:
        sampler.stop()
        bench.wappi.set_faults({})
    poll_log = bench.workers.log("poll")
    chats_get = Counter(entry["query"].get("profile_id") for entry in log if entry["path"].endswith("/chats/get"))
    seen = sum(len(sampler.periods(provider_id, fault_start, fault_end)) + 1 for provider_id in healthy)
    logged = sum(chats_get[provider_id] for provider_id in healthy)
    polls = sum(chats_get.values())
    print("  live, Redis commands a poll: " + ", ".join(
        f"{name} {calls / polls:.2f}" for name, calls in redis_calls.most_common(8)))
    return {
        "baseline": period_figures(sampler, healthy, baseline_start, fault_start),
        "with_failing": period_figures(sampler, healthy, fault_start, fault_end),
        "failing_chats_get_calls": sum(chats_get[provider_id] for provider_id in failing),
        "failing_polls_failed": sum(int(count or 0) for count in failures),
        "healthy_polls_sampled": seen,
        "healthy_chats_get_logged": logged,
        "redis_per_poll_live": sum(redis_calls.values()) / polls,
        "worker_cpu_ms_per_poll": cpu * 1000 / polls,
        "worker_cpu_percent": 100 * cpu / (fault_end - fault_start) / (os.cpu_count() or 1),
        "expired_tasks": poll_log.count("Discarding revoked task"),
        "failing_early_retries": [retry for provider_id in failing for retry in early_retries(poll_log, provider_id)],
        "window_s": fault_end - fault_start,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=60.0, help="seconds with one profile timing out")
    parser.add_argument("--baseline", type=float, default=20.0, help="seconds before, every profile healthy")
    parser.add_argument("--failing", type=int, default=1, help="profiles timing out (the target: one)")
    args = parser.parse_args()
    bench = Bench("assistant_bench_profiles", POLL_INTERVAL=str(POLL_INTERVAL), WAPPI_TIMEOUT=str(WAPPI_TIMEOUT))
    try:
        # deferred: project modules read the settings at import, after the bench set them
        from db.session import get_engine

        counters = Counters(bench, get_engine())
        providers = profile_ids(100)
        idle: dict[int, dict[str, float]] = {}
        added = 0
        for count in (10, 100):
            add_profiles(bench, providers[added:count])
            added = count
            idle[count] = idle_cost(bench, counters, count)
        print(f"{'profiles':>8} {'tick ms':>8} {'ms/profile':>10} {'SQL/profile':>11} {'transactions':>12} "
              f"{'Redis/profile':>13} {'Wappi/profile':>13}")
        for count, row in idle.items():
            print(f"{count:>8} {row['tick_ms']:>8.1f} {row['ms_per_profile']:>10.2f} {row['sql_per_profile']:>11.2f} "
                  f"{row['transactions_per_profile']:>12.2f} {row['redis_per_profile']:>13.2f} "
                  f"{row['wappi_per_profile']:>13.2f}")
        ratio = {name: idle[100][name] / idle[10][name] for name in idle[10] if name != "tick_ms"}
        print("per-profile cost, 100 vs 10: " + ", ".join(f"{name} {value:.2f}" for name, value in ratio.items()))

        failing = providers[49:49 + args.failing]
        live = starvation(bench, counters, providers, failing, args.baseline, args.window)
        for phase in ("baseline", "with_failing"):
            row = live[phase]
            print(f"{phase:>12}: poll period of the healthy profiles median {row['median_s']:.2f} s, "
                  f"p95 {row['p95_s']:.2f} s, max {row['max_s']:.2f} s ({row['periods']} periods); "
                  f"p95 = {row['p95_ratio']:.2f} x POLL_INTERVAL ({POLL_INTERVAL:.0f} s); "
                  f"worst profile's own p95 {row['worst_profile_p95_s']:.2f} s")
        print(f"failing profile(s): {live['failing_chats_get_calls']} chats/get calls in {live['window_s']:.0f} s, "
              f"{live['failing_polls_failed']} failed polls (backoff counter); healthy polls sampled "
              f"{live['healthy_polls_sampled']} of {live['healthy_chats_get_logged']} chats/get logged; "
              f"{live['expired_tasks']} poll tasks expired unrun; "
              f"{live['redis_per_poll_live']:.1f} Redis commands a poll with Celery's own; the poll worker used "
              f"{live['worker_cpu_ms_per_poll']:.1f} ms CPU a poll, {live['worker_cpu_percent']:.0f} % of the machine")
        for delay, started in live["failing_early_retries"]:
            print(f"a failing profile retried before its backoff ended: announced {delay:.0f} s, "
                  f"started at most {started:.1f} s after the failure")
    finally:
        bench.close()
    print(f"machine: {machine()}")
    figures = {
        "idle": {str(count): {name: round(value, 2) for name, value in row.items()} for count, row in idle.items()},
        "idle_ratio_100_vs_10": {name: round(value, 2) for name, value in ratio.items()},
        "poll_interval_s": POLL_INTERVAL,
        "failing_profiles": args.failing,
        "baseline": {name: round(value, 2) for name, value in live["baseline"].items()},
        "with_failing": {name: round(value, 2) for name, value in live["with_failing"].items()},
        **{name: round(value, 1) if isinstance(value, float) else value for name, value in live.items()
           if name not in ("baseline", "with_failing", "failing_early_retries")},
        "failing_early_retries": [[delay, round(started, 1)] for delay, started in live["failing_early_retries"]],
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
