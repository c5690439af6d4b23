"""The MCP server over Streamable HTTP, end to end: `python -m mcp_server --http` as its own process, the
SDK's HTTP client with bearer tokens from `mcp_tokens`, and the real workers sending what it writes to
the Wappi emulator.

HTTP 401 comes from the SDK's bearer middleware (no token, an unknown or revoked one); HTTP 403 for a
token without the `read` scope every session needs; a write tool called without `write`, or on a
profile the token was not granted, is refused as a tool error (the SDK checks scopes per endpoint,
not per tool).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
import sqlalchemy as sa
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from db.models import Profile
from db.session import get_engine, session_scope
from devstack import ROOT, WorkerPool, free_port, wait_for
from emulators.wappi import WappiEmulator
from mcp_server.tokens import create_token
from tests.support.db import a_contact, rows
from tests.support.env import PROFILE_ID
from tests.support.idle import wait_idle

pytestmark = pytest.mark.anyio

LEAD = "77050000001"
OTHER_PROFILE = "c0c0c0c0-0003"
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                         "clientInfo": {"name": "curl", "version": "1"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def mcp_url(workers: WorkerPool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The MCP server on a free port, with the write tools send_message, pause_bot and resume_bot."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    log_path: Path = tmp_path_factory.mktemp("mcp") / "mcp.log"
    environment = {**os.environ, "MCP_TOOLS": "read,+send_message,+pause_bot,+resume_bot", "MCP_PUBLIC_URL": url}
    with log_path.open("ab") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "mcp_server", "--http", "--port", str(port)], cwd=ROOT,
                                   env=environment, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"Uvicorn running on" in log_path.read_bytes() or process.poll() is not None,
                 timeout=60, message="the MCP server to start")
        if process.poll() is not None:
            raise RuntimeError(f"the MCP server exited: {log_path.read_text(errors='replace')[-3000:]}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _empty_mcp_tables() -> None:
    with get_engine().begin() as connection:
        connection.execute(sa.text("TRUNCATE mcp_audit, mcp_tokens RESTART IDENTITY"))


@pytest.fixture()
def tokens(clean: None) -> Iterator[None]:
    """No tokens or audit rows before, and none left after (the conftest's `clean` empties the rest)."""
    _empty_mcp_tables()
    yield
    _empty_mcp_tables()


def a_token(scopes: list[str], profiles: list[str] | None = None, *, revoked: bool = False) -> str:
    with session_scope() as session:
        row, token = create_token(session, name=f"test {','.join(scopes)}", scopes=scopes, profiles=profiles,
                                  expires_at=None, now=datetime.now(UTC))
        if revoked:
            row.revoked_at = datetime.now(UTC)
    return token


def another_profile() -> None:
    with session_scope() as session:
        session.add(Profile(profile_id=OTHER_PROFILE, name="other business"))


@asynccontextmanager
async def connected(url: str, token: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http, \
            Client(streamable_http_client(url, http_client=http)) as client:
        yield client


def data(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


def error(result: CallToolResult) -> str:
    assert result.is_error, result.structured_content
    return str(result.content[0].text)  # type: ignore[union-attr]  # a tool error is one text block


def send_arguments(**changes: Any) -> dict[str, Any]:
    return {"profile": PROFILE_ID, "chat": LEAD, "text": "Здравствуйте! Ваш заказ готов, заберёте сегодня?",
            "idempotency_key": "order-ready-1", **changes}


async def test_http_needs_a_valid_token_with_read_and_checks_host_and_origin(tokens: None, mcp_url: str) -> None:
    writer = a_token(["write"])
    reader = a_token(["read"])
    revoked = a_token(["admin"], revoked=True)
    async with httpx2.AsyncClient(timeout=10) as http:
        missing = await http.post(mcp_url, json=INITIALIZE, headers=MCP_HEADERS)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
        def bearer(token: str) -> dict[str, str]:
            return {**MCP_HEADERS, "Authorization": f"Bearer {token}"}

        for wrong in ("not-a-token", revoked):
            assert (await http.post(mcp_url, json=INITIALIZE, headers=bearer(wrong))).status_code == 401
        no_read = await http.post(mcp_url, json=INITIALIZE, headers=bearer(writer))
        assert no_read.status_code == 403
        assert no_read.json() == {"error": "insufficient_scope", "error_description": "Required scope: read"}
        # The SDK's DNS-rebinding protection is on, with MCP_ALLOWED_HOSTS and MCP_ALLOWED_ORIGINS.
        authorized = bearer(reader)
        foreign_host = await http.post(mcp_url, json=INITIALIZE, headers={**authorized, "Host": "evil.example:8770"})
        assert foreign_host.status_code == 421
        foreign_origin = await http.post(mcp_url, json=INITIALIZE,
                                         headers={**authorized, "Origin": "http://evil.example"})
        assert foreign_origin.status_code == 403 and "Invalid Origin" in foreign_origin.text
        accepted = await http.post(mcp_url, json=INITIALIZE, headers=authorized)
        assert accepted.status_code == 200, accepted.text


async def test_a_write_needs_the_write_scope_and_a_granted_profile(tokens: None, mcp_url: str,
                                                                  wappi: WappiEmulator) -> None:
    a_contact(LEAD)
    another_profile()
    async with connected(mcp_url, a_token(["read"])) as reader:
        assert {"send_message", "pause_bot"} <= {tool.name for tool in (await reader.list_tools()).tools}
        refused = error(await reader.call_tool("send_message", send_arguments(dry_run=False)))
        assert "send_message needs the 'write' scope" in refused
        assert [item["chat"] for item in data(await reader.call_tool("list_chats", {}))["chats"]] == [LEAD]
    async with connected(mcp_url, a_token(["read", "write"], [OTHER_PROFILE])) as fenced:
        profiles = data(await fenced.call_tool("list_profiles", {}))["profiles"]
        assert [item["profile"] for item in profiles] == [OTHER_PROFILE]
        assert data(await fenced.call_tool("list_chats", {}))["chats"] == []
        refused = error(await fenced.call_tool("send_message", send_arguments(dry_run=False)))
        assert f"no profile '{PROFILE_ID}' for this caller" in refused
    wait_idle()
    assert wappi.sent_messages(PROFILE_ID) == []
    assert rows("SELECT id FROM outbox") == []
    assert [tuple(row) for row in rows("SELECT tool, outcome, token_id IS NOT NULL FROM mcp_audit ORDER BY id")] == [
        ("send_message", "refused", True), ("send_message", "refused", True)]


async def test_a_dry_run_over_http_sends_nothing(tokens: None, mcp_url: str, wappi: WappiEmulator) -> None:
    a_contact(LEAD)
    async with connected(mcp_url, a_token(["read", "write"], [PROFILE_ID])) as client:
        preview = data(await client.call_tool("send_message", send_arguments()))
    assert preview["dry_run"] is True and preview["would_send"] is True and preview["applied"] is False
    assert preview["text"] == send_arguments()["text"]
    assert all(gate["passed"] for gate in preview["gates"])
    wait_idle()
    assert wappi.sent_messages(PROFILE_ID) == []
    assert rows("SELECT id FROM outbox") == []
    assert [tuple(row) for row in rows("SELECT outcome, dry_run FROM mcp_audit")] == [("dry_run", True)]


async def test_an_applied_send_reaches_wappi_exactly_once(tokens: None, mcp_url: str, wappi: WappiEmulator) -> None:
    a_contact(LEAD)
    async with connected(mcp_url, a_token(["read", "write"], [PROFILE_ID])) as client:
        sent = data(await client.call_tool("send_message", send_arguments(dry_run=False)))
        assert sent["applied"] is True and sent["duplicate"] is False and sent["outbox_id"] is not None
        wait_idle()
        again = data(await client.call_tool("send_message", send_arguments(dry_run=False)))
        assert again["duplicate"] is True and again["outbox_id"] == sent["outbox_id"]
        wait_idle()
        history = data(await client.call_tool("get_messages", {"profile": PROFILE_ID, "chat": LEAD}))
    delivered = wappi.sent_messages(PROFILE_ID)
    assert [item["body"] for item in delivered] == [send_arguments()["text"]]
    [outbox] = rows("SELECT id, kind, status FROM outbox")
    assert tuple(outbox) == (sent["outbox_id"], "mcp", "sent")
    assert history["messages"][-1]["author"] == "bot" and history["messages"][-1]["text"] == send_arguments()["text"]
    assert [tuple(row) for row in rows("SELECT outcome FROM mcp_audit ORDER BY id")] == [("applied",), ("duplicate",)]
