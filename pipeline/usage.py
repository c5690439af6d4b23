"""Model usage: the tokens of every model call, per purpose and contact, for /stats and the bill."""

from __future__ import annotations

from sqlalchemy.orm import Session

from clients.gemini import Answer
from db.models import ModelUsage
from domain.states import UsagePurpose


def record_usage(session: Session, purpose: UsagePurpose, answer: Answer, contact_id: int | None) -> None:
    session.add(ModelUsage(purpose=purpose, model=answer.model, contact_id=contact_id,
                           prompt_tokens=answer.usage.prompt_tokens,
                           output_tokens=answer.usage.output_tokens,
                           total_tokens=answer.usage.total_tokens))
