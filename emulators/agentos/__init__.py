"""In-memory emulator of Agno AgentOS, the agent platform the assistant can hand conversations to.

Speaks the wire format of the subset the product uses (see
``/work/shared/reference/agent-handoff.md``): ``POST /agents/{agent_id}/runs`` with a form body
(``message``, ``stream``, ``session_id``, ``user_id``), the RunOutput dict for ``stream=false`` and
Server-Sent Events otherwise, FastAPI's ``{"detail": ...}`` errors and 422 lists, the optional
security key (``Authorization: Bearer``), sessions owned by a ``user_id``; ``GET /health``,
``GET /agents``; Agno 1.x's ``/v1/playground/agents/{agent_id}/runs`` without auth.

The default reply is a deterministic Russian echo numbered by the session's turns; scripted
outcomes and faults produce the inconvenient rest (a run ending ERROR with the provider's error
text in ``content`` and HTTP 200, PAUSED, 500, 429 with ``Retry-After``, 409, slow answers, dropped
connections). The control interface lives under ``/_emulator/`` (no authentication).

Split the way moto splits a service: `models` (state), `wire` (wire format), `backend` (the
operations on the state), `responses` (the AgentOS routes), `urls` (routing), `control` (the
control endpoints), `faults`, `service` (the shared server plus response headers); `emulator`
holds the `AgentOSEmulator` facade.

Run standalone::

    python -m emulators.agentos --host 127.0.0.1 --port 7777 --api-key KEY --agent sales-assistant
"""

from __future__ import annotations

from emulators.agentos.cli import main
from emulators.agentos.emulator import AgentOSEmulator
from emulators.agentos.exceptions import AgentOSHttpError, EmulatorError

__all__ = ["AgentOSEmulator", "AgentOSHttpError", "EmulatorError", "main"]
