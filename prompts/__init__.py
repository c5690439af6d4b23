"""Prompt texts (Russian) with named placeholders, loaded and checked once at start-up.

A placeholder is `{name}`. Each prompt declares the placeholders it must contain; a missing file
or placeholder stops the process with a message naming it. Other braces (JSON examples) are left
alone, so prompts need no escaping.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from prompts.markers import KB_END, KB_START

PROMPTS_DIR = Path(__file__).resolve().parent
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")

# prompt name -> placeholders it must contain. None of them carries text the customer chose (names,
# messages): that goes to the model as user content (see pipeline.history.contact_data), so a
# system instruction is the same for every contact.
# A knowledge base is always framed by {kb_start} and {kb_end}.
REQUIRED: dict[str, frozenset[str]] = {
    "moderator": frozenset({"business_name"}),
    "sales_agent": frozenset({"approach", "business_name", "current_datetime", "working_hours", "knowledge_base",
                              "kb_start", "kb_end"}),
    "approach_lead": frozenset(),
    "approach_undecided": frozenset(),
    "transcribe": frozenset(),
    "follow_up": frozenset({"business_name", "touch_number", "current_datetime", "hours_since", "knowledge_base",
                            "kb_start", "kb_end"}),
    # What we ask an external agent (REPLY_AGENT=agno) for a follow-up touch, in the chat's session.
    "follow_up_external": frozenset({"touch_number", "touch_total", "hours_since"}),
}
# Placeholders render() fills itself: the markers of prompts.markers, whose text lives only there.
MARKERS: dict[str, str] = {"kb_start": KB_START, "kb_end": KB_END}


class PromptError(Exception):
    """A prompt file is missing or lacks a placeholder; the message names both."""


@cache
def load(name: str) -> str:
    if name not in REQUIRED:
        raise PromptError(f"unknown prompt {name!r}")
    path = PROMPTS_DIR / f"{name}.txt"
    if not path.is_file():
        raise PromptError(f"prompt file {path} is missing")
    text = path.read_text(encoding="utf-8")
    missing = REQUIRED[name] - set(PLACEHOLDER.findall(text))
    if missing:
        raise PromptError(f"prompt {path.name} lacks placeholder(s): "
                          + ", ".join("{" + item + "}" for item in sorted(missing)))
    return text


def load_all() -> None:
    """Check every prompt; called at process start."""
    for name in REQUIRED:
        load(name)


def render(name: str, **values: str) -> str:
    template = load(name)
    unknown = REQUIRED[name] - values.keys() - MARKERS.keys()
    if unknown:
        raise PromptError(f"prompt {name}: no value for " + ", ".join(sorted(unknown)))
    filled = {**values, **MARKERS}
    return PLACEHOLDER.sub(lambda match: filled.get(match.group(1), match.group(0)), template)
