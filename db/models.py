"""SQLAlchemy 2.x models: the pipeline's durable state in PostgreSQL.

Every status column holds a `domain.states` enum's value; a CHECK constraint (migration 0009) keeps
it so, and the enum module says which moves between them are allowed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from domain.states import (
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
    check_in,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes; a naive datetime is a bug, refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Profile(Base):
    __tablename__ = "profiles"
    __table_args__ = (CheckConstraint(check_in("provider", Provider), name="ck_profiles_provider"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(20), default=Provider.WAPPI.value)
    profile_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Newest chat time the poll has fully processed; None until the first poll (first start).
    poll_watermark: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_poll_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Unix time of the first poll: customer messages sent before it are history, never answered.
    history_boundary: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Set while Wappi says the profile cannot send (not authorized, not paid, phone not connected):
    # sends are held, not retried into dead letters.
    down_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    down_since: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The provider token as a Fernet token (pipeline/credentials.py), never plaintext; None: the
    # environment's WAPPI_TOKEN.
    credentials: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # Per-profile overrides by variable name, e.g. {"BUSINESS_NAME": "..."} (pipeline/profile_settings.py).
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    disabled_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_by: Mapped[str] = mapped_column(String(200), default="", server_default="")
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Bot API getUpdates offset, written with the update it confirms (migration 0011).
    update_offset: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # When the send-limit warm-up started; None: no warm-up (a number already in use).
    warmup_from: Mapped[datetime | None] = mapped_column(nullable=True)
    # The daily cap on proactive messages tripped: they are held until an operator resumes.
    proactive_tripped_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("profile_id", "phone", name="uq_contacts_profile_phone"),
        # The follow-up sweep's "who went silent after our reply" query reads only this index.
        Index("ix_contacts_awaiting_follow_up", "last_message_at",
              postgresql_where=text("awaiting_follow_up")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(64))
    chat_id: Mapped[str] = mapped_column(String(128))
    first_name: Mapped[str] = mapped_column(String(200), default="")
    full_name: Mapped[str] = mapped_column(String(200), default="")
    push_name: Mapped[str] = mapped_column(String(200), default="")
    business_name: Mapped[str] = mapped_column(String(200), default="")
    is_client: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    classification_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    classification_reasoning: Mapped[str | None] = mapped_column(Text, nullable=True)
    classified_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_message_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Poll cursor: the newest provider message id of this chat already stored.
    last_seen_message_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # The dialog's unread_count when the chat was last read: a late message (written while the
    # customer's phone was offline) sorts before our reply and changes only this.
    last_seen_unread: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_author: Mapped[str | None] = mapped_column(String(10), nullable=True)  # author of the last message
    last_inbound_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # True while the chat ends with our reply and no follow-up chain covers that silence yet.
    awaiting_follow_up: Mapped[bool] = mapped_column(Boolean, default=False)
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_until: Mapped[datetime | None] = mapped_column(nullable=True)
    # When the current burst of messages is due to be answered; read by the poll's overdue check
    # so that a burst whose timer died with its worker is still answered.
    batch_due_at: Mapped[datetime | None] = mapped_column(nullable=True, index=True)
    # The customer blocked the bot or deleted the account: nothing is sent to them again.
    unreachable_at: Mapped[datetime | None] = mapped_column(nullable=True)
    unreachable_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def display_name(self) -> str:
        return self.full_name or self.first_name or self.push_name or self.business_name or ""


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("profile_id", "provider_message_id", name="uq_messages_profile_provider_id"),
        Index("ix_messages_contact_time", "contact_id", "sent_at"),
        Index("ix_messages_status_created", "status", "created_at"),
        CheckConstraint(check_in("status", MessageStatus), name="ck_messages_status"),
        CheckConstraint(check_in("direction", Direction), name="ck_messages_direction"),
        CheckConstraint(check_in("author", Author), name="ck_messages_author"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    provider_message_id: Mapped[str] = mapped_column(String(128))
    direction: Mapped[str] = mapped_column(String(3))  # Direction
    author: Mapped[str] = mapped_column(String(10))  # Author
    type: Mapped[str] = mapped_column(String(32), default="chat")
    text: Mapped[str] = mapped_column(Text, default="")
    is_voice: Mapped[bool] = mapped_column(Boolean, default=False)
    transcription: Mapped[str | None] = mapped_column(Text, nullable=True)
    # MessageStatus; its moves are domain.states.MESSAGE_TRANSITIONS.
    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.RECEIVED)
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # While `received`: when its chain's next stage run is due (stamped at each stage start and at
    # each retry/deferral with its countdown); the recovery sweep restarts it once well past that.
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Inbound: the answer to this message asked for a call (booked, or refused for its time); the
    # dashboard's funnel counts it (migration 0013).
    call_requested_at: Mapped[datetime | None] = mapped_column(nullable=True)


class VoiceMedia(Base):
    """What Wappi said about a voice note's file: its name and size recognise its download, and
    the audio a webhook inlined (at most MAX_AUDIO_BYTES) waits here until it is transcribed."""

    __tablename__ = "voice_media"

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    file_name: Mapped[str] = mapped_column(String(255), default="")
    mime_type: Mapped[str] = mapped_column(String(100), default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes; 0 when Wappi did not say
    # The channel's reference of the file where it downloads by one (a bot's file_id), else ''.
    file_ref: Mapped[str] = mapped_column(String(255), default="", server_default="")
    audio: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Outbox(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_created", "status", "created_at"),
        CheckConstraint(check_in("status", OutboxStatus), name="ck_outbox_status"),
        CheckConstraint(check_in("kind", OutboxKind), name="ck_outbox_kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20), default=OutboxKind.REPLY)  # OutboxKind
    body: Mapped[str] = mapped_column(Text)
    reply_to_provider_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    source_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), nullable=True)
    # OutboxStatus; its moves are domain.states.OUTBOX_TRANSITIONS.
    status: Mapped[str] = mapped_column(String(10), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Wappi's unix time of the newest chat message known before the first send: a delivered copy
    # of this row is at or after it (reconciliation never compares Wappi's clock with ours).
    history_anchor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # When a send call last went to Wappi (our clock): the settle delay counts from it.
    last_send_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # When a deferred row is next due; the recovery sweep leaves rows something still holds.
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    provider_message_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ChatPollFailure(Base):
    """A chat whose history the poll could not read: retried with backoff, reported in /health,
    and no reason for the profile's watermark to wait. The row goes when a read succeeds."""

    __tablename__ = "chat_poll_failures"
    __table_args__ = (UniqueConstraint("profile_id", "chat_id", name="uq_chat_poll_failures_profile_chat"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    chat_id: Mapped[str] = mapped_column(String(128))
    # The dialog as chats/get last showed it, so that a retry needs no chats/get page.
    dialog: Mapped[dict[str, Any]] = mapped_column(default=dict)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    first_failed_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_failed_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_retry_at: Mapped[datetime] = mapped_column(default=utcnow)


class WhitelistEntry(Base):
    __tablename__ = "whitelist"
    __table_args__ = (UniqueConstraint("profile_id", "phone", name="uq_whitelist_profile_phone"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FollowUp(Base):
    __tablename__ = "follow_ups"
    __table_args__ = (
        Index("ix_follow_ups_due", "status", "next_touch_at"),
        Index("uq_follow_ups_active_contact", "contact_id", unique=True,
              postgresql_where=text("status = 'active'")),
        CheckConstraint(check_in("status", FollowUpStatus), name="ck_follow_ups_status"),
        CheckConstraint(f"stop_reason IS NULL OR {check_in('stop_reason', StopReason)}",
                        name="ck_follow_ups_stop_reason"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    # FollowUpStatus (its moves: domain.states.FOLLOW_UP_TRANSITIONS); stop_reason a StopReason.
    status: Mapped[str] = mapped_column(String(12), default=FollowUpStatus.ACTIVE)
    touch_number: Mapped[int] = mapped_column(Integer, default=0)  # touches already sent
    # The bot message whose silence the chain follows up; touches are timed from it.
    anchor_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the next touch is due. A claimed touch moves it forward by a lease, so a lost job is
    # claimed again later; the outbox key (chain, touch) keeps that from sending twice.
    next_touch_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_touch_at: Mapped[datetime | None] = mapped_column(nullable=True)
    stop_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ScheduledCall(Base):
    __tablename__ = "scheduled_calls"
    __table_args__ = (CheckConstraint(check_in("status", CallStatus), name="ck_scheduled_calls_status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    scheduled_at: Mapped[datetime] = mapped_column(index=True)
    timezone: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default=CallStatus.BOOKED)
    notes: Mapped[str] = mapped_column(Text, default="")
    source_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeadLetter(Base):
    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_name: Mapped[str] = mapped_column(String(100), index=True)
    task_id: Mapped[str] = mapped_column(String(64), unique=True)
    args: Mapped[list[Any]] = mapped_column(default=list)
    kwargs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    queue: Mapped[str] = mapped_column(String(40), default="")
    chain: Mapped[list[Any] | None] = mapped_column(nullable=True)
    exception: Mapped[str] = mapped_column(Text, default="")
    traceback: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    first_failed_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_failed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    replay_count: Mapped[int] = mapped_column(Integer, default=0)
    replayed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class HealthSample(Base):
    """The pool's load at one moment, taken every 30 s by beat (`pipeline.sample_health`) and kept
    14 days: the dashboard's health over time (Flower shows only now). One row per 30 s slot."""

    __tablename__ = "health_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sampled_at: Mapped[datetime] = mapped_column(unique=True)
    queue_depths: Mapped[dict[str, Any]] = mapped_column(default=dict)  # queue -> messages waiting
    held: Mapped[int | None] = mapped_column(Integer, nullable=True)  # tasks held by workers (unacked)
    dead_letters: Mapped[int] = mapped_column(Integer, default=0)


class ModelUsage(Base):
    __tablename__ = "model_usage"
    __table_args__ = (CheckConstraint(check_in("purpose", UsagePurpose), name="ck_model_usage_purpose"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    purpose: Mapped[str] = mapped_column(String(20))  # UsagePurpose
    model: Mapped[str] = mapped_column(String(100))
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), nullable=True)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class KnowledgeFile(Base):
    __tablename__ = "kb_files"
    __table_args__ = (UniqueConstraint("base", "path", name="uq_kb_files_base_path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The knowledge base the file belongs to: '' for KB_DIR's, a profile's own KB_DIR otherwise.
    base: Mapped[str] = mapped_column(String(500), default="", server_default="")
    path: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    extractor: Mapped[str] = mapped_column(String(20))
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    indexed_at: Mapped[datetime] = mapped_column(default=utcnow)


class KnowledgeChunk(Base):
    __tablename__ = "kb_chunks"
    __table_args__ = (UniqueConstraint("file_id", "position", name="uq_kb_chunks_file_position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("kb_files.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    tokens: Mapped[int] = mapped_column(Integer)


class McpToken(Base):
    """A bearer token of the MCP server (`celery -A tasks mcp-token`): only its sha256 is stored."""

    __tablename__ = "mcp_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[Any]] = mapped_column(default=list)  # of read, write, admin
    # The profile ids (`profiles.profile_id`) the token may see; None: every profile.
    profiles: Mapped[list[Any] | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)


class McpAudit(Base):
    """One call of an MCP write tool: dry run, applied or refused. Arguments arrive masked."""

    __tablename__ = "mcp_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # None: over stdio, where no token is sent.
    token_id: Mapped[int | None] = mapped_column(ForeignKey("mcp_tokens.id", ondelete="SET NULL"), nullable=True)
    tool: Mapped[str] = mapped_column(String(64))
    arguments: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dry_run: Mapped[bool] = mapped_column(Boolean)
    outcome: Mapped[str] = mapped_column(String(20))
    result: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
