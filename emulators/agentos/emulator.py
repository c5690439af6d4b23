"""`AgentOSEmulator`: the Agno AgentOS emulator as tests, benchmarks and scripts use it from
Python. It owns the HTTP service and the backend, and its methods are the control interface; the
``/_emulator/`` endpoints (`control`) call the same methods."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from emulators.agentos.backend import AgentOSBackend
from emulators.agentos.control import ControlApi
from emulators.agentos.faults import Faults
from emulators.agentos.models import DEFAULT_AGENTS, JSON, ScriptItem
from emulators.agentos.responses import AgentOSApi
from emulators.agentos.service import HeaderHttpService
from emulators.agentos.urls import Router
from emulators.server import EmulatorFacade


class AgentOSEmulator(EmulatorFacade):
    """Threaded HTTP emulator of Agno AgentOS with a control interface. With `api_key` every API
    route but ``/health`` needs ``Authorization: Bearer <api_key>``; without, all are open."""

    LABEL = "AgentOS emulator"

    def __init__(self, api_key: str | None = None, agents: Sequence[str] = DEFAULT_AGENTS, *,
                 host: str = "127.0.0.1", port: int = 0, public_url: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._public_url = public_url.rstrip("/") if public_url else None
        stopping = threading.Event()
        self.backend = AgentOSBackend(api_key, agents, clock=clock)
        router = Router(AgentOSApi(self.backend, stopping=stopping), ControlApi(self))
        self._service = HeaderHttpService(router, host, port, name="AgentOSEmulator",
                                          server_version="AgentOSEmulator/1.0", stopping=stopping)

    # ------------------------------------------------------------------ configuration

    def add_agent(self, agent_id: str, name: str | None = None) -> JSON:
        """Host one more agent (`name` defaults to the id in words: ``Sales Assistant``)."""
        return self.backend.add_agent(agent_id, name).public()

    def agents(self) -> list[JSON]:
        with self.backend.lock:
            return [agent.public() for agent in self.backend.agents.values()]

    def set_api_key(self, api_key: str | None) -> None:
        """Turn the security key on (a string) or off (None or empty)."""
        self.backend.set_api_key(api_key)

    @property
    def auth_required(self) -> bool:
        with self.backend.lock:
            return self.backend.api_key is not None

    # ------------------------------------------------------------------ outcomes

    def script(self, *items: Mapping[str, Any]) -> None:
        """Append scripted outcomes, each used once by the first run it matches (see `ScriptItem`:
        ``reply``, ``status``, ``http_status``, ``detail``, ``delay``, ``match``, ``agent_id``,
        ``retry_after``, ``drop``). All items are checked before any is added."""
        parsed = [ScriptItem.from_payload(item) for item in items]
        with self.backend.lock:
            self.backend.script.extend(parsed)

    def pending_script(self) -> list[JSON]:
        with self.backend.lock:
            return [item.public() for item in self.backend.script]

    def set_faults(self, config: Mapping[str, Any] | None = None) -> None:
        """Replace the fault config (``None`` or ``{}`` disables every fault); see `Faults`."""
        faults = Faults.from_payload(config or {})
        with self.backend.lock:
            self.backend.faults = faults

    def faults(self) -> JSON:
        with self.backend.lock:
            return self.backend.faults.public()

    # ------------------------------------------------------------------ reading

    def runs(self, session_id: str | None = None) -> list[JSON]:
        """Every run request in arrival order (of one session with `session_id`): ``form`` fields
        and ``headers`` as sent with the key redacted, ``http_status`` (None: no answer),
        ``outcome`` (answered, timeout, dropped), ``run_id``, ``session_id``, ``run_status``."""
        return [entry for entry in self.backend.public_log()
                if session_id is None or entry["session_id"] == session_id
                or entry["form"].get("session_id") == session_id]

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Until every run request has been answered (or dropped): a delayed run is still
        running after its client gave up. False if `timeout` passed first."""
        return self.backend.wait_idle(timeout)

    def sessions(self) -> list[JSON]:
        """Each session: its owner ``user_id`` and its ``runs`` (message, status, content)."""
        return self.backend.public_sessions()

    def session(self, session_id: str) -> JSON | None:
        return next((item for item in self.sessions() if item["session_id"] == session_id), None)

    def reset(self) -> None:
        """Back to the agents and key it was built with; sessions, script, faults and log cleared."""
        self.backend.reset()
