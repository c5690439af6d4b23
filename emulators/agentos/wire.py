"""The AgentOS wire format as FastAPI renders it: form bodies in (urlencoded or multipart), the
``{"detail": ...}`` error body and the 422 validation list out, the ``Retry-After`` header, and
Server-Sent Events for a streamed run."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from emulators.agentos.exceptions import AgentOSHttpError, EmulatorError
from emulators.agentos.models import JSON
from emulators.agentos.service import HeaderResponse
from emulators.server import JSON_CONTENT_TYPE, Response, json_response

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "on"})  # pydantic's lax booleans
FALSE_WORDS = frozenset({"0", "false", "f", "no", "n", "off"})


def split_target(target: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(target)
    return parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))


def form(headers: Mapping[str, str], body: bytes) -> tuple[dict[str, str], list[str]]:
    """The text fields of a form body and the names of its files. Any other content type (JSON
    above all) reads as an empty form, as Starlette's `request.form()` does: the route then finds
    `message` missing and answers 422."""
    content_type = headers.get("content-type", "")
    lowered = content_type.lower()
    if lowered.startswith("application/x-www-form-urlencoded"):
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)), []
    if lowered.startswith("multipart/form-data"):
        return _multipart(content_type, body)
    return {}, []


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, str], list[str]]:
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.defects:
        raise AgentOSHttpError(400, "There was an error parsing the body")
    fields: dict[str, str] = {}
    files: list[str] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise AgentOSHttpError(400, "There was an error parsing the body")
        filename = part.get_filename()
        if filename is not None:
            files.append(filename)  # the emulator reads text fields only; files are noted, not read
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        fields[name] = data.decode(part.get_content_charset() or "utf-8", "replace")
    return fields, files


def missing(field: str) -> JSON:
    return {"type": "missing", "loc": ["body", field], "msg": "Field required", "input": None}


def bool_field(fields: Mapping[str, str], name: str, default: bool) -> tuple[bool, JSON | None]:
    """A form boolean as pydantic reads it, or the 422 item of an unreadable one. An empty value
    is an omitted one (FastAPI treats an empty form field as missing)."""
    value = fields.get(name, "")
    if value == "":
        return default, None
    lowered = value.strip().lower()
    if lowered in TRUE_WORDS:
        return True, None
    if lowered in FALSE_WORDS:
        return False, None
    return default, {"type": "bool_parsing", "loc": ["body", name],
                     "msg": "Input should be a valid boolean, unable to interpret input", "input": value}


def error(exc: AgentOSHttpError) -> Response:
    body = json.dumps({"detail": exc.detail}, ensure_ascii=False).encode("utf-8")
    headers: tuple[tuple[str, str], ...] = ()
    if exc.retry_after is not None:
        headers = (("Retry-After", str(exc.retry_after)),)
    return HeaderResponse(exc.status, body, JSON_CONTENT_TYPE, headers)


def ok(payload: Any) -> Response:
    return json_response(200, payload)


def sse(events: Iterable[JSON]) -> Response:
    """``event: <Name>`` and ``data: <json>`` per frame, a blank line after each. The body goes out
    in one write: a client reads the same frames it would read from a stream."""
    frames = [f"event: {event['event']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n" for event in events]
    return Response(200, "".join(frames).encode("utf-8"), SSE_CONTENT_TYPE)


def control_body(raw: bytes) -> Any:
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise EmulatorError("body is not JSON") from None
