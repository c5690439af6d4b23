"""The operations on the AgentOS emulator's state: the key check, agents, sessions and their
owners, scripted outcomes, runs, and the log of run requests. One re-entrant lock guards it all."""

from __future__ import annotations

import copy
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from emulators.agentos.exceptions import AgentOSHttpError, EmulatorError
from emulators.agentos.faults import Faults
from emulators.agentos.models import (
    JSON,
    MODEL_ID,
    MODEL_PROVIDER,
    PROVIDER_ERROR_TEXT,
    Agent,
    AgentSession,
    ScriptItem,
    Turn,
    agent_name_of,
    echo_reply,
    estimate_tokens,
)

REDACTED = "<redacted>"
AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_agent_id(agent_id: str) -> str:
    if not isinstance(agent_id, str) or not AGENT_ID.fullmatch(agent_id):
        raise EmulatorError("agent_id must be 1-128 letters, digits, '-', '_' or '.'")
    return agent_id


class AgentOSBackend:
    def __init__(self, api_key: str | None, agents: Sequence[str], *, clock: Callable[[], float] = time.time) -> None:
        self._initial_key = api_key or None
        self._initial_agents = tuple(check_agent_id(agent_id) for agent_id in agents)
        self.clock = clock
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # notified when a run request is finished
        self.instantiated_at = datetime.fromtimestamp(clock(), UTC).isoformat().replace("+00:00", "Z")
        self.reset()

    def now(self) -> int:
        return int(self.clock())

    def reset(self) -> None:
        """Back to the agents and key it was built with; no sessions, script, faults or log."""
        with self.lock:
            self.api_key: str | None = self._initial_key
            self.agents: dict[str, Agent] = {}
            for agent_id in self._initial_agents:
                self.add_agent(agent_id)
            self.sessions: dict[str, AgentSession] = {}
            self.script: list[ScriptItem] = []
            self.faults = Faults()
            self.log: list[JSON] = []

    # ------------------------------------------------------------------ configuration

    def add_agent(self, agent_id: str, name: str | None = None) -> Agent:
        agent = Agent(check_agent_id(agent_id), name or agent_name_of(agent_id))
        with self.lock:
            self.agents[agent.id] = agent
        return agent

    def set_api_key(self, api_key: str | None) -> None:
        with self.lock:
            self.api_key = api_key or None

    # ------------------------------------------------------------------ requests

    def authenticate(self, headers: Mapping[str, str]) -> None:
        """Agno's security key: no key set, no check; otherwise a Bearer token equal to it."""
        with self.lock:
            key = self.api_key
        if key is None:
            return
        scheme, _, credentials = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise AgentOSHttpError(401, "Authorization header required")
        if not hmac.compare_digest(credentials.strip().encode("utf-8"), key.encode("utf-8")):
            raise AgentOSHttpError(401, "Invalid authentication token")

    def agent(self, agent_id: str) -> Agent:
        with self.lock:
            agent = self.agents.get(agent_id)
        if agent is None:
            raise AgentOSHttpError(404, "Agent not found")
        return agent

    def _redact(self, text: str) -> str:
        return text.replace(self.api_key, REDACTED) if self.api_key else text

    def log_request(self, method: str, path: str, agent_id: str, headers: Mapping[str, str],
                    fields: Mapping[str, str], files: Sequence[str]) -> JSON:
        """A run request as it came, the key taken out; the caller completes the entry."""
        with self.lock:
            shown = {name: self._redact(value) for name, value in headers.items()}
            if "authorization" in shown:
                scheme = shown["authorization"].strip().partition(" ")[0]
                shown["authorization"] = f"{scheme} {REDACTED}".strip()
            entry: JSON = {"seq": len(self.log) + 1, "at": self.now(), "method": method, "path": path,
                           "agent_id": agent_id, "content_type": headers.get("content-type", ""),
                           "form": {name: self._redact(value) for name, value in fields.items()},
                           "files": list(files), "headers": shown, "http_status": None, "outcome": "pending",
                           "run_id": None, "session_id": None, "run_status": None}
            self.log.append(entry)
            return entry

    def finish(self, entry: JSON, outcome: str, http_status: int | None, **extra: object) -> None:
        with self.changed:
            entry.update(outcome=outcome, http_status=http_status, **extra)
            self.changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Until no run request is in progress (False if `timeout` passed first)."""
        with self.changed:
            return self.changed.wait_for(lambda: all(entry["outcome"] != "pending" for entry in self.log),
                                         timeout=timeout)

    def writable_session(self, session_id: str, user_id: str | None) -> AgentSession | None:
        """The session a run may write into (None: a new one); 404 when it has another owner."""
        with self.lock:
            session = self.sessions.get(session_id)
            if session is not None and session.user_id is not None and session.user_id != user_id:
                # A run must not enter a session owned by someone else; 404 does not confirm it exists.
                raise AgentOSHttpError(404, "Session not found")
            return session

    def take_script(self, agent_id: str, message: str) -> ScriptItem | None:
        with self.lock:
            for index, item in enumerate(self.script):
                if item.matches(agent_id, message):
                    return self.script.pop(index)
            return None

    def run(self, agent: Agent, message: str, session_id: str, user_id: str | None,
            item: ScriptItem | None) -> JSON:
        """Runs the agent: decides status and content, stores the turn, returns the RunOutput dict
        (Agno's `RunOutput.to_dict()`: fields that are None are left out)."""
        with self.lock:
            session = self.writable_session(session_id, user_id)
            if session is None:
                session = AgentSession(session_id, agent.id, user_id, self.now())
                self.sessions[session_id] = session
            run_id = str(uuid.uuid4())
            status: str
            content: Any = None
            scripted = item is not None and item.has_reply
            if item is not None:
                status, content = item.status, item.reply
            else:
                status, content = self.faults.run_outcome(agent.id) or ("COMPLETED", None)
            turn_number = len(session.runs) + 1
            if content is None and not scripted:
                if status == "COMPLETED":
                    content = echo_reply(agent.id, turn_number, message)
                elif status == "ERROR":
                    content = PROVIDER_ERROR_TEXT
                elif status == "CANCELLED":
                    content = f"Run {run_id} was cancelled"
            history = [turn for turn in session.runs if turn.status == "COMPLETED"]
            turn = Turn(run_id, agent.id, message, status, content, self.now())
            session.runs.append(turn)
            return _run_output(agent, session, turn, history, user_id)

    # ------------------------------------------------------------------ reading

    def public_log(self) -> list[JSON]:
        with self.lock:
            return copy.deepcopy(self.log)

    def public_sessions(self) -> list[JSON]:
        with self.lock:
            return [session.public() for session in self.sessions.values()]


def _text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return json.dumps(content, ensure_ascii=False)


def _message(role: str, content: str, created_at: int, *, from_history: bool = False) -> JSON:
    return {"id": str(uuid.uuid4()), "role": role, "content": content, "from_history": from_history,
            "created_at": created_at}


def _run_output(agent: Agent, session: AgentSession, turn: Turn, history: Sequence[Turn],
                user_id: str | None) -> JSON:
    messages = [_message("system", f"You are {agent.name}, an agent served by the AgentOS emulator.",
                         turn.created_at)]
    for earlier in history:
        messages.append(_message("user", earlier.message, earlier.created_at, from_history=True))
        messages.append(_message("assistant", _text(earlier.content), earlier.created_at, from_history=True))
    messages.append(_message("user", turn.message, turn.created_at))
    if turn.status == "COMPLETED" and turn.content is not None:
        messages.append(_message("assistant", _text(turn.content), turn.created_at))
    input_tokens = sum(estimate_tokens(str(item["content"])) for item in messages if item["role"] != "assistant"
                       or item["from_history"])
    output_tokens = estimate_tokens(_text(turn.content)) if turn.status == "COMPLETED" else 0
    output: JSON = {
        "run_id": turn.run_id, "agent_id": agent.id, "agent_name": agent.name, "session_id": session.session_id,
        "user_id": user_id, "content": turn.content,
        # An output_schema run's content is the model_dump() of its object.
        "content_type": "dict" if isinstance(turn.content, dict | list) else "str",
        "model": MODEL_ID, "model_provider": MODEL_PROVIDER, "status": turn.status, "created_at": turn.created_at,
        "input": {"input_content": turn.message}, "messages": messages,
        "metrics": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                    "total_tokens": input_tokens + output_tokens, "duration": 0.01},
    }
    if turn.status == "PAUSED":
        output["requirements"] = [{"tool_execution": {"tool_name": "confirm_order", "tool_args": {},
                                                      "requires_confirmation": True}}]
    return {name: value for name, value in output.items() if value is not None}
