"""Engine and sessions (PostgreSQL), one engine per process, plus "insert, ignore conflicts"."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from settings import database_url_only

# What a pipeline function that runs several transactions (`run_*`) is given: `session_scope`, or a
# test's own. Every other pipeline function takes one `Session`.
SessionFactory = Callable[[], AbstractContextManager[Session]]

_engine: Engine | None = None
_engine_pid: int | None = None
_sessionmaker: sessionmaker[Session] | None = None


def make_engine(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


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


def insert_ignore(session: Session, model: type[DeclarativeBase], values: dict[str, Any],
                  conflict_columns: Sequence[str]) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id: the new row's id, or None if it existed."""
    table: Any = model.__table__  # declarative models always have a Table
    statement = postgresql.insert(table).values(**values).on_conflict_do_nothing(
        index_elements=list(conflict_columns)).returning(table.c.id)
    row = session.execute(statement).first()
    return None if row is None else int(row[0])
