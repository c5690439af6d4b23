"""`celery -A tasks mcp-token create|list|revoke`: the bearer tokens of the MCP server's HTTP endpoint.

Registered through the `celery.commands` entry point (see pyproject.toml). A token is printed once, when
it is created; only its sha256 is stored, so a lost token is revoked and replaced, never shown again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click
from sqlalchemy import select

from cli.dlq import _app
from cli.profiles import _sessions
from db.models import McpToken, Profile
from mcp_server.tokens import ADMIN, READ, create_token, token_state
from settings import MCP_SCOPES


def _names(value: str) -> list[str]:
    return list(dict.fromkeys(item.strip() for item in value.split(",") if item.strip()))


@click.group("mcp-token")
@click.pass_context
def mcp_token(ctx: click.Context, **_preload: Any) -> None:
    """Bearer tokens of the MCP server (python -m mcp_server --http)."""
    _app(ctx)


@mcp_token.command("create")
@click.option("--name", required=True, help="who or what uses it, e.g. the agent's name")
@click.option("--scopes", default=READ, show_default=True,
              help="comma-separated: read (the read tools), write (the write tools MCP_TOOLS exposes), "
                   "admin (both, on every profile)")
@click.option("--profiles", "profile_ids", help="comma-separated profile ids it may see; omitted: every profile")
@click.option("--expires-days", type=click.IntRange(min=1), help="valid this many days; omitted: until revoked")
@click.pass_context
def create(ctx: click.Context, name: str, scopes: str, profile_ids: str | None, expires_days: int | None) -> None:
    """Create a token and print it, once."""
    _app(ctx)
    name = name.strip()
    if not name:
        raise click.BadParameter("must not be empty", param_hint="--name")
    wanted = _names(scopes)
    unknown = [scope for scope in wanted if scope not in MCP_SCOPES]
    if unknown or not wanted:
        raise click.BadParameter(f"scopes are {', '.join(MCP_SCOPES)}" + (f"; unknown: {', '.join(unknown)}"
                                                                          if unknown else ""), param_hint="--scopes")
    profiles = None if profile_ids is None else _names(profile_ids)
    if profiles is not None and ADMIN in wanted:
        raise click.UsageError("an admin token sees every profile: drop --profiles, or give read,write instead")
    if profiles is not None and not profiles:
        raise click.BadParameter("names no profile", param_hint="--profiles")
    now = datetime.now(UTC)
    expires_at = now + timedelta(days=expires_days) if expires_days else None
    with _sessions(ctx)() as session:
        if profiles is not None:
            known = set(session.scalars(select(Profile.profile_id).where(Profile.profile_id.in_(profiles))))
            missing = [profile for profile in profiles if profile not in known]
            if missing:
                raise click.ClickException(f"no profile {', '.join(missing)} (see `celery -A tasks profiles list`)")
        row, token = create_token(session, name=name, scopes=wanted, profiles=profiles, expires_at=expires_at,
                                  now=now)
        token_id = row.id
    click.echo(f"created MCP token {token_id} ({name}): scopes {','.join(wanted)}; profiles "
               f"{','.join(profiles) if profiles is not None else 'all'}; "
               + (f"expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "no expiry"))
    click.echo("the token, shown this once (only its hash is stored): send it as `Authorization: Bearer <token>`")
    click.echo(token)
    if READ not in wanted and ADMIN not in wanted:
        click.echo("note: the HTTP endpoint requires read of every token; without it this one is refused "
                   "(403 insufficient_scope)", err=True)


@mcp_token.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """Every token, without its secret: scopes, profiles, expiry, last use, state."""
    _app(ctx)
    now = datetime.now(UTC)
    with _sessions(ctx)() as session:
        rows = list(session.scalars(select(McpToken).order_by(McpToken.id)))
        if not rows:
            click.echo("no MCP tokens (create one with `celery -A tasks mcp-token create --name N`)")
            return
        click.echo(f"{'ID':>4}  {'NAME':20}  {'SCOPES':16}  {'PROFILES':28}  {'CREATED (UTC)':16}  "
                   f"{'EXPIRES (UTC)':16}  {'LAST USED (UTC)':16}  STATE")
        for row in rows:
            profiles = "all" if row.profiles is None else ",".join(row.profiles)
            click.echo(f"{row.id:>4}  {row.name[:20]:20}  {','.join(row.scopes)[:16]:16}  {profiles[:28]:28}  "
                       f"{row.created_at:%Y-%m-%d %H:%M}  {_moment(row.expires_at):16}  "
                       f"{_moment(row.last_used_at):16}  {token_state(row, now)}")


def _moment(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value is not None else "-"


@mcp_token.command("revoke")
@click.argument("token_id", type=int)
@click.pass_context
def revoke(ctx: click.Context, token_id: int) -> None:
    """Refuse this token from now on (its audit rows stay)."""
    _app(ctx)
    with _sessions(ctx)() as session:
        row = session.get(McpToken, token_id, with_for_update=True)
        if row is None:
            raise click.ClickException(f"no MCP token {token_id} (see `celery -A tasks mcp-token list`)")
        if row.revoked_at is not None:
            click.echo(f"MCP token {token_id} ({row.name}) was revoked already, at {row.revoked_at:%Y-%m-%d %H:%M} UTC")
            return
        row.revoked_at = datetime.now(UTC)
        click.echo(f"revoked MCP token {token_id} ({row.name}): the server refuses it from its next request")
