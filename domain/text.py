"""Text as it may be stored and shown: control characters out, every other character intact."""

from __future__ import annotations

import re

# C0 controls except \t and \n, DEL and the C1 controls. PostgreSQL refuses NUL in text, and the
# others are invisible noise to a reader and to the model. Format characters (RTL marks, joiners,
# BOM) and line/paragraph separators stay: they carry meaning in real messages.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # a lone surrogate (JSON allows it) cannot be encoded


def clean_text(text: str) -> str:
    return _SURROGATE.sub("\ufffd", _CONTROL.sub("", text))
