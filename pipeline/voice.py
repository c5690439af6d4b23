"""Voice notes: take the audio a webhook inlined, or download it through Wappi; transcribe it with
Gemini; store the text on the message.

Audio never travels in a Celery message. Inline audio (at most MAX_AUDIO_BYTES) waits in
`voice_media` only until its note is transcribed or given up; downloaded audio lives in this
process's memory for the length of one call.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from clients.wappi import Media, MediaRef, WappiClient, WappiMessage, inline_voice, media_ref
from db.models import Message, VoiceMedia
from pipeline.conversation import queue_notice

if TYPE_CHECKING:  # the web process stores inline audio without loading the model SDK
    from clients.gemini import Answer, GeminiClient

log = logging.getLogger(__name__)


class AudioTooLarge(Exception):
    """The voice note is bigger than MAX_AUDIO_BYTES; it is not sent to the model."""


@dataclass(frozen=True)
class Transcript:
    text: str
    answer: Answer
    seconds: float
    size: int
    downloaded: bool


@dataclass(frozen=True)
class StoredVoice:
    """What intake kept about a voice note: its file's name and size, and inline audio if any."""

    ref: MediaRef
    inline: Media | None


def audio_mime(mime_type: str) -> str:
    """WhatsApp says `audio/ogg; codecs=opus`; Gemini wants the bare type."""
    base = mime_type.split(";", 1)[0].strip().lower()
    return base if base.startswith("audio/") else "audio/ogg"


def save_voice_media(session: Session, message_id: int, message: WappiMessage, *,
                     max_bytes: int | None = None) -> None:
    """At intake: keep what the message says about its file and, when a webhook inlined the audio
    (`body` as base64), the audio itself, so it is transcribed without a download."""
    if max_bytes is None:
        from settings import get_settings

        max_bytes = get_settings().max_audio_bytes
    ref = media_ref(message.raw)
    inline = inline_voice(message.raw)
    audio = inline.data if inline is not None else None
    if audio is not None and len(audio) > max_bytes:
        log.warning("voice note %s: inline audio of %d bytes is over MAX_AUDIO_BYTES (%d); not kept",
                    message_id, len(audio), max_bytes)
        audio = None
    # The message row was inserted in this very transaction: no one else can write this row.
    session.add(VoiceMedia(message_id=message_id, file_name=ref.file_name[:255], mime_type=ref.mime_type[:100],
                           size=len(inline.data) if inline is not None else ref.size, audio=audio))


def stored_voice(session: Session, message_id: int) -> StoredVoice:
    row = session.get(VoiceMedia, message_id)
    if row is None:  # stored before voice_media existed, or by a path that does not keep it
        return StoredVoice(ref=MediaRef(), inline=None)
    ref = MediaRef(file_name=row.file_name, size=row.size, mime_type=row.mime_type)
    inline = None if row.audio is None else Media(data=row.audio, mime_type=row.mime_type,
                                                 file_name=row.file_name, media_type="ptt")
    return StoredVoice(ref=ref, inline=inline)


def drop_audio(session: Session, message_id: int) -> None:
    """The note is transcribed or given up: its audio is not kept any longer."""
    session.execute(update(VoiceMedia).where(VoiceMedia.message_id == message_id, VoiceMedia.audio.is_not(None))
                    .values(audio=None))


def check_size(provider_message_id: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise AudioTooLarge(f"voice note {provider_message_id} is {size} bytes (limit {max_bytes})")


def transcribe_voice(wappi: WappiClient, gemini: GeminiClient, provider_message_id: str, *, model: str,
                     max_bytes: int, stored: StoredVoice | None = None) -> Transcript:
    """Transcribe from the inline audio when intake kept it; download only when it did not."""
    from clients.gemini import GeminiEmptyAnswerError
    from prompts import load

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
    from pipeline.conversation import record_usage

    session.execute(update(Message).where(Message.id == message_id)
                    .values(transcription=transcript.text, is_voice=True))
    drop_audio(session, message_id)
    record_usage(session, "transcribe", transcript.answer, contact_id)


def pending_voice_notes(session: Session, contact_id: int, up_to: int) -> list[tuple[int, str]]:
    """The burst's voice notes still to transcribe, oldest first: (row id, provider id)."""
    return [(row.id, row.provider_message_id) for row in session.scalars(select(Message).where(
        Message.contact_id == contact_id, Message.status == "received", Message.is_voice.is_(True),
        Message.transcription.is_(None), Message.id <= up_to).order_by(Message.id))]


def burst_carrier(session: Session, contact_id: int, up_to: int) -> int | None:
    """The newest message of the burst still to answer once its voice notes are handled: the
    chain goes on with it (a failed voice note gives its place to the burst's texts)."""
    return session.scalar(select(Message.id).where(
        Message.contact_id == contact_id, Message.direction == "in", Message.status == "received",
        Message.id <= up_to).order_by(Message.id.desc()).limit(1))


def ask_to_write(session: Session, message: Message, text: str) -> int | None:
    """One polite message asking the customer to write instead, quoting this voice note; the key
    keeps it to one per note. The note is marked failed: it is not answered, nor swept up again."""
    outbox_id = queue_notice(session, message, f"voice-fallback:{message.id}", text)
    session.execute(update(Message).where(Message.id == message.id, Message.status.in_(("received", "failed")))
                    .values(status="failed"))
    drop_audio(session, message.id)
    return outbox_id
