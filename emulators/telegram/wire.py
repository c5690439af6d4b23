"""The Bot API wire format: parameters from query string, form or JSON, and the two envelopes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from emulators.server import Response, json_response
from emulators.telegram.exceptions import BotApiError, EmulatorError
from emulators.telegram.models import JSON

STATUS_PHRASES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                  409: "Conflict", 429: "Too Many Requests", 500: "Internal Server Error",
                  502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def split_target(target: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(target)
    return parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))


def ok(result: Any, description: str | None = None) -> Response:
    body: JSON = {"ok": True, "result": result}
    if description:
        body["description"] = description
    return json_response(200, body)


def failure(error: BotApiError) -> Response:
    body: JSON = {"ok": False, "error_code": error.error_code, "description": error.description}
    if error.parameters:
        body["parameters"] = error.parameters
    return json_response(error.error_code, body)


def status_error(status: int) -> BotApiError:
    """What a failing server or the proxy before it answers (a 5xx with a Bot API body)."""
    return BotApiError(status, STATUS_PHRASES.get(status, "Internal Server Error"))


def params(query: Mapping[str, str], headers: Mapping[str, str], body: bytes) -> JSON:
    """A method's parameters: the query string, then the body (JSON or form) over it."""
    merged: JSON = dict(query)
    if not body:
        return merged
    content_type = headers.get("content-type", "").lower()
    if "application/json" in content_type:
        try:
            decoded = json.loads(body)
        except ValueError:
            raise BotApiError(400, "Bad Request: can't parse JSON object") from None
        if not isinstance(decoded, dict):
            raise BotApiError(400, "Bad Request: JSON object expected")
        merged.update(decoded)
    elif "application/x-www-form-urlencoded" in content_type:
        merged.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return merged


def int_param(values: Mapping[str, Any], name: str, default: int | None = None) -> int | None:
    value = values.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise BotApiError(400, f"Bad Request: field \"{name}\" must be of type Integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise BotApiError(400, f"Bad Request: field \"{name}\" must be of type Integer")


def bool_param(values: Mapping[str, Any], name: str) -> bool:
    value = values.get(name)
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return value is True


def json_param(values: Mapping[str, Any], name: str) -> Any:
    """A structured parameter: as is from JSON, JSON-encoded in a query string or form."""
    value = values.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise BotApiError(400, f"Bad Request: can't parse {name} JSON object") from None
    return value


def control_body(raw: bytes) -> JSON:
    if not raw:
        return {}
    try:
        decoded = json.loads(raw)
    except ValueError:
        raise EmulatorError("body is not JSON") from None
    if not isinstance(decoded, dict):
        raise EmulatorError("JSON object body is required")
    return decoded
