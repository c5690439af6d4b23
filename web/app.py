"""A WSGI application (no framework needed for a handful of routes): serve it with gunicorn in
production (`gunicorn web.app:application`) or `python -m web` locally.

Behind a login (HTTP basic auth against DASHBOARD_USERS, web/auth.py):
- `GET /dashboard` (and its `data.json`, `data.csv`): the owner's dashboard (web/dashboard.py).
- `GET /health`: 200 (`ok` or `degraded`: some of several profiles are down) or 503 (`failing`)
  with one JSON object of checks, each profile's named `<check>:<profile>`, read from what the
  processes recorded (no live provider call) and naming failures by kind, never a host or URL.
- `GET /stats`: today's figures in the business's time zone; `?profile=<profile id>` for one profile's.

Open:
- `GET /health/live`: 200 while this process answers (for load balancers); it reads nothing else.
- `GET /static/<file>`: the dashboard's script, style and vendored Chart.js (no data in them).
- `POST /webhooks/wappi`: Wappi's push (WhatsApp and Telegram profiles share the envelope). Each
  item is routed by its `profile_id` and checked against that profile's WEBHOOK_SECRET, which comes
  in the `Authorization` header (or `?secret=`); an unknown or disabled profile is refused (404).
  Messages are stored exactly as the poll stores them, so the two can run together without double
  answers, and the answer is 200 at once.
- `POST /webhooks/telegram/<profile>`: a bot's updates (`setWebhook`), checked against the
  profile's WEBHOOK_SECRET in `X-Telegram-Bot-Api-Secret-Token`.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import select

from celeryconfig import redbeat_key_prefix
from db.models import Profile
from db.session import session_scope
from domain.states import Provider
from infra.redis import get_redis
from pipeline.bot_updates import store_update
from pipeline.ops import FAILING, health, stats
from pipeline.profile_settings import settings_for
from pipeline.profiles import PROFILE_BY_PROVIDER_ID, ensure_profile
from pipeline.webhook import WebhookError, items_by_profile, store_webhook, webhook_messages
from settings import get_settings
from tasks.chains import start_conversations
from web.auth import REALM, LoginGuard
from web.dashboard import Response, csv_view, data_view, page_view, static_view

log = logging.getLogger(__name__)
TELEGRAM_HOOK = "/webhooks/telegram/"
MAX_BODY = 5 * 1024 * 1024  # a webhook with a voice note inlines it as base64
STATIC = "/static/"
DASHBOARD: dict[str, Callable[[dict[str, Any]], Response]] = {
    "/dashboard": page_view, "/dashboard/": page_view, "/dashboard/data.json": data_view,
    "/dashboard/data.csv": csv_view,
}
# What needs a login: the figures and the detailed health. Webhooks have their own secrets.
LOGIN_REQUIRED = frozenset({"/health", "/stats", *DASHBOARD})

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> Iterable[bytes]:
    data = json.dumps(body, ensure_ascii=False, default=str).encode()
    start_response(status, [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


def health_view() -> tuple[str, dict[str, Any]]:
    settings = get_settings()
    return health(session_scope, get_redis(), poll_interval=settings.poll_interval, redbeat_prefix=redbeat_key_prefix)


def _send(start_response: StartResponse, response: Response) -> Iterable[bytes]:
    status, headers, body = response
    start_response(status, headers)
    return [body]


def login_refusal(environ: dict[str, Any]) -> Response | None:
    """None when the request carries a valid login; else the answer that asks for one (401) or
    refuses after too many failures (429)."""
    outcome = LoginGuard(get_settings().dashboard_users, get_redis()).check(
        environ.get("HTTP_AUTHORIZATION", ""), environ.get("REMOTE_ADDR", "?"))
    if outcome.user is not None:
        return None
    body = json.dumps({"error": "too many failed logins; try later" if outcome.retry_after
                       else "login required"}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if outcome.retry_after:
        headers.append(("Retry-After", str(outcome.retry_after)))
    else:
        headers.append(("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'))
    return outcome.status, headers, body


def stats_view(environ: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Every profile's figures together, or one profile's (`?profile=<profile id>`) in its own time zone."""
    wanted = parse_qs(environ.get("QUERY_STRING", "")).get("profile", [""])[0].strip()
    settings = get_settings()
    with session_scope() as session:
        if not wanted:
            return "200 OK", stats(session, get_redis(), settings.timezone)
        profile = session.scalars(select(Profile).where(Profile.profile_id == wanted)).one_or_none()
        if profile is None:
            return "404 Not Found", {"error": f"no profile {wanted!r}"}
        figures = stats(session, get_redis(), settings_for(profile, settings).timezone, profile_id=profile.id)
        return "200 OK", {"profile": wanted, **figures}


def _body(environ: dict[str, Any], what: str) -> tuple[bytes | None, tuple[str, dict[str, Any]] | None]:
    """The request body, or the refusal to answer with."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length <= 0 or length > MAX_BODY:
        log.warning("%s refused: body of %s bytes", what, length)
        return None, ("400 Bad Request", {"error": f"body must be 1..{MAX_BODY} bytes"})
    return environ["wsgi.input"].read(length), None


def _secret_matches(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def webhook_view(environ: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Wappi's push, routed item by item to the profile it names. Every named profile must exist,
    be enabled and match the secret, or the whole request is refused: one profile's message is
    never stored under another."""
    settings = get_settings()
    raw, refusal = _body(environ, "webhook")
    if refusal is not None:
        return refusal
    assert raw is not None
    try:
        items = webhook_messages(json.loads(raw))
    except (ValueError, WebhookError) as exc:
        log.warning("webhook refused: invalid body (%s): %r", exc, raw[:200])
        return "400 Bad Request", {"error": f"invalid body: {exc}"}
    given = environ.get("HTTP_AUTHORIZATION") or parse_qs(environ.get("QUERY_STRING", "")).get("secret", [""])[0]
    # A body with no items is still checked against the environment profile's secret.
    groups = items_by_profile(items, settings.wappi_profile_id) or {settings.wappi_profile_id: []}
    new: list[int] = []
    with session_scope() as session:
        environment_profile = ensure_profile(session, settings)
        targets: list[tuple[int, list[object]]] = []
        for provider_id, group in groups.items():
            profile = environment_profile if provider_id == environment_profile.profile_id else \
                session.scalars(PROFILE_BY_PROVIDER_ID, {"provider_profile": provider_id}).one_or_none()
            if profile is None or not profile.active or profile.provider == Provider.TELEGRAM_BOT:
                log.warning("webhook refused: profile %r is unknown or disabled (%d item(s))", provider_id, len(group))
                return "404 Not Found", {"error": f"unknown or disabled profile {provider_id!r}"}
            secret = settings_for(profile, settings).webhook_secret
            if not secret:
                log.warning("webhook refused: profile %s has no WEBHOOK_SECRET (its webhook is disabled)", provider_id)
                return "404 Not Found", {"error": f"the webhook of profile {provider_id!r} is disabled "
                                                  "(WEBHOOK_SECRET is not set)"}
            if not _secret_matches(given, secret):
                log.warning("webhook refused: wrong or missing secret for profile %s from %s",
                            provider_id, environ.get("REMOTE_ADDR"))
                return "401 Unauthorized", {"error": "wrong or missing secret"}
            targets.append((profile.id, group))
        # Items are handled one by one: a bad item is logged and kept as a dead letter, never a 500.
        for profile_db_id, group in targets:
            new.extend(store_webhook(session, profile_db_id, group, stale_after=settings.stale_after_minutes * 60,
                                     human_pause=timedelta(hours=settings.human_pause_hours)))
    start_conversations(new)
    return "200 OK", {"status": "ok", "accepted": len(items), "new": len(new)}


def telegram_webhook_view(environ: dict[str, Any], provider_id: str) -> tuple[str, dict[str, Any]]:
    """One Bot API update for the bot profile `provider_id`. Answered 200 at once (Telegram repeats
    a non-2xx); a repeated update is stored once."""
    settings = get_settings()
    given = environ.get("HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN") or ""
    with session_scope() as session:
        profile = session.scalars(select(Profile).where(Profile.profile_id == provider_id)).one_or_none()
        if profile is None or not profile.active or profile.provider != Provider.TELEGRAM_BOT:
            log.warning("telegram webhook refused: %r is no enabled bot profile", provider_id)
            return "404 Not Found", {"error": f"unknown or disabled bot profile {provider_id!r}"}
        secret = settings_for(profile, settings).webhook_secret
    if not secret:
        log.warning("telegram webhook refused: profile %s has no WEBHOOK_SECRET", provider_id)
        return "404 Not Found", {"error": f"the webhook of profile {provider_id!r} is disabled (no WEBHOOK_SECRET)"}
    if not _secret_matches(given, secret):
        log.warning("telegram webhook refused: wrong or missing secret token for %s from %s",
                    provider_id, environ.get("REMOTE_ADDR"))
        return "401 Unauthorized", {"error": "wrong or missing secret token"}
    raw, refusal = _body(environ, "telegram webhook")
    if refusal is not None:
        return refusal
    assert raw is not None
    try:
        update = json.loads(raw)
    except ValueError as exc:
        log.warning("telegram webhook refused: invalid JSON (%s)", exc)
        return "400 Bad Request", {"error": f"invalid body: {exc}"}
    with session_scope() as session:
        profile = session.scalars(select(Profile).where(Profile.profile_id == provider_id)).one()
        row_id = store_update(session, profile, update, now=time.time(),
                              stale_after=settings.stale_after_minutes * 60,
                              human_pause=timedelta(hours=settings.human_pause_hours))
    start_conversations([row_id] if row_id is not None else [])
    return "200 OK", {"ok": True, "new": 1 if row_id is not None else 0}


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
    try:
        if path == "/health/live" and method == "GET":
            return _json(start_response, "200 OK", {"status": "alive"})
        if path.startswith(STATIC) and method == "GET":
            return _send(start_response, static_view(path[len(STATIC):]))
        if path in LOGIN_REQUIRED and method == "GET":
            refusal = login_refusal(environ)
            if refusal is not None:
                return _send(start_response, refusal)
        if path in DASHBOARD and method == "GET":
            return _send(start_response, DASHBOARD[path](environ))
        if path == "/health" and method == "GET":
            status, checks = health_view()
            return _json(start_response, "503 Service Unavailable" if status == FAILING else "200 OK",
                         {"status": status, "checks": checks})
        if path == "/stats" and method == "GET":
            status, body = stats_view(environ)
            return _json(start_response, status, body)
        if path == "/webhooks/wappi" and method == "POST":
            status, body = webhook_view(environ)
            return _json(start_response, status, body)
        if path.startswith(TELEGRAM_HOOK) and method == "POST":
            status, body = telegram_webhook_view(environ, path[len(TELEGRAM_HOOK):].strip("/"))
            return _json(start_response, status, body)
        return _json(start_response, "404 Not Found", {"error": f"no route {method} {path}"})
    except Exception:
        log.exception("web: %s %s failed", method, path)
        return _json(start_response, "500 Internal Server Error", {"error": "internal error; see the log"})
