"""Who calls the MCP server: a bearer token's row (only its sha256 is stored) or the stdio settings,
as a `Caller` with its scopes and the profiles it may see. No MCP SDK here: the CLI imports it."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import McpToken
from settings import MCP_SCOPES, Settings

READ, WRITE, ADMIN = MCP_SCOPES
LAST_USED_EVERY = timedelta(minutes=1)  # `last_used_at` is written at most this often per token


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def effective_scopes(stored: Iterable[str]) -> frozenset[str]:
    """`admin` implies `read` and `write`; unknown names (none are written) count for nothing."""
    scopes = frozenset(scope for scope in stored if scope in MCP_SCOPES)
    return scopes | {READ, WRITE} if ADMIN in scopes else scopes


@dataclass(frozen=True)
class Caller:
    """The scopes a call runs with, and the profiles (`profiles.profile_id`) it may see: None is every one."""

    token_id: int | None  # None over stdio
    name: str
    scopes: frozenset[str]
    profiles: frozenset[str] | None

    @property
    def label(self) -> str:
        """What the outbox key and the audit call it: the token's id, never the token."""
        return "stdio" if self.token_id is None else str(self.token_id)

    @property
    def sees_every_profile(self) -> bool:
        return self.profiles is None

    def may_see(self, profile_id: str) -> bool:
        return self.profiles is None or profile_id in self.profiles

    def has(self, scope: str) -> bool:
        return scope in self.scopes


def caller_of(row: McpToken) -> Caller:
    scopes = effective_scopes(row.scopes or [])
    # An admin sees every profile, whatever the row lists.
    profiles = None if ADMIN in scopes or row.profiles is None else frozenset(str(item) for item in row.profiles)
    return Caller(token_id=row.id, name=row.name, scopes=scopes, profiles=profiles)


def stdio_caller(settings: Settings) -> Caller:
    """Over stdio no token is sent: the one local agent acts with MCP_STDIO_SCOPES on MCP_STDIO_PROFILES."""
    scopes = effective_scopes(settings.mcp_stdio_scopes)
    profiles = None if ADMIN in scopes or not settings.mcp_stdio_profiles else frozenset(settings.mcp_stdio_profiles)
    return Caller(token_id=None, name="stdio", scopes=scopes, profiles=profiles)


def token_state(row: McpToken, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def find_token(session: Session, token: str, now: datetime) -> McpToken | None:
    """The active row of this bearer token, its use noted; None for an unknown, revoked or expired one."""
    row = session.scalars(select(McpToken).where(McpToken.token_hash == hash_token(token))).first()
    if row is None or token_state(row, now) != "active":
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
        row.last_used_at = now
    return row


def create_token(session: Session, *, name: str, scopes: Iterable[str], profiles: Iterable[str] | None,
                 expires_at: datetime | None, now: datetime) -> tuple[McpToken, str]:
    """A new token's row and the token itself, which is never stored and cannot be shown again."""
    token = new_token()
    row = McpToken(name=name, token_hash=hash_token(token), scopes=list(scopes),
                   profiles=None if profiles is None else list(profiles), created_at=now, expires_at=expires_at)
    session.add(row)
    session.flush()
    return row, token
