"""One vocabulary of states: the enums, their transition maps, and the database's CHECK constraints
agree, and the database refuses a value outside them."""

from __future__ import annotations

import re
from enum import StrEnum

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from db.session import get_engine
from domain.states import (
    FOLLOW_UP_TRANSITIONS,
    MESSAGE_INITIAL,
    MESSAGE_TRANSITIONS,
    OUTBOX_TRANSITIONS,
    Author,
    CallStatus,
    Direction,
    FollowUpStatus,
    MessageStatus,
    OutboxKind,
    OutboxStatus,
    Provider,
    StopReason,
    UsagePurpose,
)

CONSTRAINTS: dict[str, type[StrEnum]] = {
    "ck_messages_status": MessageStatus, "ck_messages_direction": Direction, "ck_messages_author": Author,
    "ck_outbox_status": OutboxStatus, "ck_outbox_kind": OutboxKind, "ck_follow_ups_status": FollowUpStatus,
    "ck_follow_ups_stop_reason": StopReason, "ck_scheduled_calls_status": CallStatus,
    "ck_model_usage_purpose": UsagePurpose, "ck_profiles_provider": Provider,
}


@pytest.mark.parametrize("name", sorted(CONSTRAINTS))
def test_the_migrated_check_constraint_allows_exactly_the_enum(database: str, name: str) -> None:
    with get_engine().connect() as connection:
        definition = connection.execute(sa.text(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = :name"), {"name": name}).scalar()
    assert definition is not None, f"{name} is missing: run the migrations"
    allowed = set(re.findall(r"'([^']*)'", definition))
    assert allowed == {member.value for member in CONSTRAINTS[name]}


def test_the_database_refuses_a_status_outside_the_lifecycle(database: str) -> None:
    with pytest.raises(IntegrityError, match="ck_outbox_status"), get_engine().begin() as connection:
        profile_id = connection.execute(sa.text(
            "INSERT INTO profiles (provider, profile_id, name, active, created_at) "
            "VALUES ('wappi', 'ck-test-profile', '', true, now()) RETURNING id")).scalar()
        contact_id = connection.execute(sa.text(
            "INSERT INTO contacts (profile_id, phone, chat_id, first_name, full_name, push_name, business_name, "
            "awaiting_follow_up, opted_out, created_at, updated_at) VALUES (:profile, '77000000001', "
            "'77000000001@c.us', '', '', '', '', false, false, now(), now()) RETURNING id"),
            {"profile": profile_id}).scalar()
        connection.execute(sa.text(
            "INSERT INTO outbox (profile_id, contact_id, idempotency_key, kind, body, status, attempts, "
            "created_at, updated_at) VALUES (:profile, :contact, 'ck-test', 'reply', 'x', 'delivered', 0, "
            "now(), now())"), {"profile": profile_id, "contact": contact_id})


@pytest.mark.parametrize(("transitions", "initial"), [
    (MESSAGE_TRANSITIONS, MESSAGE_INITIAL),
    (OUTBOX_TRANSITIONS, frozenset({OutboxStatus.PENDING})),
    (FOLLOW_UP_TRANSITIONS, frozenset({FollowUpStatus.ACTIVE})),
])
def test_every_state_of_a_lifecycle_is_reachable_from_where_rows_start(
        transitions: dict[StrEnum, frozenset[StrEnum]], initial: frozenset[StrEnum]) -> None:
    enum = type(next(iter(initial)))
    reached = set(initial)
    frontier = list(initial)
    while frontier:
        for target in transitions.get(frontier.pop(), frozenset()):
            assert isinstance(target, enum)
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(enum)
