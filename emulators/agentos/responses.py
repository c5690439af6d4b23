"""The AgentOS routes the emulator answers: a run (`POST /agents/{agent_id}/runs`, streamed or
not), `GET /health`, `GET /agents` and `GET /agents/{agent_id}`. Checks come in the order FastAPI
and Agno make them: the key, then the form's validation, then the agent, then the session's owner."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from emulators.agentos import wire
from emulators.agentos.backend import AgentOSBackend
from emulators.agentos.exceptions import AgentOSHttpError
from emulators.agentos.faults import Fault
from emulators.agentos.models import JSON, ScriptItem
from emulators.server import Request, Response

STATUS_DETAILS = {400: "Bad request", 403: "Insufficient permissions", 404: "Not Found",
                  409: "Session is busy: another run is in progress", 422: "Unprocessable request",
                  429: "Too many requests", 500: "Internal server error (RuntimeError)",
                  502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
DEFAULT_RETRY_AFTER = 7
GARBAGE_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
WORDS_PER_DELTA = 3
STREAM_ENDS = {"COMPLETED": "RunCompleted", "ERROR": "RunError", "PAUSED": "RunPaused",
               "CANCELLED": "RunCancelled"}


def _deltas(content: str) -> Iterator[str]:
    """The content in pieces of a few words; joined they give it back exactly."""
    words = re.findall(r"\s*\S+\s*", content) or [content]
    for start in range(0, len(words), WORDS_PER_DELTA):
        yield "".join(words[start:start + WORDS_PER_DELTA])


def stream_events(run: JSON) -> list[JSON]:
    common = {"agent_id": run["agent_id"], "agent_name": run["agent_name"], "run_id": run["run_id"],
              "session_id": run["session_id"], "created_at": run["created_at"]}
    events: list[JSON] = [{"event": "RunStarted", **common, "model": run["model"],
                           "model_provider": run["model_provider"]}]
    status, content = run["status"], run.get("content")
    if status == "COMPLETED" and isinstance(content, str) and content:
        events += [{"event": "RunContent", **common, "content": delta, "content_type": "str"}
                   for delta in _deltas(content)]
    end: JSON = {"event": STREAM_ENDS.get(status, "RunCompleted"), **common}
    if content is not None:
        end["content"] = content
    if status == "COMPLETED":
        end.update(content_type="str", metrics=run["metrics"])
    events.append(end)
    return events


class AgentOSApi:
    def __init__(self, backend: AgentOSBackend, *, stopping: threading.Event) -> None:
        self.backend = backend
        self.stopping = stopping  # set when the server stops: simulated waits end early

    def health(self) -> Response:
        return wire.ok({"status": "ok", "instantiated_at": self.backend.instantiated_at})

    def agents(self, request: Request) -> Response:
        self.backend.authenticate(request.headers)
        with self.backend.lock:
            return wire.ok([agent.public() for agent in self.backend.agents.values()])

    def agent(self, request: Request, agent_id: str) -> Response:
        self.backend.authenticate(request.headers)
        return wire.ok(self.backend.agent(agent_id).public())

    def run(self, request: Request, path: str, agent_id: str, *, authenticated: bool) -> Response | None:
        """One run request, logged with its outcome. `authenticated` is False on Agno 1.x's
        playground route, which had no auth dependency."""
        try:
            fields, files = wire.form(request.headers, request.body)
        except AgentOSHttpError as exc:
            entry = self.backend.log_request(request.method, path, agent_id, request.headers, {}, [])
            self.backend.finish(entry, "answered", exc.status)
            return wire.error(exc)
        entry = self.backend.log_request(request.method, path, agent_id, request.headers, fields, files)
        try:
            response, details = self._run(request, agent_id, fields, authenticated=authenticated)
        except AgentOSHttpError as exc:
            self.backend.finish(entry, "answered", exc.status)
            return wire.error(exc)
        except Exception:
            self.backend.finish(entry, "answered", 500)  # the router answers it; no entry stays pending
            raise
        if response is None:
            self.backend.finish(entry, details.pop("outcome", "dropped"), None, **details)
        else:
            self.backend.finish(entry, "answered", response.status, **details)
        return response

    def _fault(self, agent_id: str) -> Fault | None:
        with self.backend.lock:
            return self.backend.faults.decide(agent_id)

    def _run(self, request: Request, agent_id: str, fields: dict[str, str], *,
             authenticated: bool) -> tuple[Response | None, dict[str, Any]]:
        fault = self._fault(agent_id)
        if fault is not None:
            if fault.kind == "timeout":
                self.stopping.wait(fault.seconds)
                return None, {"outcome": "timeout"}
            if fault.kind == "drop":
                return None, {"outcome": "dropped"}
            if fault.kind == "garbage":
                return Response(200, GARBAGE_PAGE, "text/html; charset=utf-8"), {}
            raise AgentOSHttpError(fault.status, fault.detail, retry_after=fault.retry_after)
        if authenticated:
            self.backend.authenticate(request.headers)
        message = fields.get("message", "")
        stream, stream_error = wire.bool_field(fields, "stream", True)  # Agno 2.x+: omitted means stream
        errors = [item for item in (None if message else wire.missing("message"), stream_error) if item]
        if errors:
            raise AgentOSHttpError(422, errors)
        agent = self.backend.agent(agent_id)
        session_id = fields.get("session_id") or str(uuid.uuid4())
        user_id = fields.get("user_id") or None
        self.backend.writable_session(session_id, user_id)
        item = self.backend.take_script(agent_id, message)
        if item is not None:
            if item.delay:
                self.stopping.wait(item.delay)  # the run goes on: a client that gave up meets it on its retry
            if item.drop:
                return None, {"outcome": "dropped"}
            if item.http_status != 200:
                raise _scripted_error(item)
        run = self.backend.run(agent, message, session_id, user_id, item)
        details = {"run_id": run["run_id"], "session_id": run["session_id"], "run_status": run["status"]}
        return (wire.sse(stream_events(run)) if stream else wire.ok(run)), details


def _scripted_error(item: ScriptItem) -> AgentOSHttpError:
    retry_after = item.retry_after
    if retry_after is None and item.http_status == 429:
        retry_after = DEFAULT_RETRY_AFTER
    detail = item.detail if item.detail is not None else STATUS_DETAILS.get(item.http_status, "Error")
    return AgentOSHttpError(item.http_status, detail, retry_after=retry_after)
