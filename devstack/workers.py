"""The product's own processes as subprocesses: `celery -A tasks worker`, beat and the web app,
one per name, each logging to `<log_dir>/<name>.log`, killed or restarted at will."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from devstack.processes import ROOT, wait_for


class WorkerPool:
    """Named children started with `env` (the current environment when None)."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.env = env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

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

    def start(self, name: str, queues: str | Sequence[str] | None = None, concurrency: int = 2,
              pool: str = "prefork", extra: list[str] | None = None) -> None:
        """A worker on `queues` (a comma-separated string or names); None means every queue of
        celeryconfig.QUEUES: without -Q a worker consumes all of `task_queues`."""
        if queues is None:
            selection = []
        else:
            selection = ["-Q", queues if isinstance(queues, str) else ",".join(queues)]
        self._spawn(name, ["celery", "-A", "tasks", "worker", *selection, "-c", str(concurrency), "-P", pool,
                           "-n", f"{name}@%h", "--without-mingle", "--without-gossip", "-l", "INFO",
                           *(extra or [])], ready="ready.")

    def start_beat(self, name: str = "beat") -> None:
        self._spawn(name, ["celery", "-A", "tasks", "beat", "-S", "redbeat.RedBeatScheduler", "-l", "INFO"],
                    ready="beat: Starting")

    def start_web(self, port: int, name: str = "web") -> str:
        """The web app (`/health`, `/stats`, the webhook) on 127.0.0.1:port; returns its URL."""
        self._spawn(name, ["web", "--port", str(port)], ready="web listening on")
        return f"http://127.0.0.1:{port}"

    def wait_for_log(self, name: str, needle: str, timeout: float = 60.0) -> None:
        """Wait until `needle` is in the child's log; RuntimeError with the log's tail if it exits first."""
        process = self.processes[name]
        wait_for(lambda: needle in self.log(name) or process.poll() is not None,
                 timeout=timeout, message=f"{needle!r} in the log of {name}")
        if needle not in self.log(name):
            raise RuntimeError(f"{name} exited: {self.log(name)[-3000:]}")

    def _spawn(self, name: str, module_command: list[str], ready: str) -> None:
        log_path = self.log_path(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = log_path.stat().st_size if log_path.exists() else 0
        log_file = log_path.open("ab")
        process = subprocess.Popen([sys.executable, "-m", *module_command], cwd=ROOT,
                                   env=self.env or {**os.environ}, stdout=log_file, stderr=subprocess.STDOUT)
        self.processes[name] = process
        wait_for(lambda: ready.encode() in log_path.read_bytes()[offset:] or process.poll() is not None,
                 timeout=60, message=f"{name} to start")
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {log_path.read_text(errors='replace')[-3000:]}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        process = self.processes.pop(name)
        process.send_signal(sig)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def stop_all(self) -> None:
        for name in reversed(list(self.processes)):
            self.stop(name)
