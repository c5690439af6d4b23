"""Bearer tokens over HTTP: the SDK's bearer middleware asks `DatabaseTokenVerifier`, which looks the
token's sha256 up in `mcp_tokens` (unknown, revoked or expired: None, so HTTP 401), and hands on the
token's scopes (admin implies read and write) and the profiles it may see as an `AccessToken`.

Inside a tool, `caller()` turns the request's `AccessToken` back into a `Caller`; over stdio, where no
token is sent, the caller is the one the settings describe (MCP_STDIO_SCOPES, MCP_STDIO_PROFILES).
"""

from __future__ import annotations

from datetime import UTC, datetime

import anyio.to_thread
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken, TokenVerifier

from db.session import SessionFactory
from mcp_server.tokens import Caller, caller_of, find_token


class DatabaseTokenVerifier(TokenVerifier):
    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions

    def _lookup(self, token: str) -> AccessToken | None:
        now = datetime.now(UTC)
        with self.sessions() as session:
            row = find_token(session, token, now)
            if row is None:
                return None
            caller = caller_of(row)
            expires_at = int(row.expires_at.timestamp()) if row.expires_at is not None else None
        return AccessToken(
            token=token, client_id=f"mcp-token-{caller.token_id}", scopes=sorted(caller.scopes),
            expires_at=expires_at,
            claims={"token_id": caller.token_id, "name": caller.name,
                    "profiles": None if caller.profiles is None else sorted(caller.profiles)})

    async def verify_token(self, token: str) -> AccessToken | None:
        # The database driver blocks: off the event loop.
        return await anyio.to_thread.run_sync(self._lookup, token)


def caller_from(access: AccessToken) -> Caller:
    claims = access.claims or {}
    profiles = claims.get("profiles")
    return Caller(token_id=int(claims["token_id"]), name=str(claims.get("name", "")), scopes=frozenset(access.scopes),
                  profiles=None if profiles is None else frozenset(profiles))


class NotAuthenticated(Exception):
    """A tool ran over HTTP without a verified token (the bearer middleware should have refused it)."""


def caller(stdio: Caller | None) -> Caller:
    """Who calls this tool: the request's token, or over stdio (`stdio` given) the settings' caller."""
    access = get_access_token()
    if access is not None:
        return caller_from(access)
    if stdio is None:
        raise NotAuthenticated("no bearer token on this request")
    return stdio
