"""Gemini through google-genai: one client per worker process, built after the fork, typed errors.

The SDK's own retries are off: short network retries would stack on Celery's, and 429 must be
retried after the server's `retryDelay`, which only Celery can wait for without blocking a slot.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import httpx2
import pydantic
from google import genai
from google.genai import errors, types

from settings import Settings, get_settings

log = logging.getLogger(__name__)
logging.getLogger("google_genai.models").setLevel(logging.WARNING)  # one "AFC is enabled" per call


class GeminiError(Exception):
    """Base of every model failure."""


class GeminiTransientError(GeminiError):
    """Timeout, network error, 5xx or 429; `retry_after` is the server's hint in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GeminiRejectedError(GeminiError):
    """The request is wrong (400/403/404): retrying the same request won't help."""


class GeminiEmptyAnswerError(GeminiError):
    """The model answered nothing usable: blocked, safety stop, empty text or invalid JSON."""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    output_tokens: int
    total_tokens: int


@dataclass(frozen=True)
class Answer:
    text: str
    usage: Usage
    model: str


def json_object(text: str) -> dict[str, Any]:
    """The JSON object a structured answer holds; a ValueError says what is wrong instead."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not JSON: {text[:80]!r}") from exc
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def retry_delay_seconds(exc: errors.APIError) -> float | None:
    details = exc.details if isinstance(exc.details, dict) else {}
    error = details.get("error") if isinstance(details.get("error"), dict) else {}
    for item in (error or {}).get("details") or []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
            raw = str(item.get("retryDelay", "")).rstrip("s")
            try:
                return float(raw)
            except ValueError:
                return None
    return None


def text_only(contents: list[dict[str, Any]]) -> bool:
    """Contents made of text parts only, in the wire's own shape (role and parts)."""
    return all(isinstance(content, dict) and set(content) <= {"role", "parts"}
               and isinstance(content.get("parts"), list)
               and all(isinstance(part, dict) and set(part) == {"text"} and isinstance(part["text"], str)
                       for part in content["parts"])
               for content in contents)


class GeminiClient:
    def __init__(self, client: genai.Client, model: str) -> None:
        self._client = client
        self.model = model

    def _generate_text(self, model: str, contents: list[dict[str, Any]], system_instruction: str | None,
                       response_schema: dict[str, Any] | None) -> types.GenerateContentResponse:
        """generateContent for text-only contents, with the request written in the wire format and sent
        through the SDK's own API client (its base URL, key header, timeout, HTTP status -> `errors`).

        `models.generate_content` turns contents that are already plain JSON into pydantic models and
        back, and its converter (`_common.get_value_by_path`) tests `key in model`, which walks every
        field of every pydantic object for every key it looks up: about 3 ms of CPU a call, a tenth of
        a worker's time per message (docs/benchmarks.md). The body is byte for byte what the SDK
        sends for the same arguments (tests/unit/test_gemini_client.py compares them at the emulator)."""
        body: dict[str, Any] = {"contents": contents}
        if system_instruction is not None:
            body["systemInstruction"] = {"parts": [{"text": system_instruction}], "role": "user"}
        config: dict[str, Any] = {}
        if response_schema is not None:
            config = {"responseMimeType": "application/json", "responseJsonSchema": response_schema}
        body["generationConfig"] = config
        path = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
        raw = self._client._api_client.request("post", f"{path}:generateContent", body)
        try:
            data = json.loads(raw.body) if raw.body else {}
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise GeminiTransientError(f"Gemini answered 200 with a body that is not a JSON object: "
                                       f"{str(raw.body)[:80]!r}")
        try:
            # As the SDK reads its answers: fields it does not know yet (ones Google adds later) are
            # dropped first, never a validation error.
            return types.GenerateContentResponse._from_response(response=data, kwargs={})
        except pydantic.ValidationError as exc:
            raise GeminiTransientError(f"Gemini answered 200 with a malformed response "
                                       f"({exc.error_count()} problem(s), first at "
                                       f"{'.'.join(str(part) for part in exc.errors()[0]['loc'])})") from exc

    def generate(self, contents: list[dict[str, Any]], *, system_instruction: str | None = None,
                 response_schema: dict[str, Any] | None = None, model: str | None = None) -> Answer:
        """One generateContent call. JSON answers (with a schema) come back as their raw text."""
        chosen = model or self.model
        try:
            if text_only(contents):
                response = self._generate_text(chosen, contents, system_instruction, response_schema)
            else:
                config = types.GenerateContentConfig(
                    system_instruction=system_instruction,
                    automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
                )
                if response_schema is not None:
                    config.response_mime_type = "application/json"
                    config.response_json_schema = response_schema
                response = self._client.models.generate_content(model=chosen, contents=contents,  # type: ignore[arg-type]
                                                                config=config)
        except errors.ClientError as exc:
            if exc.code == 429:
                raise GeminiTransientError(f"Gemini 429 {exc.status}",
                                           retry_after=retry_delay_seconds(exc)) from exc
            raise GeminiRejectedError(f"Gemini {exc.code} {exc.status}: {exc.message}") from exc
        except errors.ServerError as exc:
            raise GeminiTransientError(f"Gemini {exc.code} {exc.status}") from exc
        except errors.APIError as exc:
            raise GeminiTransientError(f"Gemini error {exc.code}") from exc
        except httpx2.TransportError as exc:
            raise GeminiTransientError(f"Gemini transport: {type(exc).__name__}") from exc
        usage_data = response.usage_metadata
        usage = Usage(
            prompt_tokens=(usage_data.prompt_token_count or 0) if usage_data else 0,
            output_tokens=(usage_data.candidates_token_count or 0) if usage_data else 0,
            total_tokens=(usage_data.total_token_count or 0) if usage_data else 0,
        )
        text = response.text
        if not text or not text.strip():
            reason = ""
            if response.prompt_feedback and response.prompt_feedback.block_reason:
                reason = f"blocked: {response.prompt_feedback.block_reason}"
            elif response.candidates and response.candidates[0].finish_reason:
                reason = f"finish reason {response.candidates[0].finish_reason}"
            raise GeminiEmptyAnswerError(f"Gemini returned no text ({reason or 'empty'})")
        return Answer(text=text.strip(), usage=usage, model=chosen)


def build_client(settings: Settings) -> GeminiClient:
    sdk = genai.Client(
        api_key=settings.gemini_api_key,
        http_options=types.HttpOptions(
            base_url=settings.gemini_base_url or None,
            api_version=settings.gemini_api_version,
            timeout=settings.gemini_timeout_ms,
        ),
    )
    return GeminiClient(sdk, settings.gemini_model)


_client: GeminiClient | None = None
_client_pid: int | None = None


def get_client() -> GeminiClient:
    """This process's client. A forked child builds its own: a shared keep-alive socket
    would hand one process's answer to another."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = build_client(get_settings())
        _client_pid = os.getpid()
    return _client
