"""The AgentOS emulator's state: the agents it hosts, the sessions (one conversation each, with
its owner and its runs), the scripted replies waiting to be used, and the log of run requests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emulators.agentos.exceptions import EmulatorError

JSON = dict[str, Any]

DEFAULT_AGENTS = ("sales-assistant",)
RUN_STATUSES = ("PENDING", "RUNNING", "COMPLETED", "PAUSED", "CANCELLED", "ERROR", "REGENERATED")
# What a run that ended ERROR carries in `content` when nothing else is scripted: the model
# provider's exception text, as Agno puts `str(exception)` there and answers HTTP 200.
PROVIDER_ERROR_TEXT = ("Error code: 503 - {'error': {'message': 'The model is overloaded. Please try again "
                       "later.', 'type': 'server_error'}}")
MODEL_ID = "agentos-emulator"
MODEL_PROVIDER = "Emulator"


def agent_name_of(agent_id: str) -> str:
    """``sales-assistant`` reads as ``Sales Assistant``."""
    return " ".join(word.capitalize() for word in agent_id.replace("_", "-").split("-") if word) or agent_id


def echo_reply(agent_id: str, turn: int, message: str) -> str:
    """The default reply: proves which agent answered, that it saw the session's earlier turns
    (`turn` counts them), and what it was told."""
    return f"Ответ агента {agent_id} (сообщение №{turn} в сессии): «{message}»"


def estimate_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: about four characters a token."""
    return max(1, (len(text) + 3) // 4) if text else 0


@dataclass
class Agent:
    id: str
    name: str

    def public(self) -> JSON:
        return {"id": self.id, "name": self.name, "model": {"name": MODEL_ID, "model": MODEL_ID,
                                                             "provider": MODEL_PROVIDER}}


@dataclass
class Turn:
    """One run stored in a session: what the user said and how the run ended."""

    run_id: str
    agent_id: str
    message: str
    status: str
    content: Any  # a string; an object for an output_schema run; None: no content
    created_at: int

    def public(self) -> JSON:
        return {"run_id": self.run_id, "agent_id": self.agent_id, "message": self.message,
                "status": self.status, "content": self.content, "created_at": self.created_at}


@dataclass
class AgentSession:
    session_id: str
    agent_id: str
    user_id: str | None  # the owner; None: an unowned session anyone may write into
    created_at: int
    runs: list[Turn] = field(default_factory=list)

    def public(self) -> JSON:
        return {"session_id": self.session_id, "agent_id": self.agent_id, "user_id": self.user_id,
                "created_at": self.created_at, "runs": [turn.public() for turn in self.runs]}


SCRIPT_KEYS = frozenset({"reply", "status", "http_status", "detail", "delay", "match", "agent_id",
                         "retry_after", "drop"})


def _optional_str(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is not None and not isinstance(value, str):
        raise EmulatorError(f"{name} must be a string")
    return value


@dataclass(frozen=True)
class ScriptItem:
    """One scripted outcome, used by the first run it matches (`agent_id`, and `match` a substring
    of the message). `http_status` other than 200 answers ``{"detail": detail}`` and stores no
    turn; otherwise the run ends with `status` and `reply` as its `content`. Without a `reply` the
    content is the echo (COMPLETED), the provider's error text (ERROR), or none (PAUSED); a
    `reply` of null leaves `content` out, an object stands for an `output_schema` run. `delay`
    holds the answer back; `drop` closes the connection without one."""

    reply: Any = None
    has_reply: bool = False
    status: str = "COMPLETED"
    http_status: int = 200
    detail: str | None = None
    delay: float = 0.0
    match: str | None = None
    agent_id: str | None = None
    retry_after: int | None = None
    drop: bool = False

    @classmethod
    def from_payload(cls, payload: Any) -> ScriptItem:
        if not isinstance(payload, Mapping):
            raise EmulatorError("each script item must be an object")
        unknown = sorted(set(payload) - SCRIPT_KEYS)
        if unknown:
            raise EmulatorError(f"unknown script keys: {', '.join(unknown)}")
        status = payload.get("status", "COMPLETED")
        if status not in RUN_STATUSES:
            raise EmulatorError(f"status must be one of {', '.join(RUN_STATUSES)}")
        http_status = payload.get("http_status", 200)
        if isinstance(http_status, bool) or not isinstance(http_status, int) or not (
                http_status == 200 or 400 <= http_status <= 599):
            raise EmulatorError("http_status must be 200 or an error status (400-599)")
        delay = payload.get("delay", 0.0)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise EmulatorError("delay must be a non-negative number of seconds")
        retry_after = payload.get("retry_after")
        if retry_after is not None and (isinstance(retry_after, bool) or not isinstance(retry_after, int)
                                        or retry_after < 0):
            raise EmulatorError("retry_after must be a non-negative integer")
        drop = payload.get("drop", False)
        if not isinstance(drop, bool):
            raise EmulatorError("drop must be a boolean")
        reply = payload.get("reply")
        if reply is not None and not isinstance(reply, str | dict | list):
            raise EmulatorError("reply must be a string, an object, a list or null")
        return cls(reply=reply, has_reply="reply" in payload, status=status, http_status=http_status,
                   detail=_optional_str(payload, "detail"), delay=float(delay), match=_optional_str(payload, "match"),
                   agent_id=_optional_str(payload, "agent_id"), retry_after=retry_after, drop=drop)

    def matches(self, agent_id: str, message: str) -> bool:
        if self.agent_id is not None and self.agent_id != agent_id:
            return False
        return self.match is None or self.match in message

    def public(self) -> JSON:
        shown: JSON = {"reply": self.reply} if self.has_reply else {}
        return {**shown, "status": self.status, "http_status": self.http_status, "detail": self.detail,
                "delay": self.delay, "match": self.match, "agent_id": self.agent_id,
                "retry_after": self.retry_after, "drop": self.drop}
