"""`celery -A tasks contacts ...` (pausing the bot for a contact) and `celery -A tasks whitelist ...`.

Each command works on one profile: `--profile` (its profile id or our numeric id), else the
environment's. A contact is a phone number in any notation on a WhatsApp profile, and the numeric
chat id on a Telegram one (Telegram customers are stored by it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cli.dlq import _app
from cli.profiles import _find, _sessions, _settings
from db.models import Contact, Profile, WhitelistEntry
from db.session import insert_ignore
from domain.phones import normalize_phone
from domain.states import Provider
from pipeline.contacts import add_to_whitelist
from pipeline.profile_settings import settings_for
from pipeline.profiles import ensure_profile
from settings import SettingsError

PROFILE_OPTION = click.option("--profile", "profile_ident", metavar="PROFILE",
                              help="profile id or our numeric id (default: the environment's profile)")


def _profile(ctx: click.Context, session: Session, ident: str | None) -> Profile:
    if ident is None:
        return ensure_profile(session, _settings(ctx))
    return _find(session, ident)


def _is_telegram(profile: Profile) -> bool:
    return profile.provider in (Provider.WAPPI_TELEGRAM, Provider.TELEGRAM_BOT)


def _key(profile: Profile, value: str) -> str:
    """The contact as `contacts.phone` holds it for this profile's channel."""
    if _is_telegram(profile):
        return value.strip()  # a chat id is no phone: a leading 8 is not a trunk prefix here
    return normalize_phone(value)


def _shown(profile: Profile, phone: str) -> str:
    return f"chat {phone}" if _is_telegram(profile) else f"+{phone}"


def _where(profile: Profile) -> str:
    return f"profile {profile.profile_id} ({profile.provider})"


def _contact(session: Session, profile: Profile, value: str) -> Contact:
    contact = session.scalar(select(Contact).where(Contact.profile_id == profile.id,
                                                   Contact.phone == _key(profile, value)))
    if contact is None:
        what = "chat id" if _is_telegram(profile) else "number"
        raise click.ClickException(f"no contact with {what} {value} in {_where(profile)}")
    return contact


@click.group()
@click.pass_context
def contacts(ctx: click.Context, **_preload: Any) -> None:
    """Contacts the bot steps back from while a human answers them."""
    _app(ctx)


@contacts.command("pause")
@click.argument("contact_ref", metavar="CONTACT")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True),
              help="how long (default: the profile's HUMAN_PAUSE)")
@PROFILE_OPTION
@click.pass_context
def pause(ctx: click.Context, contact_ref: str, hours: float | None, profile_ident: str | None) -> None:
    """Stop the bot answering CONTACT for a while, to answer them yourself (a bot cannot see its owner's
    own chats, so this is how an operator takes a bot's chat over)."""
    _app(ctx)
    with _sessions(ctx)() as session:
        profile = _profile(ctx, session, profile_ident)
        contact = _contact(session, profile, contact_ref)
        if hours is None:
            try:
                hours = settings_for(profile, _settings(ctx)).human_pause_hours
            except SettingsError as exc:
                raise click.ClickException(f"profile {profile.profile_id}: {exc}") from None
            if hours <= 0:
                raise click.UsageError("HUMAN_PAUSE is 0 for this profile: give --hours")
        contact.paused_until = datetime.now(UTC) + timedelta(hours=hours)
        click.echo(f"paused {_shown(profile, contact.phone)} of {_where(profile)} for {hours:g} h, until "
                   f"{contact.paused_until:%Y-%m-%d %H:%M} UTC")


@contacts.command("paused")
@PROFILE_OPTION
@click.pass_context
def paused(ctx: click.Context, profile_ident: str | None) -> None:
    """List contacts the bot is not answering now, and until when (every profile's, or --profile's)."""
    _app(ctx)
    with _sessions(ctx)() as session:
        query = (select(Contact, Profile).join(Profile, Profile.id == Contact.profile_id)
                 .where(Contact.paused_until > datetime.now(UTC)).order_by(Contact.paused_until))
        if profile_ident is not None:
            query = query.where(Contact.profile_id == _find(session, profile_ident).id)
        rows = session.execute(query).tuples().all()
        if not rows:
            click.echo("no paused contacts")
            return
        for contact, profile in rows:
            assert contact.paused_until is not None
            click.echo(f"{_shown(profile, contact.phone)}  {contact.display_name or '-'}  {profile.profile_id}  "
                       f"paused until {contact.paused_until:%Y-%m-%d %H:%M} UTC")


@contacts.command("resume")
@click.argument("contact_ref", metavar="CONTACT")
@PROFILE_OPTION
@click.pass_context
def resume(ctx: click.Context, contact_ref: str, profile_ident: str | None) -> None:
    """Let the bot answer CONTACT again now."""
    _app(ctx)
    with _sessions(ctx)() as session:
        profile = _profile(ctx, session, profile_ident)
        contact = _contact(session, profile, contact_ref)
        was_paused = contact.paused_until is not None and contact.paused_until > datetime.now(UTC)
        contact.paused_until = None
        shown = _shown(profile, contact.phone)
    click.echo(f"resumed {shown}" if was_paused else f"{shown} was not paused")


@click.group()
@click.pass_context
def whitelist(ctx: click.Context, **_preload: Any) -> None:
    """Numbers (chat ids on Telegram) the bot ignores completely: no classification, reply or follow-up."""
    _app(ctx)


@whitelist.command("list")
@PROFILE_OPTION
@click.pass_context
def whitelist_list(ctx: click.Context, profile_ident: str | None) -> None:
    _app(ctx)
    with _sessions(ctx)() as session:
        profile = _profile(ctx, session, profile_ident)
        rows = list(session.scalars(select(WhitelistEntry).where(WhitelistEntry.profile_id == profile.id)
                                    .order_by(WhitelistEntry.phone)))
        for entry in rows:
            click.echo(f"{_shown(profile, entry.phone)}  {entry.note}")
        if not rows:
            click.echo(f"the whitelist of {_where(profile)} is empty")


@whitelist.command("add")
@click.argument("phone")
@click.option("--note", default="", help="who this is")
@PROFILE_OPTION
@click.pass_context
def whitelist_add(ctx: click.Context, phone: str, note: str, profile_ident: str | None) -> None:
    """Add PHONE in any notation: +7 701 123-45-67, 87011234567, 77011234567@c.us (a Telegram
    profile: the numeric chat id)."""
    _app(ctx)
    with _sessions(ctx)() as session:
        profile = _profile(ctx, session, profile_ident)
        number = _key(profile, phone)
        if _is_telegram(profile):
            if not number.isdigit():
                raise click.BadParameter(f"{phone!r} is not a Telegram chat id")
            # add_to_whitelist would read the id as a phone number (a leading 8 becomes 7).
            added = insert_ignore(session, WhitelistEntry, {"profile_id": profile.id, "phone": number, "note": note},
                                  ["profile_id", "phone"]) is not None
        else:
            if not number.isdigit() or len(number) < 7:
                raise click.BadParameter(f"{phone!r} is not a phone number")
            added = add_to_whitelist(session, profile.id, number, note)
        shown = _shown(profile, number)
    click.echo(f"added {shown}" if added else f"{shown} is already on the whitelist")


@whitelist.command("remove")
@click.argument("phone")
@PROFILE_OPTION
@click.pass_context
def whitelist_remove(ctx: click.Context, phone: str, profile_ident: str | None) -> None:
    _app(ctx)
    with _sessions(ctx)() as session:
        profile = _profile(ctx, session, profile_ident)
        number = _key(profile, phone)
        result = session.execute(delete(WhitelistEntry).where(WhitelistEntry.profile_id == profile.id,
                                                              WhitelistEntry.phone == number))
        removed = result.rowcount  # type: ignore[attr-defined]  # CursorResult of a DELETE
        shown = _shown(profile, number)
    click.echo(f"removed {shown}" if removed else f"{shown} was not on the whitelist")
