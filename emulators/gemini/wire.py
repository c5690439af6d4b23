"""The Gemini REST wire format: Google RPC error bodies, generateContent answers with their
usage metadata, and the helpers that read the request's camelCase or snake_case fields."""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from typing import Any

JSON_CONTENT_TYPE = "application/json; charset=UTF-8"

RPC_STATUS = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission."),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "The operation was aborted."),
    429: (
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report the issue.",
    ),
    501: ("UNIMPLEMENTED", "Method not implemented."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
}


def pick(mapping: dict[str, Any], *keys: str) -> Any:
    """Return the first present key: the API accepts both camelCase and snake_case spellings."""
    for key in keys:
        if key in mapping:
            return mapping[key]
    return None


def decode_base64(data: str) -> bytes:
    """Decode either base64 alphabet, with or without padding; garbage decodes to b""."""
    cleaned = "".join(data.split()).replace("+", "-").replace("/", "_").rstrip("=")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.urlsafe_b64decode(cleaned)
    except (binascii.Error, ValueError):
        return b""


def _parse_seconds(delay: str) -> float | None:
    try:
        return float(delay.strip().rstrip("s"))
    except ValueError:
        return None


def error_body(code: int, message: str | None = None, retry_delay: str | None = None) -> dict[str, Any]:
    """Google RPC error body, as the real API returns it."""
    status, default_message = RPC_STATUS.get(code, ("UNKNOWN", "Unknown error."))
    text = message or default_message
    error: dict[str, Any] = {"code": code, "message": text, "status": status}
    if code == 429 and retry_delay:
        seconds = _parse_seconds(retry_delay)
        if message is None and seconds is not None:
            error["message"] = f"{text} Please retry in {seconds:.1f}s."
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": retry_delay,
            }
        ]
    return {"error": error}


def response_id() -> str:
    return secrets.token_hex(12)


def usage_metadata(prompt_chars: int, answer: str | None) -> dict[str, Any]:
    """Token counts as a quarter of the characters (at least one for the prompt)."""
    prompt = max(prompt_chars // 4, 1)
    candidates = max(len(answer) // 4, 1) if answer is not None else 0
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates,
        "thoughtsTokenCount": 0,
        "cachedContentTokenCount": 0,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }


def text_response(model: str, prompt_chars: int, text: str | None, finish_reason: str = "STOP") -> dict[str, Any]:
    """One candidate with `text` (none when ``None``: a stop without content)."""
    candidate: dict[str, Any] = {"finishReason": finish_reason, "index": 0}
    if text is not None:
        candidate["content"] = {"role": "model", "parts": [{"text": text}]}
    return {
        "candidates": [candidate],
        "usageMetadata": usage_metadata(prompt_chars, text),
        "modelVersion": model,
        "responseId": response_id(),
    }


def blocked_response(model: str, prompt_chars: int, block_reason: str) -> dict[str, Any]:
    """A prompt the safety filters blocked: feedback and no candidates."""
    return {
        "promptFeedback": {"blockReason": block_reason},
        "usageMetadata": usage_metadata(prompt_chars, None),
        "modelVersion": model,
        "responseId": response_id(),
    }


@dataclass(frozen=True)
class RawBody:
    """A response body sent byte for byte, not as JSON: what a proxy or a broken gateway answers."""

    text: str
    content_type: str = "text/html; charset=utf-8"
