"""Poll cost with 1,000 and 10,000 chats and nothing new: it must grow with changed chats, not
with all chats. Times one real poll (the function the `poll` task runs) against the emulator.

    .venv/bin/python bench/poll_cost.py
"""

from __future__ import annotations

import json
import statistics
import time

from common import PROFILE_ID, Bench, machine


def poll_ms(bench: Bench, chats: int) -> tuple[float, int]:
    # deferred: project modules read the settings at import, after the bench set them
    from clients.wappi import build_client
    from db.session import dispose_engine, session_scope
    from pipeline.poll import poll_profile
    from pipeline.profiles import ensure_profile
    from settings import get_settings, reset_settings_cache

    reset_settings_cache()
    dispose_engine()
    bench.wappi.reset()
    bench.wappi.seed_chats(PROFILE_ID, chats)
    settings = get_settings()
    client = build_client(settings.wappi_base_url, settings.wappi_token, PROFILE_ID, timeout=30)
    with session_scope() as session:
        profile_id = ensure_profile(session, settings).id
    poll_profile(session_scope, client, profile_id, lambda ids: None)  # the first start
    bench.wappi.clear_requests()
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        result = poll_profile(session_scope, client, profile_id, lambda ids: None)
        timings.append((time.perf_counter() - started) * 1000)
        assert result.chats_changed == 0
    calls = len(bench.wappi.requests_log()) // 5
    return statistics.median(timings), calls


def main() -> None:
    figures = {}
    for chats in (1000, 10000):
        bench = Bench(f"assistant_bench_poll_{chats}")
        try:
            ms, calls = poll_ms(bench, chats)
        finally:
            bench.close()
        print(f"{chats:>6} chats, nothing new: {ms:7.1f} ms a poll, {calls} Wappi call(s) a poll")
        figures[f"chats_{chats}_ms"] = round(ms, 1)
    print(f"machine: {machine()}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
