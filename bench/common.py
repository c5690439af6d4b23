"""What the benchmarks share: the dev stack (`devstack`) with a fresh PostgreSQL database on this
machine's server, and helpers that feed it the way the product's intake does."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as `python bench/<name>.py`

from devstack import MACHINE_POSTGRES, Stack, WorkerPool  # noqa: E402

PROFILE_ID = "be0c0000-0001"
TOKEN = "bench-token"
KEY = "bench-key"
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", MACHINE_POSTGRES)


def cpu_times() -> tuple[float, float]:
    """The machine's busy and stolen CPU seconds so far, all cores (/proc/stat): busy is user, nice,
    system, irq and softirq; stolen is the time the hypervisor gave another guest while this one
    had work. Busy CPU per message does not move when a neighbour steals the cores."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / ticks, steal / ticks


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


class Bench(Stack):
    """Emulators, a private Redis and a migrated database `database`, with settings that take the
    limits out of the way; this process gets the same environment (it runs pipeline functions too)."""

    def __init__(self, database: str, **settings: str) -> None:
        super().__init__(Path(tempfile.mkdtemp(prefix=f"{database}-")))
        self.wappi, self.gemini = self.start_emulators(TOKEN, PROFILE_ID, KEY)
        self.redis = self.start_redis(durable=False)
        self.create_database(PG_ADMIN, database)
        self.env.update({
            "WAPPI_TIMEOUT": "5", "GEMINI_TIMEOUT_MS": "10000", "SEND_RATE_PER_MINUTE": "100000", "SEND_BURST": "1000",
            "SEND_CHAT_GAP_MIN": "0", "SEND_CHAT_GAP_MAX": "0", "BATCH_WINDOW": "0", "LOG_LEVEL": "WARNING",
            "MODEL_RATE_LIMIT": "100000/m", **settings,
        })
        os.environ.update(self.env)
        self.migrate()


def push(bench: Bench, phone: str, text: str) -> float:
    """A customer message made visible the way the webhook does it: stored and its chain started.
    Returns the moment it became visible (time.time())."""
    # deferred: project modules read the settings at import, after the bench set them
    from db.session import session_scope
    from pipeline.profiles import ensure_profile
    from pipeline.webhook import store_webhook
    from settings import get_settings
    from tasks.chains import start_conversations

    sent = bench.wappi.customer_message(PROFILE_ID, phone, text)
    item = {"wh_type": "incoming_message", "id": sent["message_id"], "chatId": sent["chat_id"],
            "from": sent["chat_id"], "type": "chat", "body": text, "time": sent["time"], "is_me": False,
            "senderName": "Bench"}
    visible = time.time()
    with session_scope() as session:
        to_answer = store_webhook(session, ensure_profile(session, get_settings()).id, [item])
    start_conversations(to_answer)
    return visible


def first_start(bench: Bench) -> None:
    """Record the (empty) history boundary, as the product's first poll would."""
    # deferred: project modules read the settings at import, after the bench set them
    from clients.wappi import build_client
    from db.session import session_scope
    from pipeline.poll import poll_profile
    from pipeline.profiles import ensure_profile
    from settings import get_settings

    settings = get_settings()
    with session_scope() as session:
        profile_id = ensure_profile(session, settings).id
    client = build_client(settings.wappi_base_url, settings.wappi_token, PROFILE_ID, timeout=10)
    poll_profile(session_scope, client, profile_id, lambda ids: None, now=time.time() - 5)


def worker_rss_mb(pool: WorkerPool, name: str) -> dict[str, float]:
    """Memory of one worker, in MB: `rss` of its largest process, and `pss` summed over its main
    process and pool children (PSS splits pages shared after fork fairly, so it is what the
    worker really costs; summing RSS would count the shared libraries twice)."""
    pids = [pool.processes[name].pid, *pool.children(name)]
    largest_rss = 0
    pss = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    largest_rss = max(largest_rss, int(line.split()[1]))
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return {"rss": largest_rss / 1024, "pss": pss / 1024}


@contextmanager
def floor_worker(bench: Bench, concurrency: int, calls: list[dict[str, Any]]) -> Iterator[Any]:
    """The Celery floor (bench/floor_app.py) running: a worker of its own on the bench's Redis that
    repeats `calls` (the model requests one pipeline message made) and replies through the Wappi
    emulator. Yields the `floor_app` module, whose tasks make the chain."""
    env = {**bench.env, "PYTHONPATH": str(Path(__file__).parent), "FLOOR_MODEL_CALLS": json.dumps(calls)}
    log = (bench.work_dir / "floor.log").open("ab")
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "floor_app", "worker", "-c", str(concurrency),
                               "-n", "floor@%h", "--without-mingle", "--without-gossip", "-l", "WARNING"],
                              cwd=Path(__file__).parent, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        sys.path.insert(0, str(Path(__file__).parent))
        os.environ["REDIS_URL"] = bench.redis.url
        # deferred: project modules read the settings at import, after the bench set them
        import floor_app

        time.sleep(3)  # the worker's start-up is not part of any figure
        yield floor_app
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def model_calls(bench: Bench) -> list[dict[str, Any]]:
    """The model calls the pipeline made so far (the Gemini emulator's log), as the floor repeats them."""
    return [{"model": call["model"], "body": call["body"]} for call in bench.gemini.requests_log()]
