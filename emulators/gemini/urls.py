"""The Gemini emulator's routes: ``[prefix]/{v1,v1beta,v1alpha}/models/{model}:generateContent``
(API key in ``x-goog-api-key``) and ``[prefix]/_emulator/{action}``; anything else is a 404."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from emulators.gemini.wire import JSON_CONTENT_TYPE, RawBody, error_body
from emulators.server import Request, Response, json_response

LOG = logging.getLogger(__name__)

GENERATE_ROUTE = re.compile(
    r"^(?P<prefix>/.*?)?/(?P<version>v1|v1beta|v1alpha)/models/(?P<model>[^/:]+):generateContent$"
)
CONTROL_ROUTE = re.compile(r"^(?P<prefix>/.*?)?/_emulator/(?P<action>[a-z_]+)/?$")

Generate = Callable[[str, str, dict[str, Any]], tuple[int, Any]]
Control = Callable[[str, str, Any], tuple[int, Any]]


def _answer(status: int, payload: Any) -> Response:
    if isinstance(payload, RawBody):  # a scripted body sent as it is: not JSON (a proxy's page)
        return Response(status, payload.text.encode("utf-8"), payload.content_type)
    return json_response(status, payload, JSON_CONTENT_TYPE)


class Router:
    """The app the HTTP server runs (see `emulators.server.App`)."""

    def __init__(self, api_key: Callable[[], str], generate: Generate, control: Control) -> None:
        self.api_key = api_key  # read per request: tests may change the emulator's key
        self.generate = generate
        self.control = control

    def malformed_body(self) -> Response:
        return _answer(400, error_body(400, "Malformed request body."))

    def handle(self, request: Request) -> Response:
        path = unquote(urlsplit(request.target).path)
        control = CONTROL_ROUTE.match(path)
        if control:
            payload: Any = None
            if request.body.strip():
                try:
                    payload = json.loads(request.body)
                except ValueError:
                    return _answer(400, error_body(400, "Invalid JSON payload received."))
            return _answer(*self.control(request.method, control["action"], payload))
        route = GENERATE_ROUTE.match(path)
        if route is None or request.method != "POST":
            return _answer(404, error_body(404, f"no route {path}"))
        if request.headers.get("x-goog-api-key") != self.api_key():
            return _answer(400, error_body(400, "API key not valid."))
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _answer(400, error_body(400, "Invalid JSON payload received."))
        version, model = route["version"], route["model"]
        try:
            status, payload = self.generate(version, model, body)
        except Exception:  # a bug here must surface to the client as a 500, not a dropped socket
            LOG.exception("Gemini emulator failed on %s", path)
            status, payload = 500, error_body(500)
        LOG.info("generateContent %s/%s -> %s", version, model, status)
        return _answer(status, payload)
