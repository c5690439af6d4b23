"""One local run of the product, put together piece by piece and stopped in reverse order."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import Celery

from devstack.broker import PrivateRedis
from devstack.database import EmbeddedPostgres, create_database, migrate
from devstack.workers import WorkerPool

if TYPE_CHECKING:
    from emulators.gemini import GeminiEmulator
    from emulators.telegram import TelegramEmulator
    from emulators.wappi import WappiEmulator


class Stack:
    """Redis, a migrated database, the Wappi and Gemini emulators, workers and beat for one run.

    `env` is what every started process gets (a copy of the current environment by default); each
    piece started adds its URL to it, so start them before the workers. `close()` stops the
    workers, then the rest in the reverse order of their start. Logs go to `work_dir/logs`.
    """

    def __init__(self, work_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.work_dir = work_dir
        self.env: dict[str, str] = {**(os.environ if env is None else env)}
        self.workers = WorkerPool(work_dir / "logs", self.env)
        self._stops: list[Callable[[], None]] = []

    def start_redis(self, *, durable: bool) -> PrivateRedis:
        redis_server = PrivateRedis(self.work_dir / "redis", durable=durable).start()
        self._stops.append(redis_server.stop)
        self.env["REDIS_URL"] = redis_server.url
        return redis_server

    def start_embedded_postgres(self, data_dir: Path) -> EmbeddedPostgres:
        server = EmbeddedPostgres(data_dir).start()
        self._stops.append(server.stop)
        return server

    def create_database(self, server_url: str, name: str, *, fresh: bool = True) -> str:
        self.env["DATABASE_URL"] = create_database(server_url, name, fresh=fresh)
        return self.env["DATABASE_URL"]

    def migrate(self, *, knowledge_base: bool = True) -> None:
        migrate(self.env, knowledge_base=knowledge_base)

    def start_telegram(self, token: str) -> TelegramEmulator:
        """A Telegram Bot API emulator (one bot, `token`) in this process, and TELEGRAM_BASE_URL for it."""
        from emulators.telegram import TelegramEmulator  # deferred, as in start_emulators

        telegram = TelegramEmulator(token=token).start()
        self._stops.append(telegram.stop)
        self.env["TELEGRAM_BASE_URL"] = telegram.url
        return telegram

    def start_emulators(self, token: str, profile_id: str, api_key: str) -> tuple[WappiEmulator, GeminiEmulator]:
        """Both emulators in this process (threads), and the settings that point the product at them."""
        wappi, gemini = start_emulators(token, profile_id, api_key)
        self._stops += [wappi.stop, gemini.stop]
        self.env.update({"WAPPI_TOKEN": token, "WAPPI_PROFILE_ID": profile_id, "WAPPI_BASE_URL": wappi.url,
                         "GEMINI_API_KEY": api_key, "GEMINI_BASE_URL": gemini.url})
        return wappi, gemini

    @cached_property
    def app(self) -> Celery:
        """A Celery client on the stack's broker, for sending tasks the way beat or a stage would."""
        app = Celery(broker=self.env["REDIS_URL"], set_as_current=False)
        app.conf.broker_connection_retry_on_startup = True
        return app

    def send_task(self, name: str, queue: str, **options: Any) -> None:
        """Enqueue a task, waiting out a broker that is restarting."""
        for _ in range(50):
            try:
                self.app.send_task(name, queue=queue, **options)
                return
            except Exception:  # noqa: BLE001 - any connection error: wait and try again
                time.sleep(0.2)
        raise AssertionError(f"could not enqueue {name}")

    def close(self) -> None:
        self.workers.stop_all()
        while self._stops:
            self._stops.pop()()


def start_emulators(token: str, profile_id: str, api_key: str) -> tuple[WappiEmulator, GeminiEmulator]:
    """A Wappi emulator with one profile and a Gemini emulator, listening on free ports."""
    # deferred: a stack against the real services never loads the emulators
    from emulators.gemini import GeminiEmulator
    from emulators.wappi import WappiEmulator

    return (WappiEmulator(token=token, profile_ids=(profile_id,)).start(),
            GeminiEmulator(api_key=api_key).start())


_emulators: tuple[WappiEmulator, GeminiEmulator] | None = None
_telegram: TelegramEmulator | None = None


def shared_telegram(token: str) -> TelegramEmulator:
    """One Telegram Bot API emulator per process (one bot, `token`), started on first use."""
    # deferred: a stack against the real services never loads the emulators
    from emulators.telegram import TelegramEmulator

    global _telegram
    if _telegram is None:
        _telegram = TelegramEmulator(token=token).start()
    return _telegram


def shared_emulators(token: str, profile_id: str, api_key: str) -> tuple[WappiEmulator, GeminiEmulator]:
    """One pair per process, started on first use: the test session's, which every test module shares."""
    global _emulators
    if _emulators is None:
        _emulators = start_emulators(token, profile_id, api_key)
    return _emulators
