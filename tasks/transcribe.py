"""Stage `transcribe`: a voice note becomes text before it is classified and answered."""

from __future__ import annotations

import logging
from typing import Any

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
        if not message.is_voice or message.transcription:
            return message_id  # nothing to transcribe (or done by an earlier run)
        profile = session.get(Profile, message.profile_id)
        assert profile is not None
        provider_profile, provider_id, contact_id = profile.profile_id, message.provider_message_id, message.contact_id
    # One media download per profile at a time: Wappi has crossed concurrent answers.
    try:
        with held("media-lock", provider_profile, timeout=MEDIA_LOCK_SECONDS, busy_retry=1.0, what="profile media"):
            transcript = transcribe_voice(get_wappi(provider_profile), get_gemini(), provider_id,
                                          model=settings.gemini_transcribe_model, max_bytes=settings.max_audio_bytes)
    except AudioTooLarge as exc:
        log.warning("transcribe message %s: %s; asking the customer to write", message_id, exc)
        from tasks.send import send

        with session_scope() as session:
            message = session.get(Message, message_id)
            assert message is not None
            outbox_id = ask_to_write(session, message, settings.voice_fallback_text)
        if outbox_id is not None:
            send.delay(outbox_id)
        return None
    log.info("transcribed message %s: %d bytes in %.0f ms", message_id, transcript.size, transcript.seconds * 1000)
    with session_scope() as session:
        store_transcript(session, message_id, contact_id, transcript)
    return message_id
