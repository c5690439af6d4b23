"""`celery -A tasks mcp-token create|list|revoke`: a token is printed once and stored only as its sha256;
the list shows no secret; a revoked token is refused by the server's verifier.

In-process with click's CliRunner on the test's rolled-back session (as tests/unit/test_profiles.py
does); one test runs the real `celery` command to prove the entry point is registered.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session

from cli.mcp_tokens import mcp_token
from db.models import McpToken, Profile
from db.session import SessionFactory
from mcp_server.tokens import find_token
from tests.support.cli import celery
from tests.support.env import PROFILE_ID


def invoke(sessions: SessionFactory, *args: str) -> Result:
    # `app` stands in for the Celery app that `celery -A tasks` puts on the context.
    return CliRunner().invoke(mcp_token, list(args), obj=SimpleNamespace(app=object(), sessions=sessions))


def printed_token(result: Result) -> str:
    lines = result.stdout.splitlines()
    return lines[lines.index(next(line for line in lines if "shown this once" in line)) + 1]


@pytest.fixture()
def profile(session: Session) -> Profile:
    row = Profile(profile_id=PROFILE_ID, name="test")
    session.add(row)
    session.flush()
    return row


def test_create_prints_the_token_once_and_stores_only_its_hash(session: Session, sessions: SessionFactory,
                                                               profile: Profile) -> None:
    result = invoke(sessions, "create", "--name", "sales agent", "--scopes", "read,write", "--profiles", PROFILE_ID,
                    "--expires-days", "30")
    assert result.exit_code == 0, result.output
    token = printed_token(result)
    assert len(token) >= 40
    row = session.scalars(sa.select(McpToken)).one()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert (row.name, row.scopes, row.profiles) == ("sales agent", ["read", "write"], [PROFILE_ID])
    assert row.expires_at is not None and timedelta(days=29) < row.expires_at - datetime.now(UTC) <= timedelta(days=30)
    assert token not in repr([getattr(row, column.key) for column in sa.inspect(McpToken).columns])
    assert find_token(session, token, datetime.now(UTC)) is not None

    listed = invoke(sessions, "list")
    assert listed.exit_code == 0, listed.output
    assert "sales agent" in listed.output and "read,write" in listed.output and PROFILE_ID in listed.output
    assert token not in listed.output and row.token_hash not in listed.output
    assert listed.output.rstrip().endswith("active")


def test_revoke_refuses_the_token_from_then_on(session: Session, sessions: SessionFactory) -> None:
    token = printed_token(invoke(sessions, "create", "--name", "temp"))
    row = session.scalars(sa.select(McpToken)).one()
    assert row.scopes == ["read"] and row.profiles is None  # the defaults: read, every profile
    revoked = invoke(sessions, "revoke", str(row.id))
    assert revoked.exit_code == 0 and f"revoked MCP token {row.id} (temp)" in revoked.output
    with sessions() as fresh:  # the test's own session still holds the row as it read it
        assert find_token(fresh, token, datetime.now(UTC)) is None
    assert "revoked already" in invoke(sessions, "revoke", str(row.id)).output
    assert invoke(sessions, "list").output.rstrip().endswith("revoked")
    missing = invoke(sessions, "revoke", "9999")
    assert missing.exit_code != 0 and "no MCP token 9999" in missing.output


@pytest.mark.parametrize(("args", "message"), [
    (["--scopes", "read,delete"], "unknown: delete"),
    (["--scopes", "admin", "--profiles", PROFILE_ID], "an admin token sees every profile"),
    (["--profiles", "ffffffff-ffff"], "no profile ffffffff-ffff"),
    (["--expires-days", "0"], "--expires-days"),
])
def test_create_refuses_what_would_be_a_wrong_token(session: Session, sessions: SessionFactory, profile: Profile,
                                                   args: list[str], message: str) -> None:
    result = invoke(sessions, "create", "--name", "x", *args)
    assert result.exit_code != 0 and message in result.output
    assert session.scalars(sa.select(McpToken)).all() == []


def test_a_token_without_read_is_created_with_a_warning(sessions: SessionFactory) -> None:
    result = invoke(sessions, "create", "--name", "writer", "--scopes", "write")
    assert result.exit_code == 0
    assert "403 insufficient_scope" in result.stderr


def test_the_celery_command_is_registered(database: str) -> None:
    result = celery("mcp-token", "list")
    assert result.returncode == 0, result.stderr
    assert "MCP token" in result.stdout or "NAME" in result.stdout
