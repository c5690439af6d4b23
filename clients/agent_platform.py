"""Client of an external agent platform that holds the conversation (Agno AgentOS first): one
customer turn in, the agent's reply out, with the platform keeping the history per `session_id`.

The `requests.Session` and base URL are injected, so tests run this exact code against the local
emulator (`emulators.agentos`) over HTTP. Callers never see a `requests` exception, and the API key
never appears in an error, a log line or a repr. A run that did not complete (the platform answers
HTTP 200 with `status` ERROR and the model provider's error text in `content`) is an error, never a
reply: that text must not reach a customer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import requests

from clients.channel import json_int as _int
from clients.channel import json_str as _str

KEY_MASK = "<api-key>"
EXCERPT_CHARS = 2000  # of a response body, kept on errors so a dead letter shows what came back
DETAIL_CHARS = 300
COMPLETED = "COMPLETED"


class AgentPlatformError(Exception):
    """Base of every agent platform failure. `status_code` is the HTTP status (None when no answer
    came), `detail` the platform's own explanation, `response_excerpt` the body as it came back, cut
    to ~2000 characters; all three with the API key masked."""

    def __init__(self, message: str, *, status_code: int | None = None, detail: str = "",
                 response_excerpt: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail
        self.response_excerpt = response_excerpt


class AgentTransientError(AgentPlatformError):
    """A timeout, a connection error, a 5xx, a 429 or a busy session: worth retrying later with the
    same `session_id`. `retry_after` is the platform's hint in seconds (a floor of the backoff),
    None when it gave none."""

    def __init__(self, message: str, *, status_code: int | None = None, detail: str = "",
                 response_excerpt: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, status_code=status_code, detail=detail, response_excerpt=response_excerpt)
        self.retry_after = retry_after


class AgentBusyError(AgentTransientError):
    """409: another turn is running in this session (or an idempotency key was reused). The other
    turn ends by itself, so this is retried, not given up."""


class AgentAuthError(AgentPlatformError):
    """401/403: the key is missing, wrong or lacks a scope; needs an operator, not a retry."""


class AgentNotFoundError(AgentPlatformError):
    """404: an unknown agent id, or a session that belongs to another user."""


class AgentRejectedError(AgentPlatformError):
    """Any other 4xx (400 guardrail or bad input, 422 validation): retrying won't help."""


class AgentRunError(AgentPlatformError):
    """HTTP 200 but no usable reply: the run's `status` is not COMPLETED (ERROR, PAUSED,
    CANCELLED, ...), its `content` is missing, empty or not a string, or the body is not JSON.
    `run_status` is the run's status as sent ("" when there was none); whatever `content` held is
    only in `detail`/`response_excerpt`, for an operator."""

    def __init__(self, message: str, *, status_code: int | None = None, detail: str = "",
                 response_excerpt: str = "", run_status: str = "", run_id: str = "", session_id: str = "") -> None:
        super().__init__(message, status_code=status_code, detail=detail, response_excerpt=response_excerpt)
        self.run_status = run_status
        self.run_id = run_id
        self.session_id = session_id


@dataclass(frozen=True)
class AgentReply:
    """A completed run. `text` is the reply for the customer; `raw_excerpt` the body cut to ~2000
    characters (it can hold the agent's system prompt and history: not for customers)."""

    text: str
    run_id: str
    session_id: str
    status: str
    input_tokens: int
    output_tokens: int
    raw_excerpt: str


def _retry_after(header: str | None) -> float | None:
    """`Retry-After` in seconds or as an HTTP date; None when absent or unreadable."""
    if not header:
        return None
    text = header.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _detail_text(detail: Any) -> str:
    """FastAPI's `detail`: a string, or a list of validation errors (`loc`, `msg`)."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, Mapping):
                location = ".".join(str(part) for part in item.get("loc", ()) if part is not None)
                parts.append(f"{location}: {_str(item.get('msg'))}".strip(": "))
        return "; ".join(parts)
    return "" if detail is None else json.dumps(detail, ensure_ascii=False)


class AgentPlatformClient:
    """One agent platform. Nothing is retried inside the client: the caller's task decides, and a
    retried turn may add the customer's message to the session's history once more."""

    def __init__(self, session: requests.Session, base_url: str, api_key: str | None, *, timeout: float = 60.0,
                 path_template: str = "/agents/{agent_id}/runs") -> None:
        if "{agent_id}" not in path_template:
            raise ValueError("path_template must contain {agent_id}")
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key or None
        self._timeout = timeout
        self._path_template = path_template

    def __repr__(self) -> str:
        key = KEY_MASK if self._api_key else "None"
        return f"AgentPlatformClient({self._base_url!r}, api_key={key})"

    def _mask(self, text: str) -> str:
        return text.replace(self._api_key, KEY_MASK) if self._api_key else text

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _excerpt(self, response: requests.Response) -> str:
        return self._mask(response.text[:EXCERPT_CHARS])

    # -- API -------------------------------------------------------------------------------
    def run(self, agent_id: str, message: str, *, session_id: str, user_id: str) -> AgentReply:
        """One turn: `message` into the conversation `session_id` (owned by `user_id`); the agent's
        reply, or a typed error."""
        url = self._base_url + self._path_template.format(agent_id=quote(agent_id, safe=""))
        form = {"message": message, "stream": "false", "session_id": session_id, "user_id": user_id}
        where = f"agent {agent_id}"
        try:
            response = self._session.post(url, data=form, headers=self._headers(), timeout=self._timeout,
                                          allow_redirects=False)
        except requests.Timeout:
            # `from None`: a logged traceback prints the chain; only the type and our text are kept.
            raise AgentTransientError(f"{where}: timed out after {self._timeout}s") from None
        except requests.RequestException as exc:
            reason = self._mask(str(exc))[:DETAIL_CHARS]
            raise AgentTransientError(f"{where}: {type(exc).__name__}", detail=reason) from None
        if not 200 <= response.status_code < 300:
            raise self._http_error(where, response)
        return self._reply(where, response)

    def health(self) -> bool:
        """Whether the platform answers `GET /health` with `{"status": "ok"}`; never raises."""
        try:
            response = self._session.get(f"{self._base_url}/health", headers=self._headers(), timeout=self._timeout)
            body = response.json()
        except (requests.RequestException, ValueError):
            return False
        return response.status_code == 200 and isinstance(body, Mapping) and body.get("status") == "ok"

    # -- decoding --------------------------------------------------------------------------
    def _http_error(self, where: str, response: requests.Response) -> AgentPlatformError:
        status = response.status_code
        try:
            payload = response.json()
        except ValueError:
            payload = None
        detail = _detail_text(payload.get("detail")) if isinstance(payload, Mapping) else ""
        detail = self._mask(detail or response.text[:DETAIL_CHARS]).strip()[:DETAIL_CHARS]
        fields: dict[str, Any] = {"status_code": status, "detail": detail,
                                  "response_excerpt": self._excerpt(response)}
        message = f"{where}: HTTP {status} {detail}".strip()
        if status == 429 or status >= 500:
            return AgentTransientError(message, retry_after=_retry_after(response.headers.get("Retry-After")),
                                       **fields)
        if status == 409:
            return AgentBusyError(message, retry_after=_retry_after(response.headers.get("Retry-After")), **fields)
        if status in (401, 403):
            return AgentAuthError(message, **fields)
        if status == 404:
            return AgentNotFoundError(message, **fields)
        return AgentRejectedError(message, **fields)

    def _reply(self, where: str, response: requests.Response) -> AgentReply:
        excerpt = self._excerpt(response)
        try:
            run = response.json()
        except ValueError:
            run = None
        if not isinstance(run, Mapping):
            content_type = response.headers.get("Content-Type", "")
            raise AgentRunError(f"{where}: HTTP {response.status_code} body is not a JSON object ({content_type})",
                                status_code=response.status_code, response_excerpt=excerpt)
        status = _str(run.get("status"))
        run_id, session_id = _str(run.get("run_id")), _str(run.get("session_id"))
        content = run.get("content")
        ids: dict[str, Any] = {"status_code": response.status_code, "response_excerpt": excerpt, "run_status": status,
               "run_id": run_id, "session_id": session_id}
        if status != COMPLETED:
            # The content of a failed run is the provider's error text: kept for an operator only.
            shown = content if isinstance(content, str) else _detail_text(content)
            raise AgentRunError(f"{where}: run {run_id or '?'} ended {status or 'without a status'}",
                                detail=self._mask(shown)[:DETAIL_CHARS], **ids)
        if not isinstance(content, str) or not content.strip():
            kind = "missing" if content is None else ("empty" if isinstance(content, str) else type(content).__name__)
            raise AgentRunError(f"{where}: run {run_id or '?'} completed with {kind} content", **ids)
        metrics = run.get("metrics")
        metrics = metrics if isinstance(metrics, Mapping) else {}
        return AgentReply(text=content.strip(), run_id=run_id, session_id=session_id, status=status,
                          input_tokens=_int(metrics.get("input_tokens")),
                          output_tokens=_int(metrics.get("output_tokens")), raw_excerpt=excerpt)


def build_client(base_url: str, api_key: str | None, *, timeout: float = 60.0,
                 path_template: str = "/agents/{agent_id}/runs") -> AgentPlatformClient:
    return AgentPlatformClient(requests.Session(), base_url, api_key, timeout=timeout, path_template=path_template)
