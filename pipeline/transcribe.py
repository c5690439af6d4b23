"""Stage `transcribe`: a voice note becomes text before it is classified and answered.

The burst's newest message carries the chain, and every voice note of the burst is transcribed
here: from the audio a webhook inlined, or downloaded through Wappi (one download per profile at a
time). A voice note that fails for good costs only itself: it is marked failed and gets one
"please write" quoting it, and the chain goes on with the rest of the burst.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from clients.channel import Channel, MediaRef, MediaTooLargeError
from clients.gemini import Answer, GeminiClient, GeminiEmptyAnswerError
from db.models import Message, Profile
from db.session import SessionFactory
from domain.states import Direction, MessageStatus, OutboxKind, UsagePurpose
from pipeline.locks import held, lock_seconds
from pipeline.outbox import voice_fallback_key, write_outbox
from pipeline.usage import record_usage
from pipeline.voice_media import StoredVoice, drop_audio, stored_voice
from prompts import load
from settings import Settings

log = logging.getLogger(__name__)

MEDIA_LOCK_SECONDS = lock_seconds("pipeline.transcribe")


class AudioTooLarge(Exception):
    """The voice note is bigger than MAX_AUDIO_BYTES; it is not sent to the model."""


@dataclass(frozen=True)
class Transcript:
    text: str
    answer: Answer
    seconds: float
    size: int
    downloaded: bool


def audio_mime(mime_type: str) -> str:
    """WhatsApp says `audio/ogg; codecs=opus`; Gemini wants the bare type."""
    base = mime_type.split(";", 1)[0].strip().lower()
    return base if base.startswith("audio/") else "audio/ogg"


def check_size(provider_message_id: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise AudioTooLarge(f"voice note {provider_message_id} is {size} bytes (limit {max_bytes})")


def transcribe_voice(wappi: Channel, gemini: GeminiClient, provider_message_id: str, *, model: str,
                     max_bytes: int, stored: StoredVoice | None = None) -> Transcript:
    """Transcribe from the inline audio when intake kept it; download only when it did not."""
    started = time.monotonic()
    stored = stored or StoredVoice(ref=MediaRef(), inline=None)
    check_size(provider_message_id, stored.ref.size, max_bytes)  # known too big: no download
    media = stored.inline or wappi.download_media(provider_message_id, stored.ref)
    check_size(provider_message_id, len(media.data), max_bytes)
    contents = [{"role": "user", "parts": [
        {"inline_data": {"mime_type": audio_mime(media.mime_type or stored.ref.mime_type), "data": media.data}},
        {"text": load("transcribe")},
    ]}]
    answer = gemini.generate(contents, model=model)
    text = answer.text.strip()
    if not text:
        raise GeminiEmptyAnswerError("the transcript is empty")
    return Transcript(text=text, answer=answer, seconds=time.monotonic() - started, size=len(media.data),
                      downloaded=stored.inline is None)


def store_transcript(session: Session, message_id: int, contact_id: int, transcript: Transcript) -> None:
    session.execute(update(Message).where(Message.id == message_id)
                    .values(transcription=transcript.text, is_voice=True))
    drop_audio(session, message_id)
    record_usage(session, UsagePurpose.TRANSCRIBE, transcript.answer, contact_id)


def pending_voice_notes(session: Session, contact_id: int, up_to: int) -> list[tuple[int, str]]:
    """The burst's voice notes still to transcribe, oldest first: (row id, provider id)."""
    return [(row.id, row.provider_message_id) for row in session.scalars(select(Message).where(
        Message.contact_id == contact_id, Message.status == MessageStatus.RECEIVED, Message.is_voice.is_(True),
        Message.transcription.is_(None), Message.id <= up_to).order_by(Message.id))]


def burst_carrier(session: Session, contact_id: int, up_to: int) -> int | None:
    """The newest message of the burst still to answer once its voice notes are handled: the
    chain goes on with it (a failed voice note gives its place to the burst's texts)."""
    return session.scalar(select(Message.id).where(
        Message.contact_id == contact_id, Message.direction == Direction.IN,
        Message.status == MessageStatus.RECEIVED,
        Message.id <= up_to).order_by(Message.id.desc()).limit(1))


@dataclass(frozen=True)
class VoiceBurst:
    """The voice notes a chain's message carries: (row id, provider id) each, oldest first."""

    provider_profile: str
    contact_id: int
    pending: list[tuple[int, str]]


def voice_burst(session: Session, message_id: int) -> VoiceBurst | None:
    """What `transcribe` has to do for this chain's message; None when it needs no answer any more."""
    message = session.get(Message, message_id)
    if message is None or message.status != MessageStatus.RECEIVED:
        return None
    profile = session.get(Profile, message.profile_id)
    assert profile is not None
    return VoiceBurst(provider_profile=profile.profile_id, contact_id=message.contact_id,
                      pending=pending_voice_notes(session, message.contact_id, message_id))


def transcribe_note(wappi: Channel, gemini: GeminiClient, provider_message_id: str, stored: StoredVoice, *,
                    model: str, max_bytes: int) -> Transcript:
    """Transcribe one note. A download holds the profile's media lock: Wappi has crossed the
    answers of concurrent downloads (and the client checks that the file is this note's)."""
    lock: AbstractContextManager[None] = nullcontext()
    if stored.inline is None:
        lock = held("media-lock", wappi.profile_id, timeout=MEDIA_LOCK_SECONDS, busy_retry=1.0, what="profile media")
    with lock:
        return transcribe_voice(wappi, gemini, provider_message_id, model=model, max_bytes=max_bytes, stored=stored)


def run_transcribe(sessions: SessionFactory, wappi_for: Callable[[str], Channel], gemini: GeminiClient,
                   message_id: int,
                   settings: Settings, *, fails_for_good: Callable[[int, Exception], bool],
                   enqueue_send: Callable[[int | None], None]) -> int | None:
    """Transcribe every voice note of the burst `message_id` carries; returns the message the chain
    goes on with (a failed note gives its place to the burst's texts), or None when nothing is left.

    A note over MAX_AUDIO_BYTES is given up at once. For any other failure `fails_for_good(voice_id,
    exc)` decides (the task's retry policy): False re-raises it, so the task retries; True gives the
    note up and goes on. A note given up gets one "please write", handed to `enqueue_send` after its
    commit. The audio is fetched and the model answers outside any transaction."""
    with sessions() as session:
        burst = voice_burst(session, message_id)
    if burst is None:
        return None
    wappi = wappi_for(burst.provider_profile)
    for voice_id, provider_id in burst.pending:
        with sessions() as session:
            stored = stored_voice(session, voice_id)
        try:
            transcript = transcribe_note(wappi, gemini, provider_id, stored, model=settings.gemini_transcribe_model,
                                         max_bytes=settings.max_audio_bytes)
        except (AudioTooLarge, MediaTooLargeError) as exc:  # known too big, or found so while streaming
            log.warning("transcribe message %s: %s; asking the customer to write", voice_id, exc)
        except Exception as exc:
            if not fails_for_good(voice_id, exc):
                raise
            log.error("transcribe message %s failed for good (%s: %s); asking the customer to write",
                      voice_id, type(exc).__name__, exc)
        else:
            log.info("transcribed message %s: %d bytes (%s) in %.0f ms", voice_id, transcript.size,
                     "downloaded" if transcript.downloaded else "inline", transcript.seconds * 1000)
            with sessions() as session:
                store_transcript(session, voice_id, burst.contact_id, transcript)
            continue
        with sessions() as session:
            notice = give_up(session, voice_id, settings.voice_fallback_text)
        enqueue_send(notice)
    with sessions() as session:
        return burst_carrier(session, burst.contact_id, message_id)


def is_pending_voice(session: Session, message_id: int) -> bool:
    message = session.get(Message, message_id)
    return message is not None and message.is_voice and not message.transcription


def give_up(session: Session, voice_id: int, text: str) -> int | None:
    """One polite message asking the customer to write instead, quoting this voice note; the key
    keeps it to one per note. The note is marked failed: it is not answered, nor swept up again.
    Returns the outbox id while unsent."""
    voice = session.get(Message, voice_id)
    if voice is None:
        return None
    outbox_id = write_outbox(session, profile_id=voice.profile_id, contact_id=voice.contact_id,
                             key=voice_fallback_key(voice.id), kind=OutboxKind.NOTICE, body=text,
                             reply_to=voice.provider_message_id, source_message_id=voice.id)
    session.execute(update(Message).where(Message.id == voice.id,
                                          Message.status.in_((MessageStatus.RECEIVED, MessageStatus.FAILED)))
                    .values(status=MessageStatus.FAILED))
    drop_audio(session, voice.id)
    return outbox_id
