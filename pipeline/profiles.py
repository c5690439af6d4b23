"""Profiles: the business's connected numbers, created from the environment, and whether Wappi can
send for each one now (`down_reason`, shown in /health; sends are held while it is set)."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from clients.wappi import ProfileStatus
from db.models import Profile
from db.session import insert_ignore
from pipeline.contacts import add_to_whitelist
from settings import Settings

log = logging.getLogger(__name__)

_whitelist_applied: set[tuple[str, tuple[str, ...]]] = set()


# Built once: every webhook reads the environment's profile.
PROFILE_BY_PROVIDER_ID = select(Profile).where(Profile.profile_id == bindparam("provider_profile"))


def ensure_profile(session: Session, settings: Settings) -> Profile:
    """The profile from the environment, created on first use. WHITELIST is applied once per
    process start (numbers added to it since are added; removing one stays a CLI action, so a
    number removed with the CLI but left in WHITELIST comes back at the next start)."""
    find = {"provider_profile": settings.wappi_profile_id}
    profile = session.scalars(PROFILE_BY_PROVIDER_ID, find).one_or_none()  # one statement once it exists
    if profile is None:
        insert_ignore(session, Profile, {"provider": "wappi", "profile_id": settings.wappi_profile_id,
                                         "name": settings.profile_name, "active": True}, ["profile_id"])
        profile = session.scalars(PROFILE_BY_PROVIDER_ID, find).one()
    applied = (settings.wappi_profile_id, tuple(settings.whitelist))
    if applied not in _whitelist_applied:
        added = [phone for phone in settings.whitelist
                 if add_to_whitelist(session, profile.id, phone, note="from WHITELIST")]
        if added:
            log.info("WHITELIST: %d number(s) added: %s", len(added), ", ".join(added))
        session.flush()
        _whitelist_applied.add(applied)
    return profile


def down_reason(status: ProfileStatus, paid: bool = True) -> str | None:
    """Why Wappi cannot send for this profile now, or None when it can."""
    if not paid:
        return "not paid"
    if not status.authorized:
        return "not authorized"
    if status.app_status != "open":
        return f"phone not connected (app_status {status.app_status or 'unknown'})"
    return None


def refusal_reason(status_code: int | None) -> str:
    """What an authorization error from Wappi says about the profile."""
    return "not paid" if status_code == 402 else "not authorized"


def mark_profile(session: Session, provider_profile_id: str, reason: str | None, now: datetime) -> bool:
    """Record the profile down (with a reason) or up; True when that changed, so it is logged once."""
    profile = session.scalar(select(Profile).where(Profile.profile_id == provider_profile_id).with_for_update())
    if profile is None or profile.down_reason == reason:
        return False
    was = profile.down_reason
    profile.down_reason = reason
    profile.down_since = now if reason else None
    if reason:
        log.warning("profile %s cannot send (%s): sends are held", provider_profile_id, reason)
    else:
        log.warning("profile %s can send again (was: %s): held sends go out", provider_profile_id, was)
    return True
