"""PostgreSQL for a local run: the machine's server or an embedded one (the `pgserver` package),
a database created on it, migrated (`alembic upgrade head`) and given the knowledge base (`kb build`)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from devstack.processes import ROOT

# The machine's server, as scripts/services.sh starts it (peer `postgres` user, no password).
MACHINE_POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def database_url(server_url: str, name: str) -> str:
    """The URL of database `name` on the server that `server_url` points at."""
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def create_database(server_url: str, name: str, *, fresh: bool = True) -> str:
    """Create database `name` (dropped first when `fresh`) and return its URL."""
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            if fresh:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            exists = connection.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                        {"name": name}).first()
            if not exists:
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return database_url(server_url, name)


def migrate(env: Mapping[str, str], *, knowledge_base: bool = True) -> None:
    """`alembic upgrade head`, then `kb build`, against env's DATABASE_URL; the tool's output on failure."""
    steps = [["alembic", "upgrade", "head"], *([["kb", "build"]] if knowledge_base else [])]
    for step in steps:
        done = subprocess.run([sys.executable, "-m", *step], cwd=ROOT, env=dict(env), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(step)} failed:\n{(done.stdout + done.stderr)[-3000:]}")


class EmbeddedPostgres:
    """A private PostgreSQL server from the `pgserver` package (it ships the binaries), listening on a
    Unix socket only. Its data stays in `data_dir` across runs, so only the first start runs initdb.
    As root, pgserver runs the server as a system user `pgserver` it creates (PostgreSQL refuses root)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> EmbeddedPostgres:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (as root, in CI) and falls back to /tmp.
            warnings.simplefilter("ignore")
            import pgserver  # deferred: a dev extra, loaded only by the embedded-server demo

            self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
        return self

    @property
    def server_url(self) -> str:
        """The URL of the server's `postgres` database, for creating others."""
        url = make_url(self._server.get_uri()).set(drivername="postgresql+psycopg2", password=None)
        return url.render_as_string(hide_password=False)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # stops the server unless another process still holds it
            self._server = None
