"""Model usage: the tokens of every model call, per purpose and contact, for /stats and the bill."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from clients.gemini import Answer
from db.models import ModelUsage
from db.session import execute_core
from domain.states import UsagePurpose

# Built once, sent at once (no unit of work): a row per model call.
INSERT_USAGE = insert(cast(Table, ModelUsage.__table__))


def record_usage(session: Session, purpose: UsagePurpose, answer: Answer, contact_id: int | None) -> None:
    execute_core(session, INSERT_USAGE, {"purpose": purpose, "model": answer.model, "contact_id": contact_id,
                                         "prompt_tokens": answer.usage.prompt_tokens,
                                         "output_tokens": answer.usage.output_tokens,
                                         "total_tokens": answer.usage.total_tokens})
