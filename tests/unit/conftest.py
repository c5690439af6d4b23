"""The unit tier: pipeline and domain functions against the real PostgreSQL and Redis, no workers.

Each test runs inside one transaction that is rolled back at its end: `session` is a Session on
it, and `sessions` a factory for the `run_*` functions (each "transaction" they open is a
savepoint of the test's). Time is injected (`now` arguments), so nothing here sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from db.session import SessionFactory, get_engine
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from pipeline import profiles
from tests.support.emulators import reset_emulators


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
    @contextmanager
    def scope() -> Iterator[Session]:
        session = _session_on(connection)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    return scope


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
