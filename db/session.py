"""Engine and sessions (PostgreSQL), one engine per process, plus "insert, ignore conflicts"."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy import Engine, Executable, create_engine, event
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from settings import database_url_only

# What a pipeline function that runs several transactions (`run_*`) is given: `session_scope`, or a
# test's own. Every other pipeline function takes one `Session`.
SessionFactory = Callable[[], AbstractContextManager[Session]]

_engine: Engine | None = None
_engine_pid: int | None = None
_sessionmaker: sessionmaker[Session] | None = None


# A pooled connection idle for longer than this is pinged before use. SQLAlchemy's `pool_pre_ping`
# pings at every checkout: one more round trip per transaction (a stage runs three to five), 12 % of
# a worker's time under load (docs/benchmarks.md). A connection used moments ago is as likely to
# be dead as one mid-transaction, which the retry policy handles (OperationalError is transient).
PING_IDLE_SECONDS = 2.0


def make_engine(url: str) -> Engine:
    engine = create_engine(url, pool_size=5, max_overflow=5)

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _idle(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < PING_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(str(exc)) from exc  # the pool replaces the connection and checks out again

    return engine


def get_engine() -> Engine:
    """The process's engine; a forked child builds its own instead of sharing sockets."""
    global _engine, _engine_pid, _sessionmaker
    if _engine is None or _engine_pid != os.getpid():
        if _engine is not None:
            _engine.dispose(close=False)  # the parent's connections stay the parent's
        _engine = make_engine(database_url_only())
        _engine_pid = os.getpid()
        _sessionmaker = sessionmaker(_engine, expire_on_commit=False)
    return _engine


def dispose_engine() -> None:
    global _engine, _engine_pid, _sessionmaker
    if _engine is not None:
        _engine.dispose()
    _engine = _engine_pid = _sessionmaker = None


@contextmanager
def transaction(session: Session) -> Iterator[Session]:
    """The session as one unit of work: commit on success, roll back on any exception, then close."""
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def session_scope() -> AbstractContextManager[Session]:
    """One transaction on the process's engine."""
    get_engine()
    assert _sessionmaker is not None
    return transaction(_sessionmaker())


def execute_core(session: Session, statement: Executable, params: Mapping[str, Any] | None = None) -> Any:
    """Run a statement on the session's connection, in its transaction, without the ORM's per-statement
    work (its compile state, the evaluation that moves the changed rows' objects in the session, the
    result's entity loading): about 110 µs of CPU against 180–280 µs through `session.execute`
    (docs/benchmarks.md). For UPDATE/INSERT/DELETE whose caller does not read the changed rows'
    objects from this session afterwards, and for selects whose caller takes plain rows. Pending
    changes are flushed first, as `session.execute` would (unless autoflush is off)."""
    if session.autoflush:
        session.flush()
    return session.connection().execute(statement, params)


def insert_ignore(session: Session, model: type[DeclarativeBase], values: dict[str, Any],
                  conflict_columns: Sequence[str]) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id: the new row's id, or None if it existed."""
    table: Any = model.__table__  # declarative models always have a Table
    key = (table.name, tuple(conflict_columns))
    statement = _insert_ignore.get(key)
    if statement is None:  # built once per table: building costs about as much Python as sending it
        statement = _insert_ignore[key] = postgresql.insert(table).on_conflict_do_nothing(
            index_elements=list(conflict_columns)).returning(table.c.id)
    row = execute_core(session, statement, values).first()
    return None if row is None else int(row[0])


_insert_ignore: dict[tuple[str, tuple[str, ...]], Any] = {}
