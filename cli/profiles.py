"""`celery -A tasks profiles ...`: add, list, show, enable, disable, set and check messaging accounts.

Registered through the `celery.commands` entry point (see pyproject.toml). Tokens are read from an
environment variable or stdin, never from the command line (it lands in shell history and `ps`), and
stored Fernet-encrypted (pipeline/credentials.py); nothing here prints one.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from typing import Any

import click
import requests
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cli.dlq import _app
from clients import telegram
from clients.telegram import TelegramError
from clients.wappi import WappiClient, WappiError, WappiTelegramClient
from db.models import Profile
from db.session import SessionFactory, session_scope
from domain.states import Provider
from infra.logging import mask_text
from pipeline.credentials import CredentialsError, encrypt, profile_token
from pipeline.profile_settings import PROFILE_KEYS, effective_settings, parse_overrides
from pipeline.profiles import ensure_profile
from settings import PROFILE_ID_RE, Settings, SettingsError, get_settings, setting_named

CHECK_TIMEOUT = 15.0  # seconds; `check` is an operator waiting at a prompt


def _sessions(ctx: click.Context) -> SessionFactory:
    # Tests hand in a factory on their rolled-back transaction; the operator gets the real one.
    return getattr(ctx.obj, "sessions", None) or session_scope


def _settings(ctx: click.Context) -> Settings:
    return getattr(ctx.obj, "settings", None) or get_settings()


def _find(session: Session, ident: str) -> Profile:
    """A profile by the provider's profile id or by our numeric id."""
    conditions = [Profile.profile_id == ident]
    if ident.isdigit():
        conditions.append(Profile.id == int(ident))
    profile = session.scalars(select(Profile).where(or_(*conditions)).order_by(Profile.profile_id != ident)).first()
    if profile is None:
        raise click.ClickException(f"no profile {ident!r} (see `celery -A tasks profiles list`)")
    return profile


def _read_token(token_env: str | None, token_stdin: bool) -> str | None:
    if token_env and token_stdin:
        raise click.UsageError("give --token-env or --token-stdin, not both")
    if token_env:
        token = os.environ.get(token_env, "").strip()
        if not token:
            raise click.ClickException(f"--token-env: the variable {token_env} is not set or empty")
        return token
    if token_stdin:
        token = sys.stdin.readline().strip()
        if not token:
            raise click.ClickException("--token-stdin: no token on standard input")
        return token
    return None


@click.group()
@click.pass_context
def profiles(ctx: click.Context, **_preload: Any) -> None:
    """Messaging accounts: WhatsApp and Telegram through Wappi, Telegram bots."""
    _app(ctx)


@profiles.command("add")
@click.option("--provider", required=True, type=click.Choice([provider.value for provider in Provider]))
@click.option("--profile-id", required=True, help="the provider's id: Wappi's profile id, or a name for a bot")
@click.option("--name", default="", help="display name")
@click.option("--token-env", metavar="VAR", help="read the token from this environment variable")
@click.option("--token-stdin", is_flag=True, help="read the token from the first line of standard input")
@click.option("--note", default="", help="free text for operators")
@click.pass_context
def add(ctx: click.Context, provider: str, profile_id: str, name: str, token_env: str | None, token_stdin: bool,
        note: str) -> None:
    """Add a profile (active at once). A Wappi profile without a token uses WAPPI_TOKEN; a bot needs its own."""
    _app(ctx)
    settings = _settings(ctx)
    profile_id = profile_id.strip()
    if provider != Provider.TELEGRAM_BOT and not PROFILE_ID_RE.match(profile_id):
        raise click.BadParameter(f"{profile_id!r} must look like 8+4 hex digits, e.g. 71ad40e9-b023",
                                 param_hint="--profile-id")
    if not profile_id:
        raise click.BadParameter("must not be empty", param_hint="--profile-id")
    token = _read_token(token_env, token_stdin)
    if token is None and provider == Provider.TELEGRAM_BOT:
        raise click.UsageError("a telegram_bot profile needs its bot token: --token-env VAR or --token-stdin")
    try:
        credentials = encrypt(token, settings) if token is not None else None
    except CredentialsError as exc:
        raise click.ClickException(str(exc)) from None
    with _sessions(ctx)() as session:
        if session.scalar(select(Profile.id).where(Profile.profile_id == profile_id)) is not None:
            raise click.ClickException(f"a profile {profile_id!r} exists already")
        profile = Profile(provider=provider, profile_id=profile_id, name=name.strip(), active=True,
                          credentials=credentials, settings={}, note=note, created_by=_operator())
        session.add(profile)
        session.flush()
        click.echo(f"added profile {profile.id} ({provider} {profile_id}), token "
                   f"{'stored encrypted' if credentials else 'from WAPPI_TOKEN'}")


def _operator() -> str:
    return os.environ.get("USER") or os.environ.get("LOGNAME") or ""


@profiles.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """Every profile and its state."""
    _app(ctx)
    with _sessions(ctx)() as session:
        ensure_profile(session, _settings(ctx))  # the environment's profile is there with zero configuration
        rows = list(session.scalars(select(Profile).order_by(Profile.id)))
        click.echo(f"{'ID':>4}  {'PROVIDER':14}  {'PROFILE ID':20}  {'NAME':20}  {'ACTIVE':6}  "
                   f"{'LAST POLL (UTC)':19}  DOWN")
        for profile in rows:
            last_poll = f"{profile.last_poll_at:%Y-%m-%d %H:%M:%S}" if profile.last_poll_at else "never"
            click.echo(f"{profile.id:>4}  {profile.provider:14}  {profile.profile_id:20}  {profile.name[:20]:20}  "
                       f"{'yes' if profile.active else 'no':6}  {last_poll:19}  {profile.down_reason or '-'}")


@profiles.command("show")
@click.argument("ident", metavar="PROFILE")
@click.pass_context
def show(ctx: click.Context, ident: str) -> None:
    """One profile: its state and effective settings, with where each comes from."""
    _app(ctx)
    settings = _settings(ctx)
    with _sessions(ctx)() as session:
        profile = _find(session, ident)
        try:
            effective, sources = effective_settings(profile, settings)
        except SettingsError as exc:
            raise click.ClickException(f"profile {profile.profile_id}: {exc}") from None
        click.echo(f"profile {profile.id}: {profile.provider} {profile.profile_id} {profile.name!r}")
        click.echo(f"  active: {'yes' if profile.active else 'no'}"
                   + (f" (disabled {profile.disabled_at:%Y-%m-%d %H:%M} UTC)" if profile.disabled_at else ""))
        click.echo(f"  down: {profile.down_reason or '-'}")
        own = "set (encrypted)" if profile.credentials is not None else (
            "not set (uses WAPPI_TOKEN)" if profile.provider != Provider.TELEGRAM_BOT else "not set")
        click.echo(f"  credentials: {own}")
        if profile.note:
            click.echo(f"  note: {profile.note}")
        click.echo("  settings:")
        for key in PROFILE_KEYS:
            item = setting_named(key)
            value = getattr(effective, item.name)
            shown = ("***" if value else "(empty)") if item.metadata["secret"] else value
            click.echo(f"    {key}={shown}  [{sources[key]}]")


def _switch(ctx: click.Context, ident: str, active: bool) -> None:
    _app(ctx)
    with _sessions(ctx)() as session:
        profile = _find(session, ident)
        profile.active = active
        profile.disabled_at = None if active else datetime.now(UTC)
        click.echo(f"profile {profile.id} ({profile.profile_id}) {'enabled' if active else 'disabled'}")


@profiles.command("enable")
@click.argument("ident", metavar="PROFILE")
@click.pass_context
def enable(ctx: click.Context, ident: str) -> None:
    """Serve this profile again."""
    _switch(ctx, ident, True)


@profiles.command("disable")
@click.argument("ident", metavar="PROFILE")
@click.pass_context
def disable(ctx: click.Context, ident: str) -> None:
    """Stop serving this profile (its data stays)."""
    _switch(ctx, ident, False)


@profiles.command("set")
@click.argument("ident", metavar="PROFILE")
@click.argument("assignments", metavar="KEY=VALUE...", nargs=-1, required=True)
@click.pass_context
def set_(ctx: click.Context, ident: str, assignments: tuple[str, ...]) -> None:
    """Override settings for one profile; KEY= (empty) goes back to the global value."""
    _app(ctx)
    changes: dict[str, str] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{assignment!r} is not KEY=VALUE", param_hint="KEY=VALUE")
        changes[key.strip().upper()] = value.strip()
    try:
        parse_overrides(changes)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    with _sessions(ctx)() as session:
        profile = _find(session, ident)
        merged = {**(profile.settings or {}), **changes}
        profile.settings = {key: value for key, value in merged.items() if value != ""}
        for key, value in changes.items():
            secret = setting_named(key).metadata["secret"]
            click.echo(f"{key} {'unset' if value == '' else 'set to ' + ('***' if secret else value)} "
                       f"for profile {profile.profile_id}")


@profiles.command("check")
@click.argument("ident", metavar="PROFILE")
@click.pass_context
def check(ctx: click.Context, ident: str) -> None:
    """Ask the provider whether this profile works now; exits non-zero when it does not."""
    _app(ctx)
    settings = _settings(ctx)
    with _sessions(ctx)() as session:
        profile = _find(session, ident)
        provider, profile_id = profile.provider, profile.profile_id
        try:
            token = profile_token(profile, settings)
        except CredentialsError as exc:
            raise click.ClickException(str(exc)) from None
    try:
        ok, outcome = _provider_status(provider, profile_id, token, settings)
    except (WappiError, TelegramError) as exc:
        raise click.ClickException(f"profile {profile_id}: {mask_text(str(exc), [token])}") from None
    click.echo(f"profile {profile_id} ({provider}): {outcome}")
    if not ok:
        raise click.exceptions.Exit(1)


def _provider_status(provider: str, profile_id: str, token: str, settings: Settings) -> tuple[bool, str]:
    with requests.Session() as http:
        if provider == Provider.TELEGRAM_BOT:
            bot = telegram.TelegramClient(http, settings.telegram_base_url, token, timeout=CHECK_TIMEOUT).get_me()
            return True, f"ok, bot @{bot.username} (id {bot.id}, {bot.first_name})"
        kind = WappiTelegramClient if provider == Provider.WAPPI_TELEGRAM else WappiClient
        status = kind(http, settings.wappi_base_url, token, profile_id, timeout=CHECK_TIMEOUT).get_status()
    state = "ok" if status.healthy else "cannot send"
    return status.healthy, (f"{state}, authorized {'yes' if status.authorized else 'no'}, "
                            f"app_status {status.app_status or '-'}, phone {status.phone or '-'}, "
                            f"name {status.name or '-'}")
