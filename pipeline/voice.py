"""Voice notes: download through Wappi, transcribe with Gemini, store the text on the message.

Audio bytes live only in this process's memory for the length of one call: never in a Celery
message, never on disk.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from clients.gemini import Answer, GeminiClient, GeminiEmptyAnswerError
from clients.wappi import WappiClient
from db.models import Message, Outbox
from db.session import insert_ignore
from pipeline.conversation import record_usage
from prompts import load

log = logging.getLogger(__name__)


class AudioTooLarge(Exception):
    """The voice note is bigger than MAX_AUDIO_BYTES; it is not sent to the model."""


@dataclass(frozen=True)
class Transcript:
    text: str
    answer: Answer
    seconds: float
    size: int


def audio_mime(mime_type: str) -> str:
    """WhatsApp says `audio/ogg; codecs=opus`; Gemini wants the bare type."""
    base = mime_type.split(";", 1)[0].strip().lower()
    return base if base.startswith("audio/") else "audio/ogg"


def transcribe_voice(wappi: WappiClient, gemini: GeminiClient, provider_message_id: str, *, model: str,
                     max_bytes: int) -> Transcript:
    started = time.monotonic()
    media = wappi.download_media(provider_message_id)
    if len(media.data) > max_bytes:
        raise AudioTooLarge(f"voice note {provider_message_id} is {len(media.data)} bytes (limit {max_bytes})")
    contents = [{"role": "user", "parts": [
        {"inline_data": {"mime_type": audio_mime(media.mime_type), "data": media.data}},
        {"text": load("transcribe")},
    ]}]
    answer = gemini.generate(contents, model=model)
    text = answer.text.strip()
    if not text:
        raise GeminiEmptyAnswerError("the transcript is empty")
    return Transcript(text=text, answer=answer, seconds=time.monotonic() - started, size=len(media.data))


def store_transcript(session: Session, message_id: int, contact_id: int, transcript: Transcript) -> None:
    session.execute(update(Message).where(Message.id == message_id)
                    .values(transcription=transcript.text, is_voice=True))
    record_usage(session, "transcribe", transcript.answer, contact_id)


def ask_to_write(session: Session, message: Message, text: str) -> int | None:
    """One polite message asking the customer to write instead; the key keeps it to one."""
    key = f"voice-fallback:{message.id}"
    insert_ignore(session, Outbox, {
        "profile_id": message.profile_id, "contact_id": message.contact_id, "idempotency_key": key,
        "kind": "notice", "body": text, "reply_to_provider_id": message.provider_message_id,
        "source_message_id": message.id, "status": "pending",
    }, ["idempotency_key"])
    session.execute(update(Message).where(Message.id == message.id, Message.status.in_(("received", "failed")))
                    .values(status="failed"))
    return session.scalar(select(Outbox.id).where(Outbox.idempotency_key == key))
