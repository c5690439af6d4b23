"""The audit of the MCP server's writes: every call of a write tool, dry run, applied or refused, is one
row of `mcp_audit`, written in a transaction of its own so that a refusal (rolled back) is recorded too.

Arguments and results are stored masked: phone numbers (a chat) as in logs, secrets redacted. The
message text is kept: it is the business's own outgoing text, and what an auditor needs to read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from db.models import McpAudit
from db.session import SessionFactory
from infra.logging import SECRET_VALUE, configured_secrets, mask_phone
from mcp_server.tokens import Caller

# What a write came to: written, only previewed, already written by an earlier call with its key,
# refused (a scope, a profile, a gate), or failed on an unexpected error.
APPLIED, DRY_RUN, DUPLICATE, REFUSED, FAILED = "applied", "dry_run", "duplicate", "refused", "failed"
TEXT_KEYS = frozenset({"text", "body"})  # kept as written, secrets aside


def redact_secrets(text: str) -> str:
    for secret in configured_secrets():
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return SECRET_VALUE.sub(lambda match: f"{match.group(1)}{match.group(2)}***", text)


def masked(value: Any, key: str = "") -> Any:
    """`value` as the audit keeps it: every string masked like a log line, the message text only redacted."""
    if isinstance(value, str):
        return redact_secrets(value) if key in TEXT_KEYS else mask_phone(redact_secrets(value))
    if isinstance(value, dict):
        return {name: masked(item, str(name)) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item, key) for item in value]
    return value


def record(sessions: SessionFactory, caller: Caller, tool: str, arguments: dict[str, Any], *, dry_run: bool,
           outcome: str, result: dict[str, Any] | None, now: datetime | None = None) -> None:
    with sessions() as session:
        session.add(McpAudit(token_id=caller.token_id, tool=tool, arguments=masked(arguments), dry_run=dry_run,
                             outcome=outcome, result=None if result is None else masked(result),
                             created_at=now or datetime.now(UTC)))
