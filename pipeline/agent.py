"""The sales agent: a structured answer `{"reply", "call", "opt_out"}` grounded in the knowledge base.

`opt_out` is true only when the customer asks us to stop writing to them; the pipeline then opts
them out instead of sending the reply. A short exact STOP never gets here (`domain.answers` decides
it at ingest); this field judges the longer messages that merely mention stopping, at no extra call.

Whether a call is booked is decided here, in code: a requested time inside working hours books
it; any other time books nothing, and the agent is asked again with the next free slots that the
code computed, so that its reply offers them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clients.gemini import Answer, GeminiClient, GeminiEmptyAnswerError
from domain.clock import human_slot
from domain.working_hours import WorkingHours, parse_requested

log = logging.getLogger(__name__)

AGENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reply": {"type": "string"},
        "call": {
            "type": ["object", "null"],
            "properties": {"at": {"type": "string"}},
            "required": ["at"],
        },
        "opt_out": {
            "type": "boolean",
            "description": "true only if the customer's last message asks us to stop writing to them",
        },
    },
    "required": ["reply", "call", "opt_out"],
}
REFUSALS = {
    "past": "это время уже прошло",
    "day_off": "в этот день мы не работаем",
    "outside_hours": "это нерабочее время",
}
ATTEMPTS = 2


class InvalidAgentAnswer(ValueError):
    """The agent's answer is not the JSON object it must be."""


@dataclass(frozen=True)
class AgentAnswer:
    reply: str
    call_at: str | None
    opt_out: bool = False


def parse_agent_answer(text: str) -> AgentAnswer:
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise InvalidAgentAnswer(f"not JSON: {text[:80]!r}") from exc
    if not isinstance(data, dict):
        raise InvalidAgentAnswer("not a JSON object")
    opt_out = data.get("opt_out") is True  # anything but a JSON true (missing, "yes", 1) is no opt-out
    reply = data.get("reply")
    if not opt_out and (not isinstance(reply, str) or not reply.strip()):
        raise InvalidAgentAnswer("no reply text")
    call = data.get("call")
    call_at = call.get("at") if isinstance(call, dict) and isinstance(call.get("at"), str) else None
    return AgentAnswer(reply=reply.strip() if isinstance(reply, str) else "", call_at=call_at, opt_out=opt_out)


@dataclass
class AgentResult:
    reply: str
    booked_at: datetime | None = None
    refused: str | None = None  # why a requested time was refused
    opt_out: bool = False  # the customer asked us to stop writing: no reply, a confirmation instead
    answers: list[Answer] = field(default_factory=list)  # every model call, for token accounting


def _ask(gemini: GeminiClient, contents: list[dict[str, Any]], system_instruction: str,
         result: AgentResult) -> AgentAnswer:
    problem: Exception | None = None
    for attempt in range(1, ATTEMPTS + 1):
        try:
            answer = gemini.generate(contents, system_instruction=system_instruction, response_schema=AGENT_SCHEMA)
        except GeminiEmptyAnswerError as exc:
            problem = exc
            log.warning("sales agent: attempt %d got no answer: %s", attempt, exc)
            continue
        result.answers.append(answer)
        try:
            return parse_agent_answer(answer.text)
        except InvalidAgentAnswer as exc:
            problem = exc
            log.warning("sales agent: attempt %d gave an invalid answer: %s", attempt, exc)
    raise InvalidAgentAnswer(f"no valid answer after {ATTEMPTS} attempts: {problem}")


def answer_customer(gemini: GeminiClient, contents: list[dict[str, Any]], system_instruction: str,
                    hours: WorkingHours, now: datetime) -> AgentResult:
    result = AgentResult(reply="")
    first = _ask(gemini, contents, system_instruction, result)
    result.reply = first.reply
    if first.opt_out:
        result.opt_out = True
        return result
    if first.call_at is None:
        return result
    requested = parse_requested(first.call_at, hours.timezone)
    reason = "unreadable" if requested is None else hours.refusal(requested, now)
    if reason is None:
        assert requested is not None
        result.booked_at = requested
        return result
    result.refused = reason
    slots = hours.next_slots(now)
    offered = "; ".join(human_slot(slot, hours.timezone) for slot in slots)
    # Only what code computed goes into the instruction: an unreadable time is not quoted back.
    asked = human_slot(requested, hours.timezone) if requested else "названное клиентом время"
    retry_instruction = (
        f"{system_instruction}\n\nКлиент просит созвон на {asked}, но {REFUSALS.get(reason, 'это время не подходит')}. "
        "Не подтверждай это время и не бронируй созвон (call = null). "
        "Вежливо предложи одно из свободных окон ниже.\n"
        f"СВОБОДНОЕ ВРЕМЯ: {offered}"
    )
    second = _ask(gemini, contents, retry_instruction, result)
    result.reply = second.reply
    return result
