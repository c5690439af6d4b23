"""The unit tier: pipeline and domain functions against the real PostgreSQL and Redis, no workers.

Each test runs inside one transaction that is rolled back at its end: `session` is a Session on
it, and `sessions` a factory for the `run_*` functions (each "transaction" they open is a
savepoint of the test's). Time is injected (`now` arguments), so nothing here sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from clients.wappi import WappiClient
from db.session import SessionFactory, get_engine, transaction
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from pipeline import profiles
from tests.support.emulators import reset_emulators
from tests.support.env import PRIVATE_PROFILE, PRIVATE_TOKEN


@pytest.fixture()
def connection(database: str) -> Iterator[Connection]:
    with get_engine().connect() as connection:
        transaction = connection.begin()
        try:
            yield connection
        finally:
            transaction.rollback()


def _session_on(connection: Connection) -> Session:
    # commit() releases a savepoint; the test's transaction is rolled back at its end.
    return Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)


@pytest.fixture()
def session(connection: Connection) -> Iterator[Session]:
    session = _session_on(connection)
    try:
        yield session
    finally:
        session.close()


@pytest.fixture()
def sessions(connection: Connection) -> SessionFactory:
    return lambda: transaction(_session_on(connection))


@pytest.fixture(autouse=True)
def fresh_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """No Redis keys of ours, fresh emulators, and WHITELIST applied again (its cache is per process,
    the rows it wrote were rolled back)."""
    if "database" in request.fixturenames or "connection" in request.fixturenames:
        redis_client: Any = request.getfixturevalue("redis_client")
        for redis_key in redis_client.scan_iter("assistant:*"):
            redis_client.delete(redis_key)
        wappi: WappiEmulator = request.getfixturevalue("wappi")
        gemini: GeminiEmulator = request.getfixturevalue("gemini")
        reset_emulators(wappi, gemini)
        profiles._whitelist_applied.clear()
    yield


@pytest.fixture()
def private_wappi() -> Iterator[WappiEmulator]:
    with WappiEmulator(token=PRIVATE_TOKEN, profile_ids=(PRIVATE_PROFILE,)) as emulator:
        yield emulator


@pytest.fixture()
def wappi_client(private_wappi: WappiEmulator) -> WappiClient:
    return WappiClient(requests.Session(), private_wappi.url, PRIVATE_TOKEN, PRIVATE_PROFILE, timeout=2.0)
