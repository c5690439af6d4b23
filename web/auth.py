"""The login of the operations surfaces (/dashboard, /stats, the detailed /health): HTTP basic auth
against DASHBOARD_USERS, whose passwords are stored as salted scrypt hashes.

Basic auth, not a login page with a session cookie: the browser sends the credentials itself on
every request, so there is no cookie a third-party page could make it send, hence no CSRF to
defend; curl and monitoring scripts use the same login. It needs TLS in front, as Flower does.

A failed login is logged (the user name, never the password) and answered after FAILED_LOGIN_DELAY;
after MAX_FAILURES_PER_ADDRESS failures from one address, or MAX_FAILURES_PER_USER for one name,
each within FAILURE_WINDOW seconds of the one before, further attempts are refused (429) without
checking the password, until FAILURE_WINDOW has passed since the last failure. The counters live in
Redis, shared by every web process; a success clears its address's counter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from infra.redis import key

log = logging.getLogger(__name__)

SCHEME = "scrypt"
# scrypt's cost: 16 MiB and about 50 ms per check on one core; a stolen hash is slow to guess.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
REALM = "assistant operations"
FAILED_LOGIN_DELAY = 0.5  # seconds before a wrong password is answered
FAILURE_WINDOW = 900
MAX_FAILURES_PER_ADDRESS = 10
MAX_FAILURES_PER_USER = 30
# A verified Authorization header is remembered this long, so the page's requests do not each
# cost a scrypt check; only an HMAC of the header under a per-process key is kept.
VERIFIED_FOR = 300.0
_process_key = secrets.token_bytes(32)
_verified: dict[bytes, tuple[str, float]] = {}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`scrypt:N:r:p:<salt>:<hash>` (base64url): what DASHBOARD_USERS holds after the user's name."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=SCRYPT_MAXMEM, dklen=32)
    return f"{SCHEME}:{SCRYPT_N}:{SCRYPT_R}:{SCRYPT_P}:{_b64(salt)}:{_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches the hash, compared in constant time; False for a malformed hash."""
    try:
        scheme, n, r, p, salt, digest = encoded.split(":")
        if scheme != SCHEME:
            return False
        expected = _unb64(digest)
        given = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                               maxmem=SCRYPT_MAXMEM, dklen=len(expected))
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(given, expected)


# A hash to check an unknown user's password against, so that a wrong name takes as long as a
# wrong password and names cannot be told apart by timing.
_DUMMY_HASH = hash_password(secrets.token_hex(16))


def parse_basic(header: str) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic …` header, or None."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


@dataclass(frozen=True)
class Outcome:
    """A login's result: the user on success; else the status to answer with."""

    user: str | None
    status: str = "200 OK"
    retry_after: int = 0


class LoginGuard:
    """Checks a request's credentials against `users` ((name, hash) pairs) and counts failures in Redis."""

    def __init__(self, users: Sequence[tuple[str, str]], redis_client: redis.Redis,
                 delay: float = FAILED_LOGIN_DELAY) -> None:
        self.users = dict(users)
        self.redis = redis_client
        self.delay = delay

    def check(self, header: str, address: str) -> Outcome:
        if not header:
            return Outcome(None, "401 Unauthorized")  # the browser's first request: not a failure
        remembered = self._remembered(header)
        if remembered is not None:
            return Outcome(remembered)
        credentials = parse_basic(header)
        user = credentials[0] if credentials else ""
        shown = user[:64] or "(none)"
        blocked = self._blocked(address, user)
        if blocked:
            log.warning("login refused for user %r from %s: too many failed logins, retry in %d s",
                        shown, address, blocked)
            return Outcome(None, "429 Too Many Requests", blocked)
        if credentials is not None and verify_password(credentials[1], self.users.get(user, _DUMMY_HASH)) \
                and user in self.users:
            self._remember(header, user)
            self._forget_failures(address)
            return Outcome(user)
        failures = self._count_failure(address, user)
        log.warning("failed login for user %r from %s (%s failures from that address in %d min)",
                    shown, address, failures if failures is not None else "?", FAILURE_WINDOW // 60)
        time.sleep(self.delay)
        return Outcome(None, "401 Unauthorized")

    # -- remembered logins -------------------------------------------------------------------
    def _fingerprint(self, header: str) -> bytes:
        return hmac.new(_process_key, header.encode(), hashlib.sha256).digest()

    def _remembered(self, header: str) -> str | None:
        entry = _verified.get(self._fingerprint(header))
        if entry is None or entry[1] < time.monotonic() or entry[0] not in self.users:
            return None
        return entry[0]

    def _remember(self, header: str, user: str) -> None:
        if len(_verified) > 1000:
            _verified.clear()
        _verified[self._fingerprint(header)] = (user, time.monotonic() + VERIFIED_FOR)

    # -- failure counters (Redis; a Redis outage leaves only the fixed delay) ----------------
    @staticmethod
    def _keys(address: str, user: str) -> tuple[str, str]:
        user_digest = hashlib.sha256(user.encode()).hexdigest()[:32]  # a name of any length, any bytes
        return key("login-failures", "address", address), key("login-failures", "user", user_digest)

    def _blocked(self, address: str, user: str) -> int:
        """Seconds until attempts are checked again, or 0."""
        address_key, user_key = self._keys(address, user)
        try:
            pipe = self.redis.pipeline(transaction=False)
            for counter in (address_key, user_key):
                pipe.get(counter)
                pipe.ttl(counter)
            by_address, address_ttl, by_user, user_ttl = pipe.execute()
        except redis.RedisError:
            return 0
        if int(by_address or 0) >= MAX_FAILURES_PER_ADDRESS:
            return max(int(address_ttl), 1)
        if int(by_user or 0) >= MAX_FAILURES_PER_USER:
            return max(int(user_ttl), 1)
        return 0

    def _count_failure(self, address: str, user: str) -> int | None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            for counter in self._keys(address, user):
                pipe.incr(counter)
                pipe.expire(counter, FAILURE_WINDOW)  # each failure keeps the count another window
            return int(pipe.execute()[0])
        except redis.RedisError:
            return None

    def _forget_failures(self, address: str) -> None:
        try:
            self.redis.delete(self._keys(address, "")[0])
        except redis.RedisError:
            pass
