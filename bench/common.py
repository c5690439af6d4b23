"""Shared set-up for the benchmarks: a fresh PostgreSQL database, emulators, a private Redis and
workers, all on this machine."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROFILE_ID = "be0c0000-0001"
TOKEN = "bench-token"
KEY = "bench-key"
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def fresh_database(name: str) -> str:
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


class Bench:
    """Emulators, a private Redis, a migrated database and the environment for workers."""

    def __init__(self, database: str, **settings: str) -> None:
        from emulators.gemini import GeminiEmulator
        from emulators.wappi import WappiEmulator
        from harness import PrivateRedis, WorkerPool

        self.work = Path(tempfile.mkdtemp(prefix=f"{database}-"))
        self.wappi = WappiEmulator(token=TOKEN, profile_ids=(PROFILE_ID,)).start()
        self.gemini = GeminiEmulator(api_key=KEY).start()
        self.redis = PrivateRedis(self.work / "redis", durable=False).start()
        self.database_url = fresh_database(database)
        self.env = {
            **os.environ, "WAPPI_TOKEN": TOKEN, "WAPPI_PROFILE_ID": PROFILE_ID, "WAPPI_BASE_URL": self.wappi.url,
            "WAPPI_TIMEOUT": "5", "GEMINI_API_KEY": KEY, "GEMINI_BASE_URL": self.gemini.url,
            "GEMINI_TIMEOUT_MS": "10000", "DATABASE_URL": self.database_url, "REDIS_URL": self.redis.url,
            "SEND_RATE_PER_MINUTE": "100000", "SEND_BURST": "1000", "SEND_CHAT_GAP_MIN": "0",
            "SEND_CHAT_GAP_MAX": "0", "BATCH_WINDOW": "0", "LOG_LEVEL": "WARNING", "MODEL_RATE_LIMIT": "100000/m",
            **settings,
        }
        os.environ.update(self.env)  # the benchmark process itself runs pipeline functions too
        for step in (["alembic", "upgrade", "head"], ["kb", "build"]):
            subprocess.run([sys.executable, "-m", *step], cwd=ROOT, env=self.env, check=True, capture_output=True)
        self.workers = WorkerPool(self.work, self.env)

    def close(self) -> None:
        self.workers.stop_all()
        self.redis.stop()
        self.wappi.stop()
        self.gemini.stop()

    def celery(self) -> Any:
        from celery import Celery

        return Celery(broker=self.redis.url, set_as_current=False)


def push(bench: Bench, phone: str, text: str) -> float:
    """A customer message made visible the way the webhook does it: stored and its chain started.
    Returns the moment it became visible (time.time())."""
    import time

    from db.session import session_scope
    from pipeline.intake import store_webhook
    from tasks.chains import start_conversations

    sent = bench.wappi.customer_message(PROFILE_ID, phone, text)
    item = {"wh_type": "incoming_message", "id": sent["message_id"], "chatId": sent["chat_id"],
            "from": sent["chat_id"], "type": "chat", "body": text, "time": sent["time"], "is_me": False,
            "senderName": "Bench"}
    visible = time.time()
    with session_scope() as session:
        from pipeline.intake import ensure_profile
        from settings import get_settings

        profile_id = ensure_profile(session, get_settings()).id
    start_conversations(store_webhook(session_scope, profile_id, [item]))
    return visible


def first_start(bench: Bench) -> None:
    """Record the (empty) history boundary, as the product's first poll would."""
    from clients.wappi import build_client
    from db.session import session_scope
    from pipeline.intake import ensure_profile, poll_profile
    from settings import get_settings

    settings = get_settings()
    with session_scope() as session:
        profile_id = ensure_profile(session, settings).id
    client = build_client(settings.wappi_base_url, settings.wappi_token, PROFILE_ID, timeout=10)
    poll_profile(session_scope, client, profile_id, lambda ids: None, now=__import__("time").time() - 5)


def worker_rss_mb(pool: Any, name: str) -> dict[str, float]:
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
