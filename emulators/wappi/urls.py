"""The Wappi emulator's routes: which path goes to which handler, and the way every request
takes there (faults, method, token, profile checks for ``/api/`` and its Telegram twin ``/tapi/``;
body checks for ``/_emulator/``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from emulators.server import Request, Response, json_response
from emulators.wappi import wire
from emulators.wappi.backend import WappiBackend
from emulators.wappi.control import ControlApi
from emulators.wappi.exceptions import EmulatorError
from emulators.wappi.models import JSON, Profile
from emulators.wappi.responses import SyncApi

LOG = logging.getLogger(__name__)

ApiHandler = Callable[[Profile, Mapping[str, str], Any, str | None], JSON]
ControlHandler = Callable[[Mapping[str, str], Any], JSON]

API_METHODS: dict[str, frozenset[str]] = {
    "/api/sync/get/status": frozenset({"GET"}),
    "/api/sync/chats/get": frozenset({"GET", "POST"}),
    "/api/sync/chats/filter": frozenset({"GET"}),
    "/api/sync/messages/get": frozenset({"GET"}),
    "/api/sync/messages/id/get": frozenset({"GET"}),
    "/api/sync/message/send": frozenset({"POST"}),
    "/api/sync/message/reply": frozenset({"POST"}),
    "/api/sync/message/mark/read": frozenset({"POST"}),
    "/api/sync/message/media/download": frozenset({"GET"}),
    "/api/webhook/url/set": frozenset({"POST"}),
    "/api/webhook/url/get": frozenset({"GET"}),
    "/api/webhook/url/delete": frozenset({"POST"}),
}
# Wappi's Telegram API: the same paths under /tapi/ (for Telegram profiles), plus typing.
TAPI_PREFIX = "/tapi/"
TAPI_ONLY_METHODS: dict[str, frozenset[str]] = {"/tapi/sync/chats/typing/start": frozenset({"POST"})}
TAPI_METHODS: dict[str, frozenset[str]] = {
    **{"/tapi/" + path.removeprefix("/api/"): methods for path, methods in API_METHODS.items()},
    **TAPI_ONLY_METHODS,
}
# Paths that still work for a logged-out profile.
UNAUTHORIZED_OK_PATHS = frozenset(
    {"/api/sync/get/status", "/api/webhook/url/set", "/api/webhook/url/get", "/api/webhook/url/delete"}
)
FILES_PREFIX = "/_emulator/files/"


def whatsapp_path(path: str) -> str:
    """The `/api/` twin of a `/tapi/` path (the key of the route tables)."""
    return "/api/" + path.removeprefix(TAPI_PREFIX) if path.startswith(TAPI_PREFIX) else path


def api_routes(api: SyncApi) -> dict[str, ApiHandler]:
    return {
        "/api/sync/get/status": api.status,
        "/api/sync/chats/get": api.chats_get,
        "/api/sync/chats/filter": api.chats_filter,
        "/api/sync/messages/get": api.messages_get,
        "/api/sync/messages/id/get": api.message_by_id,
        "/api/sync/message/send": api.send,
        "/api/sync/message/reply": api.reply,
        "/api/sync/message/mark/read": api.mark_read,
        "/api/sync/message/media/download": api.media_download,
        "/api/webhook/url/set": api.webhook_set,
        "/api/webhook/url/get": api.webhook_get,
        "/api/webhook/url/delete": api.webhook_delete,
        "/api/sync/chats/typing/start": api.typing_start,  # reached only as /tapi/sync/chats/typing/start
    }


def control_routes(control: ControlApi) -> dict[tuple[str, str], ControlHandler]:
    return {
        ("GET", "/_emulator/health"): control.health,
        ("POST", "/_emulator/customer_message"): control.customer_message,
        ("POST", "/_emulator/phone_message"): control.phone_message,
        ("GET", "/_emulator/chat"): control.chat,
        ("GET", "/_emulator/sent"): control.sent,
        ("GET", "/_emulator/requests"): control.requests,
        ("POST", "/_emulator/requests/clear"): control.clear_requests,
        ("POST", "/_emulator/reset"): control.reset,
        ("GET", "/_emulator/faults"): control.get_faults,
        ("POST", "/_emulator/faults"): control.set_faults,
        ("GET", "/_emulator/media_faults"): control.get_media_faults,
        ("POST", "/_emulator/media_faults"): control.set_media_faults,
        ("GET", "/_emulator/chat_faults"): control.get_chat_faults,
        ("POST", "/_emulator/chat_faults"): control.set_chat_faults,
        ("POST", "/_emulator/late_message"): control.late_message,
        ("POST", "/_emulator/channel_message"): control.channel_message,
        ("POST", "/_emulator/profile"): control.profile,
        ("POST", "/_emulator/profile/add"): control.add_profile,
        ("POST", "/_emulator/account/add"): control.add_account,
        ("POST", "/_emulator/webhook"): control.webhook,
        ("POST", "/_emulator/seed_chats"): control.seed_chats,
    }


def _error_response(status: int, detail: str) -> Response:
    return json_response(status, wire.error(detail))


class Router:
    """The app the HTTP server runs (see `emulators.server.App`)."""

    def __init__(self, backend: WappiBackend, api: SyncApi, control: ControlApi, *,
                 stopping: threading.Event) -> None:
        self.backend = backend
        self.control = control
        self.stopping = stopping  # set when the server stops: simulated timeouts end early
        self.api_routes = api_routes(api)
        self.control_routes = control_routes(control)

    def malformed_body(self) -> Response:
        return _error_response(400, "Invalid request body")

    def handle(self, request: Request) -> Response | None:
        path, query = wire.split_target(request.target)
        try:
            if path.startswith(("/api/", TAPI_PREFIX)):
                return self._api(request, path, query)
            if path.startswith("/_emulator/") or path == "/_emulator":
                return self._control(request.method, path, query, request.body)
            return _error_response(404, "Not found")
        except Exception:  # pragma: no cover - defensive, keeps the server alive
            LOG.exception("emulator failed on %s %s", request.method, request.target)
            return _error_response(500, "Internal emulator error")

    # ------------------------------------------------------------------ /api/

    def _api(self, request: Request, path: str, query: Mapping[str, str]) -> Response | None:
        """Faults first, as a failing Wappi answers before it looks at the request."""
        method, log = request.method, self.backend.log_request
        with self.backend.lock:
            fault = self.backend.faults.decide(path, query.get("profile_id", ""))
        if fault is not None and fault.kind == "status":
            log(method, path, query, fault.status, "status")
            return _error_response(fault.status, wire.status_phrase(fault.status))
        if fault is not None and fault.kind == "timeout":
            log(method, path, query, None, "timeout")
            self.stopping.wait(fault.seconds)
            return None

        status, payload = self._api_call(request, path, query)
        if fault is not None and fault.kind == "accept_then_timeout" and status == 200:
            log(method, path, query, None, "accept_then_timeout")
            self.stopping.wait(fault.seconds)
            return None
        if fault is not None and fault.kind == "accept_then_5xx" and status == 200:
            log(method, path, query, fault.status, "accept_then_5xx")
            return _error_response(fault.status, wire.status_phrase(fault.status))
        log(method, path, query, status, "")
        return json_response(status, payload)

    def _api_call(self, request: Request, path: str, query: Mapping[str, str]) -> tuple[int, JSON]:
        telegram_api = path.startswith(TAPI_PREFIX)
        methods = (TAPI_METHODS if telegram_api else API_METHODS).get(path)
        if methods is None:
            return 404, wire.error("Not found")
        if request.method not in methods:
            return 405, wire.error("Method not allowed")
        # The same checks, in the same order, for /api/ and /tapi/: a raw account token, then the
        # profile, which must be one of that account's.
        token = request.headers.get("authorization")
        with self.backend.lock:
            known_token = token in self.backend.tokens
        if not known_token:
            return 401, wire.error("Unauthorized")
        try:
            body = wire.json_body(request.body)
        except EmulatorError as exc:
            return exc.status, wire.error(exc.detail)
        with self.backend.lock:
            profile = self.backend.profiles.get(query.get("profile_id", ""))
            if profile is None:
                return 400, wire.error("Profile not found")
            if profile.token != token:
                # Another account's profile. The reference does not say what Wappi answers; the
                # emulator's answer to a wrong token (401 "Unauthorized") is used, which also
                # keeps other accounts' profiles (their platform, their state) out of sight.
                return 401, wire.error("Unauthorized")
            if profile.telegram != telegram_api:
                # A Telegram profile's id is its own (reference: telegram.md B1): the other API
                # does not know it. The detail says which API does.
                other = "/tapi/ (Telegram)" if profile.telegram else "/api/ (WhatsApp)"
                return 400, wire.error(f"Profile not found: {profile.profile_id} is served by {other}")
            if not profile.paid:
                return 402, wire.error("Profile is not paid")
            route = whatsapp_path(path)
            if not profile.authorized and route not in UNAUTHORIZED_OK_PATHS:
                return 400, wire.error("Profile is not authorized")
            self.backend.release_lagged()
            try:
                return 200, self.api_routes[route](profile, query, body, request.headers.get("host"))
            except EmulatorError as exc:
                return exc.status, wire.error(exc.detail)

    # ------------------------------------------------------------------ /_emulator/

    def _control(self, method: str, path: str, query: Mapping[str, str], raw_body: bytes) -> Response:
        if path.startswith(FILES_PREFIX) and method == "GET":
            return self.control.file(path.removeprefix(FILES_PREFIX))
        try:
            body = wire.json_body(raw_body)
        except EmulatorError as exc:
            return _error_response(exc.status, exc.detail)
        if method == "POST" and not isinstance(body, dict):
            return _error_response(400, "JSON object body is required")
        route = self.control_routes.get((method, path))
        if route is None:
            return _error_response(404, "Not found")
        try:
            return json_response(200, route(query, body))
        except EmulatorError as exc:
            return _error_response(exc.status, exc.detail)
