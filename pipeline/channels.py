"""Each profile's channel client, built from its row: the provider picks the client, the stored
credentials (decrypted, pipeline/credentials.py) or WAPPI_TOKEN authenticate it.

One directory per process caches the clients (their HTTP connection pools) and re-reads a profile's
row at most every `REFRESH` seconds, so a token changed with `profiles add`/`set` is picked up
without a restart, and a busy stage costs no extra query per message.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass

import requests
from sqlalchemy import select

from clients.channel import Channel, ChannelNotFoundError
from clients.telegram import TelegramBotChannel, TelegramClient
from clients.wappi import WappiClient, WappiTelegramClient
from db.models import Profile
from db.session import SessionFactory, session_scope
from domain.states import Provider
from pipeline.credentials import profile_token
from settings import Settings, get_settings

REFRESH = 30.0  # seconds a cached client is used before its profile row is read again


def build_channel(provider: str, profile_id: str, token: str, settings: Settings) -> Channel:
    """A new client for one profile."""
    http = requests.Session()
    if provider == Provider.TELEGRAM_BOT:
        bot = TelegramClient(http, settings.telegram_base_url, token, timeout=settings.wappi_timeout)
        return TelegramBotChannel(bot, profile_id, max_media_bytes=settings.max_audio_bytes)
    kind = WappiTelegramClient if provider == Provider.WAPPI_TELEGRAM else WappiClient
    return kind(http, settings.wappi_base_url, token, profile_id, timeout=settings.wappi_timeout,
                max_media_bytes=settings.max_audio_bytes)


@dataclass
class _Entry:
    channel: Channel
    fingerprint: str
    checked: float


class ChannelDirectory:
    """`directory(profile_id)` -> that profile's channel (the provider's profile id, as stored in
    `profiles.profile_id`)."""

    def __init__(self, sessions: SessionFactory, settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __call__(self, profile_id: str) -> Channel:
        now = time.monotonic()
        with self._lock:
            if self._pid != os.getpid():  # a forked worker builds its own connection pools
                self._entries.clear()
                self._pid = os.getpid()
            entry = self._entries.get(profile_id)
            if entry is not None and now - entry.checked < REFRESH:
                return entry.channel
        with self._sessions() as session:
            profile = session.scalars(select(Profile).where(Profile.profile_id == profile_id)).one_or_none()
            if profile is None:
                if profile_id != self._settings.wappi_profile_id:
                    raise ChannelNotFoundError(f"no profile {profile_id!r} in the database")
                provider, token = Provider.WAPPI.value, self._settings.wappi_token  # not stored yet
            else:
                provider, token = profile.provider, profile_token(profile, self._settings)
        fingerprint = hashlib.sha256(f"{provider}\0{token}".encode()).hexdigest()
        with self._lock:
            entry = self._entries.get(profile_id)
            if entry is None or entry.fingerprint != fingerprint:
                entry = _Entry(build_channel(provider, profile_id, token, self._settings), fingerprint, now)
                self._entries[profile_id] = entry
            entry.checked = now
            return entry.channel


_directory: ChannelDirectory | None = None


def channel_for(profile_id: str) -> Channel:
    """This process's channel for one profile (tasks and the web process inject it into stages)."""
    global _directory
    if _directory is None:
        _directory = ChannelDirectory(session_scope, get_settings())
    return _directory(profile_id)
