"""The AgentOS emulator's control interface under ``/_emulator/`` (no authentication): agents,
the key, scripted outcomes, faults, the run log, sessions, reset.

Each handler checks the JSON it is given and calls the matching `AgentOSEmulator` method, so the
HTTP and the Python control interfaces cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from emulators.agentos.exceptions import EmulatorError
from emulators.agentos.models import JSON

if TYPE_CHECKING:  # the emulator builds its control interface: a type-only import the other way
    from emulators.agentos.emulator import AgentOSEmulator


def _object(body: Any, *allowed: str) -> JSON:
    if not isinstance(body, dict):
        raise EmulatorError("a JSON object body is required")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise EmulatorError(f"unknown fields: {', '.join(unknown)}")
    return body


class ControlApi:
    def __init__(self, emulator: AgentOSEmulator) -> None:
        self.emulator = emulator

    def health(self, query: Mapping[str, str], body: Any) -> JSON:
        return {"status": "ok"}

    def agents(self, query: Mapping[str, str], body: Any) -> list[JSON]:
        return self.emulator.agents()

    def add_agent(self, query: Mapping[str, str], body: Any) -> JSON:
        fields = _object(body, "agent_id", "name")
        agent_id, name = fields.get("agent_id"), fields.get("name")
        if not isinstance(agent_id, str) or (name is not None and not isinstance(name, str)):
            raise EmulatorError("agent_id (and name, if given) must be strings")
        return self.emulator.add_agent(agent_id, name)

    def get_key(self, query: Mapping[str, str], body: Any) -> JSON:
        return {"auth": self.emulator.auth_required}

    def set_key(self, query: Mapping[str, str], body: Any) -> JSON:
        api_key = _object(body, "api_key").get("api_key")
        if api_key is not None and not isinstance(api_key, str):
            raise EmulatorError("api_key must be a string or null")
        self.emulator.set_api_key(api_key)
        return {"auth": self.emulator.auth_required}

    def get_script(self, query: Mapping[str, str], body: Any) -> list[JSON]:
        return self.emulator.pending_script()

    def add_script(self, query: Mapping[str, str], body: Any) -> list[JSON]:
        """A JSON list of items, or ``{"items": [...]}``; appended to what is pending."""
        items = _object(body, "items").get("items") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise EmulatorError("a list of script items is required")
        self.emulator.script(*items)
        return self.emulator.pending_script()

    def runs(self, query: Mapping[str, str], body: Any) -> list[JSON]:
        return self.emulator.runs(session_id=query.get("session_id") or None)

    def sessions(self, query: Mapping[str, str], body: Any) -> list[JSON]:
        return self.emulator.sessions()

    def get_faults(self, query: Mapping[str, str], body: Any) -> JSON:
        return self.emulator.faults()

    def set_faults(self, query: Mapping[str, str], body: Any) -> JSON:
        if not isinstance(body, dict):
            raise EmulatorError("a JSON object body is required")
        self.emulator.set_faults(body)
        return self.emulator.faults()

    def reset(self, query: Mapping[str, str], body: Any) -> JSON:
        self.emulator.reset()
        return {"status": "ok"}
