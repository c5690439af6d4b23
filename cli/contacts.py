"""`celery -A tasks contacts ...` (paused contacts) and `celery -A tasks whitelist ...`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cli.dlq import _app
from db.models import Contact, WhitelistEntry
from db.session import session_scope
from domain.phones import normalize_phone
from pipeline.contacts import add_to_whitelist
from pipeline.profiles import ensure_profile
from settings import get_settings


def _profile_id(session: Session) -> int:
    return ensure_profile(session, get_settings()).id


@click.group()
@click.pass_context
def contacts(ctx: click.Context, **_preload: Any) -> None:
    """Contacts the bot stepped back from after a human answered them."""
    _app(ctx)


@contacts.command("paused")
@click.pass_context
def paused(ctx: click.Context) -> None:
    """List contacts the bot is not answering now, and until when."""
    _app(ctx)
    with session_scope() as session:
        rows = list(session.scalars(select(Contact).where(Contact.paused_until > datetime.now(UTC))
                                    .order_by(Contact.paused_until)))
        if not rows:
            click.echo("no paused contacts")
            return
        for contact in rows:
            click.echo(f"+{contact.phone}  {contact.display_name or '-'}  paused until "
                       f"{contact.paused_until:%Y-%m-%d %H:%M} UTC")


@contacts.command("resume")
@click.argument("phone")
@click.pass_context
def resume(ctx: click.Context, phone: str) -> None:
    """Let the bot answer PHONE again now."""
    _app(ctx)
    with session_scope() as session:
        contact = session.scalar(select(Contact).where(Contact.profile_id == _profile_id(session),
                                                       Contact.phone == normalize_phone(phone)))
        if contact is None:
            raise click.ClickException(f"no contact with number {phone}")
        contact.paused_until = None
    click.echo(f"resumed +{normalize_phone(phone)}")


@click.group()
@click.pass_context
def whitelist(ctx: click.Context, **_preload: Any) -> None:
    """Numbers the bot ignores completely (no classification, reply or follow-up)."""
    _app(ctx)


@whitelist.command("list")
@click.pass_context
def whitelist_list(ctx: click.Context) -> None:
    _app(ctx)
    with session_scope() as session:
        rows = list(session.scalars(select(WhitelistEntry).where(WhitelistEntry.profile_id == _profile_id(session))
                                    .order_by(WhitelistEntry.phone)))
        for entry in rows:
            click.echo(f"+{entry.phone}  {entry.note}")
        if not rows:
            click.echo("the whitelist is empty")


@whitelist.command("add")
@click.argument("phone")
@click.option("--note", default="", help="who this is")
@click.pass_context
def whitelist_add(ctx: click.Context, phone: str, note: str) -> None:
    """Add PHONE in any notation: +7 701 123-45-67, 87011234567, 77011234567@c.us."""
    _app(ctx)
    number = normalize_phone(phone)
    if not number.isdigit() or len(number) < 7:
        raise click.BadParameter(f"{phone!r} is not a phone number")
    with session_scope() as session:
        added = add_to_whitelist(session, _profile_id(session), number, note)
    click.echo(f"added +{number}" if added else f"+{number} is already on the whitelist")


@whitelist.command("remove")
@click.argument("phone")
@click.pass_context
def whitelist_remove(ctx: click.Context, phone: str) -> None:
    _app(ctx)
    number = normalize_phone(phone)
    with session_scope() as session:
        result = session.execute(delete(WhitelistEntry).where(WhitelistEntry.profile_id == _profile_id(session),
                                                              WhitelistEntry.phone == number))
    removed = result.rowcount  # type: ignore[attr-defined]  # CursorResult of a DELETE
    click.echo(f"removed +{number}" if removed else f"+{number} was not on the whitelist")
