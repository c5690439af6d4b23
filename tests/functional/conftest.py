"""The functional tier: one end-to-end test per behaviour a user sees, through real `celery -A tasks
worker` processes, the emulators, PostgreSQL and Redis. Each test starts from empty tables."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack import WorkerPool, free_port
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from tests.support.db import empty_tables
from tests.support.emulators import reset_emulators
from tests.support.env import WEBHOOK_SECRET
from tests.support.stack import Stack


@pytest.fixture(scope="session")
def workers(wappi: WappiEmulator, gemini: GeminiEmulator, database: str, redis_client: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerPool]:
    pool = WorkerPool(tmp_path_factory.mktemp("workers"))
    pool.start("main", concurrency=3)  # every queue
    yield pool
    pool.stop_all()


@pytest.fixture()
def clean(wappi: WappiEmulator, gemini: GeminiEmulator, database: str, redis_client: Any) -> Iterator[None]:
    """Empty tables, a fresh emulator state and no leftover Redis keys of ours; the tables are
    emptied again afterwards, so no committed row outlives the test (the unit tier counts rows)."""
    empty_tables()
    for redis_key in redis_client.scan_iter("assistant:*"):
        redis_client.delete(redis_key)
    reset_emulators(wappi, gemini)
    yield
    empty_tables()


@pytest.fixture(scope="module")
def web(workers: WorkerPool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The web app (/health, /stats, the dashboard, the webhook) on a free port, with WEBHOOK_SECRET set
    (and DASHBOARD_USERS, as every process of the tests: log in as env.DASHBOARD_USER)."""
    processes = WorkerPool(tmp_path_factory.mktemp("web"), {**os.environ, "WEBHOOK_SECRET": WEBHOOK_SECRET})
    yield processes.start_web(free_port())
    processes.stop_all()


@pytest.fixture()
def stack(clean: None, tmp_path: Path) -> Iterator[Stack]:
    """A private stack (its own Redis, which a test may restart, and its own workers)."""
    stack = Stack(tmp_path)
    try:
        yield stack
    finally:
        stack.close()
