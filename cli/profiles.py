"""`celery -A tasks profiles ...`: add, list, show, enable, disable, set, check, resume-proactive,
rotate-key and webhook for messaging accounts.

Registered through the `celery.commands` entry point (see pyproject.toml). Tokens are read from an
environment variable or stdin, never from the command line (it lands in shell history and `ps`), and
stored Fernet-encrypted (pipeline/credentials.py); nothing here prints one.
"""

from __future__ import annotations

import os
import re
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import click
import requests
from sqlalchemy import case, func, or_, select, union_all
from sqlalchemy.orm import Session

from cli.dlq import _app
from clients import telegram
from clients.telegram import TelegramError
from clients.wappi import WappiClient, WappiError, WappiTelegramClient
from db.models import Message, Outbox, Profile
from db.session import SessionFactory, session_scope
from domain.sending import day_start, warmup_rate
from domain.states import OUTBOX_UNSENT, MessageStatus, OutboxStatus, Provider
from infra.logging import mask_text
from pipeline.bot_updates import ALLOWED_UPDATES
from pipeline.credentials import CredentialsError, encrypt, profile_token, reencrypt
from pipeline.profile_settings import (
    PROFILE_KEYS,
    effective_settings,
    parse_overrides,
    reseal_overrides,
    seal_overrides,
    settings_for,
)
from pipeline.profiles import ensure_profile
from settings import PROFILE_ID_RE, WEEKDAYS, Settings, SettingsError, get_settings, setting_named

CHECK_TIMEOUT = 15.0  # seconds; `check` and `webhook` are an operator waiting at a prompt
TELEGRAM_HOOK = "/webhooks/telegram/"  # web/app.py's route for a bot's updates
# What the Bot API accepts as a webhook's secret_token (setWebhook).
SECRET_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


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
@click.option("--no-warmup", is_flag=True, help="no send-limit warm-up: the number is already in use")
@click.pass_context
def add(ctx: click.Context, provider: str, profile_id: str, name: str, token_env: str | None, token_stdin: bool,
        note: str, no_warmup: bool) -> None:
    """Add a profile (active at once). A Wappi profile without a token uses WAPPI_TOKEN; a bot needs its own.
    Its send limit warms up from now (WARMUP_SCHEDULE) unless --no-warmup."""
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
                          credentials=credentials, settings={}, note=note, created_by=_operator(),
                          warmup_from=None if no_warmup else datetime.now(UTC))
        session.add(profile)
        session.flush()
        click.echo(f"added profile {profile.id} ({provider} {profile_id}), token "
                   f"{'stored encrypted' if credentials else 'from WAPPI_TOKEN'}")
    if no_warmup:
        click.echo(f"send-limit warm-up: none (--no-warmup), {settings.send_rate_per_minute} sends/min from the start")
    elif settings.warmup_schedule:
        click.echo(f"send-limit warm-up starts now: {_shown('WARMUP_SCHEDULE', settings.warmup_schedule)} sends/min "
                   f"on its first {len(settings.warmup_schedule)} days, then {settings.send_rate_per_minute}")
    else:
        click.echo("send-limit warm-up starts now, but WARMUP_SCHEDULE is empty: no limit below "
                   f"{settings.send_rate_per_minute} sends/min applies")


def _operator() -> str:
    return os.environ.get("USER") or os.environ.get("LOGNAME") or ""


@profiles.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """Every profile at a glance: state, last poll, queue depth, sends today, a tripped proactive cap."""
    _app(ctx)
    base = _settings(ctx)
    now = datetime.now(UTC)
    with _sessions(ctx)() as session:
        ensure_profile(session, base)  # the environment's profile is there with zero configuration
        rows = list(session.scalars(select(Profile).order_by(Profile.id)))
        # "Today" is each profile's own day, in its effective BUSINESS_TIMEZONE.
        today_from: dict[int, datetime] = {}
        unreadable: set[int] = set()
        for profile in rows:
            try:
                timezone = settings_for(profile, base).timezone
            except SettingsError:  # `show` names the bad key; the list still shows the profile
                timezone = base.timezone
                unreadable.add(profile.id)
            today_from[profile.id] = day_start(now, timezone)
        queue = _queue_depths(session)
        sent_today = _sends_since(session, today_from)
    click.echo(f"{'ID':>4}  {'PROVIDER':14}  {'PROFILE ID':20}  {'NAME':20}  {'ACTIVE':6}  {'STATE':20}  "
               f"{'LAST POLL (UTC)':19}  {'QUEUE':>5}  {'SENT TODAY':>10}  FLAGS")
    for profile in rows:
        last_poll = f"{profile.last_poll_at:%Y-%m-%d %H:%M:%S}" if profile.last_poll_at else "never"
        flags = [label for label, raised in (("PROACTIVE CAP TRIPPED", profile.proactive_tripped_at is not None),
                                             ("BAD SETTINGS", profile.id in unreadable)) if raised]
        click.echo(f"{profile.id:>4}  {profile.provider:14}  {profile.profile_id:20}  {profile.name[:20]:20}  "
                   f"{'yes' if profile.active else 'no':6}  {profile.down_reason or 'ok':20}  {last_poll:19}  "
                   f"{queue.get(profile.id, 0):>5}  {sent_today.get(profile.id, 0):>10}  "
                   f"{', '.join(flags) or '-'}")


def _queue_depths(session: Session) -> dict[int, int]:
    """Per profile: customer messages waiting for their answer plus outbox rows not sent yet."""
    waiting = union_all(
        select(Message.profile_id.label("profile_id")).where(Message.status == MessageStatus.RECEIVED),
        select(Outbox.profile_id.label("profile_id")).where(Outbox.status.in_(OUTBOX_UNSENT)),
    ).subquery()
    counts = session.execute(select(waiting.c.profile_id, func.count()).group_by(waiting.c.profile_id))
    return {profile_id: count for profile_id, count in counts.tuples()}


def _sends_since(session: Session, since: dict[int, datetime]) -> dict[int, int]:
    """Per profile: outbox rows sent since that profile's own moment (one query for all of them)."""
    if not since:
        return {}
    counts = session.execute(
        select(Outbox.profile_id, func.count())
        .where(Outbox.status == OutboxStatus.SENT, Outbox.profile_id.in_(since),
               Outbox.sent_at >= case(since, value=Outbox.profile_id))
        .group_by(Outbox.profile_id))
    return {profile_id: count for profile_id, count in counts.tuples()}


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
        now = datetime.now(UTC)
        click.echo(f"  warm-up: {_warmup(profile, effective, now)}")
        click.echo(f"  {_proactive(session, profile, effective, now)}")
        if profile.provider == Provider.TELEGRAM_BOT:
            offset = "none yet" if profile.update_offset is None else profile.update_offset
            click.echo(f"  updates: {effective.telegram_updates} [{sources['TELEGRAM_UPDATES']}], "
                       f"stored getUpdates offset {offset}")
        click.echo("  settings:")
        for key in PROFILE_KEYS:
            item = setting_named(key)
            value = getattr(effective, item.name)
            shown = ("***" if value else "(empty)") if item.metadata["secret"] else _shown(key, value)
            click.echo(f"    {key}={shown}  [{sources[key]}]")


def _shown(key: str, value: Any) -> str:
    """A setting's value written as its variable would be (a tuple is no way to show hours or days)."""
    if key == "WORKING_HOURS":
        start, end = value
        return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
    if key == "WORKING_DAYS":
        return ",".join(WEEKDAYS[day] for day in value)
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value) or "(none)"
    return str(value)


def _warmup(profile: Profile, effective: Settings, now: datetime) -> str:
    if profile.warmup_from is None:
        return f"none, {effective.send_rate_per_minute} sends/min"
    per_minute, day = warmup_rate(effective.send_rate_per_minute, effective.warmup_schedule, profile.warmup_from,
                                  now)
    began = f"began {profile.warmup_from:%Y-%m-%d %H:%M} UTC"
    if day is None:
        return f"over ({began}), {per_minute} sends/min"
    return (f"day {day} of {len(effective.warmup_schedule)}, {per_minute} sends/min "
            f"(then {effective.send_rate_per_minute}); {began}")


def _proactive_today(session: Session, profile: Profile, effective: Settings, now: datetime) -> int:
    # Imported here: `celery` imports this module for every command, and pipeline.send reads the
    # settings (through celeryconfig) when it is imported.
    from pipeline.send import proactive_sent_today

    return proactive_sent_today(session, profile.id, day_start(now, effective.timezone), besides=0)


def _proactive(session: Session, profile: Profile, effective: Settings, now: datetime) -> str:
    cap = effective.proactive_daily_cap
    sent = _proactive_today(session, profile, effective, now)
    if profile.proactive_tripped_at is None:
        return f"proactive today: {sent} of {cap}"
    return (f"proactive: TRIPPED at {profile.proactive_tripped_at:%Y-%m-%d %H:%M} UTC ({sent} of {cap} today), "
            f"follow-ups held — resume with `celery -A tasks profiles resume-proactive {profile.profile_id}`")


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
        try:
            sealed = seal_overrides(changes, _settings(ctx))  # secrets never stored in plaintext
        except CredentialsError as exc:
            raise click.ClickException(str(exc)) from None
        merged = {**(profile.settings or {}), **sealed}
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


@profiles.command("resume-proactive")
@click.argument("ident", metavar="PROFILE")
@click.pass_context
def resume_proactive(ctx: click.Context, ident: str) -> None:
    """Send proactive messages (follow-up touches) again after the daily cap tripped."""
    _app(ctx)
    settings = _settings(ctx)
    with _sessions(ctx)() as session:
        profile = _find(session, ident)
        tripped_at = profile.proactive_tripped_at
        if tripped_at is None:
            click.echo(f"profile {profile.profile_id}: the proactive cap is not tripped, nothing to resume")
            return
        profile.proactive_tripped_at = None
        effective = settings_for(profile, settings)
        sent = _proactive_today(session, profile, effective, datetime.now(UTC))
        click.echo(f"profile {profile.profile_id}: proactive messages resumed (the cap tripped at "
                   f"{tripped_at:%Y-%m-%d %H:%M} UTC)")
        if sent >= effective.proactive_daily_cap:
            # Resuming does not lift the cap: the next touch today trips it again.
            click.echo(f"note: {sent} of {effective.proactive_daily_cap} went out today already, so the next one "
                       f"trips the cap again; raise it with `celery -A tasks profiles set {profile.profile_id} "
                       "PROACTIVE_DAILY_CAP=...` to send more today")


@profiles.command("rotate-key")
@click.pass_context
def rotate_key(ctx: click.Context) -> None:
    """Re-encrypt every stored token and sealed secret setting under CREDENTIALS_KEY's first key.

    To rotate: put the new key first in CREDENTIALS_KEY and keep the old one after it, run this, then
    drop the old key. All tokens or none are re-encrypted."""
    _app(ctx)
    settings = _settings(ctx)
    with _sessions(ctx)() as session:
        every = list(session.scalars(select(Profile).order_by(Profile.id).with_for_update()))
        rows = [profile for profile in every if profile.credentials is not None]
        for profile in every:
            try:
                if profile.credentials is not None:
                    profile.credentials = reencrypt(profile.credentials, settings)
                # Sealed secret settings (WEBHOOK_SECRET, ...) move to the first key too.
                profile.settings = reseal_overrides(profile.settings or {}, settings)
            except CredentialsError as exc:
                raise click.ClickException(f"profile {profile.profile_id}: {exc}; no token was changed") from None
    click.echo(f"re-encrypted {len(rows)} stored token(s) and the sealed settings under the first key of "
               "CREDENTIALS_KEY")
    if "," in settings.credentials_key:
        click.echo("the other key(s) can now be dropped from CREDENTIALS_KEY once every process runs with it")
    elif rows:
        click.echo("note: CREDENTIALS_KEY holds one key, so nothing changed keys; to rotate, put the new key first "
                   "and the old one after it (comma-separated), run this, then drop the old key")


@profiles.command("webhook")
@click.argument("ident", metavar="PROFILE")
@click.option("--url", help="https://<host>/webhooks/telegram/<profile id>: where Telegram posts the bot's updates")
@click.option("--delete", "remove", is_flag=True, help="delete the webhook and go back to polling (getUpdates)")
@click.pass_context
def webhook(ctx: click.Context, ident: str, url: str | None, remove: bool) -> None:
    """Point a bot's updates at our web process (setWebhook) and stop polling it, or --delete to poll again."""
    _app(ctx)
    if bool(url) == remove:
        raise click.UsageError("give --url URL or --delete")
    settings = _settings(ctx)
    with _sessions(ctx)() as session:
        profile = _find(session, ident)
        our_id, provider, profile_id = profile.id, profile.provider, profile.profile_id
        if provider != Provider.TELEGRAM_BOT:
            raise click.ClickException(
                f"profile {profile_id} is a {provider} profile: Wappi's webhooks are set in Wappi's cabinet or "
                "with its webhook/url/set method, to https://<host>/webhooks/wappi")
        try:
            effective = settings_for(profile, settings)
            token = profile_token(profile, settings)
        except (SettingsError, CredentialsError) as exc:
            raise click.ClickException(f"profile {profile_id}: {exc}") from None
    secret = effective.webhook_secret
    if url is not None:
        url = _webhook_url(url, profile_id)
        if not secret:
            raise click.ClickException(f"profile {profile_id} has no WEBHOOK_SECRET, which Telegram sends with each "
                                       f"update: set it first: celery -A tasks profiles set {profile_id} "
                                       "WEBHOOK_SECRET=...")
        if not SECRET_TOKEN_RE.match(secret):
            raise click.ClickException(f"profile {profile_id}: Telegram takes a WEBHOOK_SECRET of 1-256 letters, "
                                       "digits, _ and - only; set another one with `celery -A tasks profiles set`")
    try:
        with requests.Session() as http:
            bot = telegram.TelegramClient(http, settings.telegram_base_url, token, timeout=CHECK_TIMEOUT)
            if url is not None:
                bot.set_webhook(url, secret, allowed_updates=ALLOWED_UPDATES)
            else:
                bot.delete_webhook()
    except TelegramError as exc:
        raise click.ClickException(f"profile {profile_id}: {mask_text(str(exc), [token])}") from None
    # Told Telegram first: a failed call leaves the profile as it was.
    with _sessions(ctx)() as session:
        stored = session.get(Profile, our_id, with_for_update=True)
        if stored is None:
            raise click.ClickException(f"profile {profile_id} was removed meanwhile; its webhook is "
                                       f"{'set' if url is not None else 'deleted'} at Telegram")
        overrides = dict(stored.settings or {})
        if url is not None:
            overrides["TELEGRAM_UPDATES"] = "webhook"
        else:
            overrides.pop("TELEGRAM_UPDATES", None)
            if settings.telegram_updates != "poll":  # the global value says webhook: override it
                overrides["TELEGRAM_UPDATES"] = "poll"
        stored.settings = overrides
    if url is not None:
        click.echo(f"profile {profile_id}: webhook set to {url} (updates: {', '.join(ALLOWED_UPDATES)}); "
                   "TELEGRAM_UPDATES=webhook, the poll leaves this bot alone")
    else:
        click.echo(f"profile {profile_id}: webhook deleted; TELEGRAM_UPDATES=poll, the poll reads its updates again")


def _webhook_url(url: str, profile_id: str) -> str:
    """The URL, refused unless it is http(s) with a host; a warning when it is not our route for this bot."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{url!r} is not an http(s) URL; give https://<host>{TELEGRAM_HOOK}{profile_id}",
                                 param_hint="--url")
    expected = f"{TELEGRAM_HOOK}{profile_id}"
    if not parts.path.rstrip("/").endswith(expected):
        click.echo(f"warning: {url} does not end with {expected}, where the web process takes this bot's updates",
                   err=True)
    if parts.scheme != "https":
        click.echo("warning: Telegram sends webhooks to https URLs only", err=True)
    return url
