"""A WSGI application (no framework needed for three routes): serve it with gunicorn in
production (`gunicorn web.app:application`) or `python -m web` locally.

- `GET /health`: 200 or 503 with one JSON object of checks.
- `GET /stats`: today's figures in the business's time zone.
- `POST /webhooks/wappi`: Wappi's push; the shared secret comes in the `Authorization` header
  (or `?secret=`). Messages are stored exactly as the poll stores them, so the two can run
  together without double answers, and the answer is 200 at once.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from celeryconfig import redbeat_key_prefix
from clients.wappi import get_client
from db.session import session_scope
from infra.redis import get_redis
from pipeline.ops import health, stats
from pipeline.profiles import ensure_profile
from pipeline.webhook import WebhookError, store_webhook, webhook_messages
from settings import get_settings
from tasks.chains import start_conversations

log = logging.getLogger(__name__)
MAX_BODY = 5 * 1024 * 1024  # a webhook with a voice note inlines it as base64

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> Iterable[bytes]:
    data = json.dumps(body, ensure_ascii=False, default=str).encode()
    start_response(status, [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


def health_view() -> tuple[bool, dict[str, Any]]:
    settings = get_settings()

    return health(session_scope, get_redis(), lambda profile_id: get_client(profile_id).get_status(),
                  poll_interval=settings.poll_interval, redbeat_prefix=redbeat_key_prefix)


def stats_view() -> dict[str, Any]:
    with session_scope() as session:
        return stats(session, get_redis(), get_settings().timezone)


def webhook_view(environ: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    settings = get_settings()
    if not settings.webhook_secret:
        return "404 Not Found", {"error": "the webhook is disabled (WEBHOOK_SECRET is not set)"}
    given = environ.get("HTTP_AUTHORIZATION") or parse_qs(environ.get("QUERY_STRING", "")).get("secret", [""])[0]
    if not hmac.compare_digest(given.encode(), settings.webhook_secret.encode()):
        log.warning("webhook refused: wrong or missing secret from %s", environ.get("REMOTE_ADDR"))
        return "401 Unauthorized", {"error": "wrong or missing secret"}
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length <= 0 or length > MAX_BODY:
        log.warning("webhook refused: body of %s bytes", length)
        return "400 Bad Request", {"error": f"body must be 1..{MAX_BODY} bytes"}
    raw = environ["wsgi.input"].read(length)
    try:
        items = webhook_messages(json.loads(raw))
    except (ValueError, WebhookError) as exc:
        log.warning("webhook refused: invalid body (%s): %r", exc, raw[:200])
        return "400 Bad Request", {"error": f"invalid body: {exc}"}
    with session_scope() as session:
        profile_id = ensure_profile(session, settings).id
        # Items are handled one by one: a bad item is logged and kept as a dead letter, never a 500.
        to_answer = store_webhook(session, profile_id, items, stale_after=settings.stale_after_minutes * 60,
                                  human_pause=timedelta(hours=settings.human_pause_hours))
    start_conversations(to_answer)
    return "200 OK", {"status": "ok", "accepted": len(items), "new": len(to_answer)}


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
    try:
        if path == "/health" and method == "GET":
            ok, checks = health_view()
            return _json(start_response, "200 OK" if ok else "503 Service Unavailable",
                         {"status": "ok" if ok else "failing", "checks": checks})
        if path == "/stats" and method == "GET":
            return _json(start_response, "200 OK", stats_view())
        if path == "/webhooks/wappi" and method == "POST":
            status, body = webhook_view(environ)
            return _json(start_response, status, body)
        return _json(start_response, "404 Not Found", {"error": f"no route {method} {path}"})
    except Exception:
        log.exception("web: %s %s failed", method, path)
        return _json(start_response, "500 Internal Server Error", {"error": "internal error; see the log"})
