"""The engine's pool: a connection idle for a while is pinged before use and replaced when it died
(the server restarted, an idle timeout closed it); one used moments ago is not pinged."""

from __future__ import annotations

import sqlalchemy as sa

from db import session as db_session
from settings import database_url_only


def test_a_dead_idle_connection_is_replaced_and_a_busy_one_is_not_pinged(database: str) -> None:
    engine = db_session.make_engine(database_url_only())
    statements: list[str] = []
    try:
        with engine.connect() as connection:
            victim = connection.scalar(sa.text("SELECT pg_backend_pid()"))
        sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        with engine.connect() as connection:  # just checked in: no ping, the same backend
            assert connection.scalar(sa.text("SELECT pg_backend_pid()")) == victim
        with db_session.get_engine().connect() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
        for record in engine.pool._pool.queue:  # type: ignore[attr-defined]  # the pool's idle records
            record.info["idle_since"] -= db_session.PING_IDLE_SECONDS + 1
        with engine.connect() as connection:  # idle long enough: pinged, found dead, replaced
            assert connection.scalar(sa.text("SELECT pg_backend_pid()")) != victim
        assert statements == ["SELECT pg_backend_pid()", "SELECT pg_backend_pid()"]  # pings are not statements
    finally:
        engine.dispose()
