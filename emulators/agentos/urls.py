"""The AgentOS emulator's routes: the Agno AgentOS API (runs, health, agents), Agno 1.x's
playground run route, and the control endpoints under ``/_emulator/``."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from emulators.agentos import wire
from emulators.agentos.control import ControlApi
from emulators.agentos.exceptions import AgentOSHttpError, EmulatorError
from emulators.agentos.responses import AgentOSApi
from emulators.server import Request, Response, json_response

LOG = logging.getLogger(__name__)

ControlHandler = Callable[[Mapping[str, str], Any], Any]
RUN_PATH = re.compile(r"/agents/(?P<agent_id>[^/]+)/runs")
PLAYGROUND_RUN_PATH = re.compile(r"/v1/playground/agents/(?P<agent_id>[^/]+)/runs")  # Agno 1.x, no auth
AGENT_PATH = re.compile(r"/agents/(?P<agent_id>[^/]+)")


def control_routes(control: ControlApi) -> dict[tuple[str, str], ControlHandler]:
    return {
        ("GET", "/_emulator/health"): control.health,
        ("GET", "/_emulator/agents"): control.agents,
        ("POST", "/_emulator/agents"): control.add_agent,
        ("GET", "/_emulator/key"): control.get_key,
        ("POST", "/_emulator/key"): control.set_key,
        ("GET", "/_emulator/script"): control.get_script,
        ("POST", "/_emulator/script"): control.add_script,
        ("GET", "/_emulator/runs"): control.runs,
        ("GET", "/_emulator/sessions"): control.sessions,
        ("GET", "/_emulator/faults"): control.get_faults,
        ("POST", "/_emulator/faults"): control.set_faults,
        ("POST", "/_emulator/reset"): control.reset,
    }


class Router:
    """The app the HTTP server runs (see `emulators.server.App`)."""

    def __init__(self, api: AgentOSApi, control: ControlApi) -> None:
        self.api = api
        self.control_routes = control_routes(control)

    def malformed_body(self) -> Response:
        return wire.error(AgentOSHttpError(400, "There was an error parsing the body"))

    def handle(self, request: Request) -> Response | None:
        path, query = wire.split_target(request.target)
        try:
            if path.startswith("/_emulator/"):
                return self._control(request.method, path, query, request.body)
            return self._api(request, path)
        except AgentOSHttpError as exc:
            return wire.error(exc)
        except Exception:  # pragma: no cover - defensive, keeps the server alive
            LOG.exception("emulator failed on %s %s", request.method, path)
            return wire.error(AgentOSHttpError(500, "Internal server error (EmulatorError)"))

    def _api(self, request: Request, path: str) -> Response | None:
        for pattern, authenticated in ((RUN_PATH, True), (PLAYGROUND_RUN_PATH, False)):
            match = pattern.fullmatch(path)
            if match is not None:
                if request.method != "POST":
                    raise AgentOSHttpError(405, "Method Not Allowed")
                return self.api.run(request, path, unquote(match["agent_id"]), authenticated=authenticated)
        if request.method == "GET":
            if path == "/health":
                return self.api.health()
            if path == "/agents":
                return self.api.agents(request)
            match = AGENT_PATH.fullmatch(path)
            if match is not None:
                return self.api.agent(request, unquote(match["agent_id"]))
        raise AgentOSHttpError(404, "Not Found")

    def _control(self, method: str, path: str, query: Mapping[str, str], raw_body: bytes) -> Response:
        route = self.control_routes.get((method, path))
        if route is None:
            return json_response(404, {"error": "Not found"})
        try:
            return json_response(200, route(query, wire.control_body(raw_body)))
        except EmulatorError as exc:
            return json_response(exc.status, {"error": exc.detail})
