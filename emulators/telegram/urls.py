"""The Telegram emulator's routes: ``/bot<token>/<method>`` (faults first, then the token, then the
method), ``/file/bot<token>/<file_path>`` and the control endpoints under ``/_emulator/``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from emulators.server import Request, Response, json_response
from emulators.telegram import wire
from emulators.telegram.backend import TelegramBackend
from emulators.telegram.control import ControlApi
from emulators.telegram.exceptions import BotApiError, EmulatorError
from emulators.telegram.faults import Fault
from emulators.telegram.models import JSON
from emulators.telegram.responses import BotApi

LOG = logging.getLogger(__name__)

ControlHandler = Callable[[Mapping[str, str], JSON], Any]
FILE_METHOD = "file"  # what `Faults.methods` calls a file download


def control_routes(control: ControlApi) -> dict[tuple[str, str], ControlHandler]:
    return {
        ("GET", "/_emulator/health"): control.health,
        ("POST", "/_emulator/text"): control.text,
        ("POST", "/_emulator/voice"): control.voice,
        ("POST", "/_emulator/photo"): control.photo,
        ("POST", "/_emulator/document"): control.document,
        ("POST", "/_emulator/sticker"): control.sticker,
        ("POST", "/_emulator/edit"): control.edit,
        ("POST", "/_emulator/block"): control.block,
        ("POST", "/_emulator/unblock"): control.unblock,
        ("POST", "/_emulator/migrate"): control.migrate,
        ("GET", "/_emulator/sent"): control.sent,
        ("GET", "/_emulator/updates"): control.updates,
        ("GET", "/_emulator/webhook"): control.webhook,
        ("GET", "/_emulator/faults"): control.get_faults,
        ("POST", "/_emulator/faults"): control.set_faults,
        ("GET", "/_emulator/flood_limits"): control.get_flood_limits,
        ("POST", "/_emulator/flood_limits"): control.set_flood_limits,
        ("POST", "/_emulator/reset"): control.reset,
    }


class Router:
    """The app the HTTP server runs (see `emulators.server.App`)."""

    def __init__(self, backend: TelegramBackend, api: BotApi, control: ControlApi, *,
                 stopping: threading.Event) -> None:
        self.backend = backend
        self.stopping = stopping  # set when the server stops: simulated timeouts end early
        self.methods = api.methods()
        self.control_routes = control_routes(control)

    def malformed_body(self) -> Response:
        return wire.failure(BotApiError(400, "Bad Request: invalid request body"))

    def handle(self, request: Request) -> Response | None:
        path, query = wire.split_target(request.target)
        try:
            if path.startswith("/_emulator/"):
                return self._control(request.method, path, query, request.body)
            if path.startswith("/file/bot"):
                return self._file(path.removeprefix("/file/bot"))
            if path.startswith("/bot"):
                return self._api(request, path.removeprefix("/bot"), query)
            return wire.failure(BotApiError(404, "Not Found"))
        except Exception:  # pragma: no cover - defensive, keeps the server alive
            LOG.exception("emulator failed on %s .../%s", request.method, path.rsplit("/", 1)[-1])  # no token
            return wire.failure(BotApiError(500, "Internal Server Error"))

    def _fault(self, method: str) -> Fault | None:
        with self.backend.lock:
            return self.backend.faults.decide(method)

    def _faulted(self, fault: Fault) -> Response | None:
        """What a faulted call gets: an error envelope, or (None) no answer at all."""
        if fault.kind == "timeout":
            self.stopping.wait(fault.seconds)
            return None
        if fault.status == 429:
            return wire.failure(BotApiError(429, f"Too Many Requests: retry after {fault.retry_after}",
                                            {"retry_after": fault.retry_after}))
        return wire.failure(wire.status_error(fault.status))

    def _api(self, request: Request, rest: str, query: Mapping[str, str]) -> Response | None:
        token, _, method = rest.partition("/")
        fault = self._fault(method)
        if fault is not None:
            return self._faulted(fault)
        if token != self.backend.token:
            return wire.failure(BotApiError(401, "Unauthorized"))
        handler = self.methods.get(method.lower())
        if handler is None:
            return wire.failure(BotApiError(404, "Not Found: method not found"))
        try:
            result, description = handler(wire.params(query, request.headers, request.body))
        except BotApiError as exc:
            return wire.failure(exc)
        return wire.ok(result, description)

    def _file(self, rest: str) -> Response | None:
        token, _, file_path = rest.partition("/")
        fault = self._fault(FILE_METHOD)
        if fault is not None:
            return self._faulted(fault)
        if token != self.backend.token:
            return wire.failure(BotApiError(401, "Unauthorized"))
        with self.backend.lock:
            stored = self.backend.files_by_path.get(file_path)
        if stored is None:
            return wire.failure(BotApiError(404, "Not Found"))
        return Response(200, stored.data, content_type="application/octet-stream")

    def _control(self, method: str, path: str, query: Mapping[str, str], raw_body: bytes) -> Response:
        route = self.control_routes.get((method, path))
        if route is None:
            return json_response(404, {"error": "Not found"})
        try:
            return json_response(200, route(query, wire.control_body(raw_body)))
        except EmulatorError as exc:
            return json_response(exc.status, {"error": exc.detail})
