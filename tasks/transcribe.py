"""Stage `transcribe`: a voice note becomes text before it is classified and answered."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from clients.gemini import get_client as get_gemini
from clients.wappi import get_client as get_wappi
from db.models import Message, Profile
from db.session import session_scope
from pipeline.voice import AudioTooLarge, ask_to_write, store_transcript, transcribe_voice
from settings import get_settings
from tasks.app import app
from tasks.base import MessageStageTask
from tasks.locks import held

log = logging.getLogger(__name__)
MEDIA_LOCK_SECONDS = 200  # longer than the task's hard time limit


class TranscribeTask(MessageStageTask):
    def after_dead_letter(self, args: Any, kwargs: Any, exc: BaseException) -> None:
        """The download or the model failed for good: the customer is asked to write instead."""
        from tasks.send import send

        message_id = args[0] if args else None
        if not isinstance(message_id, int):
            return
        with session_scope() as session:
            message = session.get(Message, message_id)
            if message is None:
                return
            outbox_id = ask_to_write(session, message, get_settings().voice_fallback_text)
        if outbox_id is not None:
            send.delay(outbox_id)


@app.task(base=TranscribeTask, name="pipeline.transcribe")
def transcribe(message_id: int | None) -> int | None:
    if message_id is None:
        return None
    settings = get_settings()
    with session_scope() as session:
        message = session.get(Message, message_id)
        if message is None or message.status != "received":
            return None
        profile = session.get(Profile, message.profile_id)
        assert profile is not None
        provider_profile, contact_id = profile.profile_id, message.contact_id
        # The burst's newest message carries the chain: every voice note of the burst is transcribed.
        pending = [(row.id, row.provider_message_id) for row in session.scalars(select(Message).where(
            Message.contact_id == contact_id, Message.status == "received", Message.is_voice.is_(True),
            Message.transcription.is_(None), Message.id <= message_id).order_by(Message.id))]
    for voice_id, provider_id in pending:
        # One media download per profile at a time: Wappi has crossed concurrent answers.
        try:
            with held("media-lock", provider_profile, timeout=MEDIA_LOCK_SECONDS, busy_retry=1.0,
                      what="profile media"):
                transcript = transcribe_voice(get_wappi(provider_profile), get_gemini(), provider_id,
                                              model=settings.gemini_transcribe_model,
                                              max_bytes=settings.max_audio_bytes)
        except AudioTooLarge as exc:
            log.warning("transcribe message %s: %s; asking the customer to write", voice_id, exc)
            from tasks.send import send

            with session_scope() as session:
                voice = session.get(Message, voice_id)
                assert voice is not None
                outbox_id = ask_to_write(session, voice, settings.voice_fallback_text)
            if outbox_id is not None:
                send.delay(outbox_id)
            if voice_id == message_id:
                return None
            continue
        log.info("transcribed message %s: %d bytes in %.0f ms", voice_id, transcript.size, transcript.seconds * 1000)
        with session_scope() as session:
            store_transcript(session, voice_id, contact_id, transcript)
    return message_id
