"""The follow-up sweep at scale: 100,000 contacts of which 10,000 are due. Measures one sweep that
claims them and enqueues their batch tasks, then (in this process) the batches' fan-out into one
task per touch, and an idle sweep (nothing due). Targets: sweep under 2 s, idle sweep under 20 ms.

    .venv/bin/python bench/followup_sweep.py
"""

from __future__ import annotations

import base64
import json
import statistics
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from common import Bench, machine

CONTACTS = 100_000
DUE = 10_000


def main() -> None:
    # deferred: project modules read the settings at import, after the bench set them

    from db.session import get_engine

    bench = Bench("assistant_bench_sweep")
    try:
        now = datetime.now(UTC)
        engine = get_engine()
        with engine.begin() as connection:
            connection.execute(sa.text("INSERT INTO profiles (provider, profile_id, name, active, created_at) "
                                       "VALUES ('wappi', 'be0c0000-0001', 'bench', true, now())"))
            # Generated in SQL: 100,000 leads; every contact has a chain, 10,000 of them due now.
            connection.execute(sa.text(
                "INSERT INTO contacts (profile_id, phone, chat_id, first_name, full_name, push_name, business_name, "
                "is_client, opted_out, awaiting_follow_up, created_at, updated_at, last_message_at, last_author) "
                "SELECT 1, (77000000000 + n)::text, (77000000000 + n)::text || '@c.us', '', '', '', '', true, false, "
                "false, now(), now(), now() - interval '2 days', 'bot' FROM generate_series(1, :count) AS n"),
                {"count": CONTACTS})
            connection.execute(sa.text(
                "INSERT INTO follow_ups (contact_id, status, touch_number, anchor_at, next_touch_at, created_at, "
                "updated_at) SELECT id, 'active', 0, now() - interval '2 days', "
                "CASE WHEN id <= :due THEN now() - interval '1 minute' ELSE now() + interval '3 days' END, "
                "now(), now() FROM contacts"), {"due": DUE})
            connection.execute(sa.text("ANALYZE"))
        # deferred: project modules read the settings at import, after the bench set them
        from db.session import session_scope
        from pipeline.followup import sweep_once as sweep_in
        from settings import get_settings

        def sweep_once(now: datetime) -> list[tuple[int, int]]:
            with session_scope() as session:
                return sweep_in(session, now, get_settings())

        from tasks.followup import enqueue_touches, follow_up_batch

        app = bench.app
        redis = app.connection().default_channel.client
        started = time.perf_counter()
        claimed = sweep_once(now)
        claim_seconds = time.perf_counter() - started
        enqueue_touches(claimed)  # what the sweep task does after the claim committed
        sweep_seconds = time.perf_counter() - started
        assert len(claimed) == DUE, len(claimed)
        batches = [json.loads(raw) for raw in redis.lrange("followup", 0, -1)]
        redis.delete("followup")
        # What the worker does next: each batch task fans out into one `follow_up` task per touch.
        # Run here, one batch after the other, to show that cost too.
        fanned = time.perf_counter()
        for batch in reversed(batches):  # LPUSH: the oldest is last
            assert batch["headers"]["task"] == "pipeline.follow_up_batch", batch["headers"]["task"]
            args, _kwargs, _embed = json.loads(base64.b64decode(batch["body"]))
            follow_up_batch.run(*args)
        fanout_seconds = time.perf_counter() - fanned
        idle = []
        for _ in range(20):
            tick = time.perf_counter()
            assert sweep_once(now) == []
            idle.append((time.perf_counter() - tick) * 1000)
        queued = redis.llen("followup")
        assert queued == DUE, queued
        print(f"one sweep claimed {len(claimed)} of {CONTACTS} and enqueued them in {len(batches)} batch tasks "
              f"in {sweep_seconds:.2f} s (claim {claim_seconds:.2f} s); the batches fanned out into {queued} "
              f"touch tasks in {fanout_seconds:.2f} s; idle sweep median {statistics.median(idle):.1f} ms")
    finally:
        bench.close()
    print(f"machine: {machine()}")
    print(json.dumps({"contacts": CONTACTS, "due": DUE, "sweep_seconds": round(sweep_seconds, 2),
                      "claim_seconds": round(claim_seconds, 2), "batch_tasks": len(batches),
                      "fanout_seconds": round(fanout_seconds, 2), "idle_sweep_ms": round(statistics.median(idle), 1)}))


if __name__ == "__main__":
    main()
