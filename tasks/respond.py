"""Stage `respond`: the sales agent writes the answer (and maybe books a call) into the outbox.

When the agent judges that the customer asks us to stop writing, the contact is opted out instead
and the one confirmation goes to the outbox."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from clients.gemini import get_client
from db.session import session_scope
from domain.clock import human_datetime
from domain.working_hours import WorkingHours
from pipeline.agent import answer_customer
from pipeline.conversation import commit_reply, reply_context, waiting_contact
from settings import Settings, get_settings
from tasks.app import app
from tasks.base import MessageStageTask
from tasks.locks import contact_turn

log = logging.getLogger(__name__)


def working_hours(settings: Settings) -> WorkingHours:
    start, end = settings.working_hours
    return WorkingHours(timezone=settings.timezone, days=settings.working_days, start_minute=start,
                        end_minute=end, call_minutes=settings.call_minutes)


@app.task(base=MessageStageTask, name="pipeline.respond")
def respond(message_id: int | None) -> int | None:
    if message_id is None:
        return None
    settings = get_settings()
    hours = working_hours(settings)
    with session_scope() as session:
        contact_id = waiting_contact(session, message_id)
    if contact_id is None:
        return None
    with contact_turn(contact_id):
        now = datetime.now(UTC)
        with session_scope() as session:
            context = reply_context(session, message_id, history_limit=settings.history_limit,
                                    business_name=settings.business_name,
                                    current_datetime=human_datetime(now, settings.timezone),
                                    working_hours=f"{hours.describe()} ({settings.timezone})",
                                    kb_budget=settings.kb_token_budget, max_chars=settings.max_message_chars)
            if context is None:  # answered already, or nothing to answer
                return None
        result = answer_customer(get_client(), context.contents, context.system_instruction, hours, now)
        if result.refused:
            log.info("respond contact %s: requested call time refused (%s); slots offered",
                     contact_id, result.refused)
        with session_scope() as session:
            return commit_reply(session, context, result.reply, result.answers, booked_at=result.booked_at,
                                timezone=settings.timezone,
                                opt_out_text=settings.opt_out_confirmation if result.opt_out else None)
