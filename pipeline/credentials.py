"""Profile credentials at rest: provider tokens encrypted with Fernet under CREDENTIALS_KEY.

Several comma-separated keys rotate: the first encrypts, every one decrypts (MultiFernet), and
`reencrypt` moves a stored token to the first key. No function here puts a token into a message.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from db.models import Profile
from domain.states import Provider
from settings import Settings


class CredentialsError(Exception):
    """A credential cannot be stored or read; the message names what to fix, never the token."""


def _fernet(settings: Settings) -> MultiFernet:
    if not settings.credentials_key:
        raise CredentialsError("CREDENTIALS_KEY is not set: it is needed to store or read a profile's token "
                               "(set it to a Fernet key; see .env.example)")
    return MultiFernet([Fernet(key) for key in settings.credentials_key.split(",")])


def encrypt(token: str, settings: Settings) -> bytes:
    if not token.strip():
        raise CredentialsError("the token is empty")
    return _fernet(settings).encrypt(token.strip().encode("utf-8"))


def decrypt(credentials: bytes, settings: Settings) -> str:
    try:
        return _fernet(settings).decrypt(bytes(credentials)).decode("utf-8")
    except InvalidToken:
        raise CredentialsError("a stored token cannot be decrypted with CREDENTIALS_KEY (was its key "
                               "removed from the list before the token was re-encrypted?)") from None


def reencrypt(credentials: bytes, settings: Settings) -> bytes:
    """The same token under CREDENTIALS_KEY's first key, for rotation."""
    try:
        return _fernet(settings).rotate(bytes(credentials))
    except InvalidToken:
        raise CredentialsError("a stored token cannot be decrypted with CREDENTIALS_KEY") from None


def profile_token(profile: Profile, settings: Settings) -> str:
    """The token a profile's client uses: its own, decrypted, or for a Wappi profile without one the
    environment's WAPPI_TOKEN (one Wappi account's token serves all its profiles)."""
    if profile.credentials is not None:
        return decrypt(profile.credentials, settings)
    if profile.provider in (Provider.WAPPI, Provider.WAPPI_TELEGRAM):
        return settings.wappi_token
    raise CredentialsError(f"profile {profile.profile_id} ({profile.provider}) has no token: "
                           "add it with `celery -A tasks profiles add ... --token-env VAR`")
