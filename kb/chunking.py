"""Chunks and token estimates: pure functions, no I/O."""

from __future__ import annotations

import re

# Gemini spends about one token per 3 characters of Russian text; estimating high keeps the
# prompt inside its budget.
CHARS_PER_TOKEN = 3


def estimate_tokens(text: str) -> int:
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def split_chunks(text: str, max_chars: int = 500) -> list[str]:
    """Whole lines grouped into chunks of at most `max_chars` (a longer line is cut at words)."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for raw in text.splitlines():
        line = re.sub(r"\s+", " ", raw).strip()
        if not line:
            continue
        pieces = [line]
        if len(line) > max_chars:
            pieces, piece = [], ""
            for word in line.split(" "):
                if piece and len(piece) + 1 + len(word) > max_chars:
                    pieces.append(piece)
                    piece = word
                else:
                    piece = f"{piece} {word}".strip()
            pieces.append(piece)
        for piece in pieces:
            if current and size + 1 + len(piece) > max_chars:
                chunks.append("\n".join(current))
                current, size = [], 0
            current.append(piece)
            size += len(piece) + 1
    if current:
        chunks.append("\n".join(current))
    return chunks
