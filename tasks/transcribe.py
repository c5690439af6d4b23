"""Stage `transcribe`: a voice note becomes text before it is classified and answered.

The burst's newest message carries the chain, and every voice note of the burst is transcribed
here. A voice note that fails for good costs only itself: it gets a dead letter of its own and one
"please write" quoting it, and the chain goes on with the rest of the burst.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from celery.exceptions import Ignore, Retry

from clients.gemini import get_client as get_gemini
from clients.wappi import WappiMediaTooLargeError
from clients.wappi import get_client as get_wappi
from db.models import Message, Profile
from db.session import session_scope
from pipeline.voice import (
    AudioTooLarge,
    ask_to_write,
    burst_carrier,
    pending_voice_notes,
    store_transcript,
    stored_voice,
    transcribe_voice,
)
from settings import get_settings
from tasks.app import app
from tasks.base import TRANSIENT, Defer, MessageStageTask
from tasks.locks import held

log = logging.getLogger(__name__)
MEDIA_LOCK_SECONDS = 200  # longer than the task's hard time limit


def give_up_on(voice_id: int) -> None:
    """One "please write" quoting this voice note; the note is marked failed."""
    from tasks.send import send

    with session_scope() as session:
        voice = session.get(Message, voice_id)
        if voice is None:
            return
        outbox_id = ask_to_write(session, voice, get_settings().voice_fallback_text)
    if outbox_id is not None:
        send.delay(outbox_id)


class TranscribeTask(MessageStageTask):
    def after_dead_letter(self, args: Any, kwargs: Any, exc: BaseException) -> None:
        """The task itself failed for good (a crash, a time limit): a voice note it carried is
        answered with the fallback; a text it carried is marked failed, as in any stage."""
        message_id = args[0] if args else None
        if not isinstance(message_id, int):
            return
        with session_scope() as session:
            message = session.get(Message, message_id)
            is_pending_voice = message is not None and message.is_voice and not message.transcription
        if is_pending_voice:
            give_up_on(message_id)
        else:
            super().after_dead_letter(args, kwargs, exc)


@app.task(base=TranscribeTask, name="pipeline.transcribe", bind=True)
def transcribe(self: TranscribeTask, message_id: int | None) -> int | None:
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
        pending = pending_voice_notes(session, contact_id, message_id)
    for voice_id, provider_id in pending:
        with session_scope() as session:
            stored = stored_voice(session, voice_id)
        try:
            if stored.inline is not None:  # the webhook brought the audio: no download
                transcript = transcribe_voice(get_wappi(provider_profile), get_gemini(), provider_id,
                                              model=settings.gemini_transcribe_model,
                                              max_bytes=settings.max_audio_bytes, stored=stored)
            else:
                # One media download per profile at a time: Wappi has crossed concurrent answers
                # (and the client checks that the file is this note's).
                with held("media-lock", provider_profile, timeout=MEDIA_LOCK_SECONDS, busy_retry=1.0,
                          what="profile media"):
                    transcript = transcribe_voice(get_wappi(provider_profile), get_gemini(), provider_id,
                                                  model=settings.gemini_transcribe_model,
                                                  max_bytes=settings.max_audio_bytes, stored=stored)
        except (Defer, Retry, Ignore):
            raise
        except (AudioTooLarge, WappiMediaTooLargeError) as exc:  # over MAX_AUDIO_BYTES, known or found while streaming
            log.warning("transcribe message %s: %s; asking the customer to write", voice_id, exc)
            give_up_on(voice_id)
            continue
        except Exception as exc:
            if isinstance(exc, TRANSIENT) and not self.is_last_attempt():
                raise  # retried with backoff; notes already transcribed are not asked again
            log.error("transcribe message %s failed for good (%s: %s); asking the customer to write",
                      voice_id, type(exc).__name__, exc)
            self.dead_letter(exc, (voice_id,), {}, "".join(traceback.format_exception(exc)),
                             part=f"voice-{voice_id}")
            give_up_on(voice_id)
            continue
        log.info("transcribed message %s: %d bytes (%s) in %.0f ms", voice_id, transcript.size,
                 "downloaded" if transcript.downloaded else "inline", transcript.seconds * 1000)
        with session_scope() as session:
            store_transcript(session, voice_id, contact_id, transcript)
    with session_scope() as session:
        # A failed voice note gives its place to the burst's texts; None when nothing is left.
        return burst_carrier(session, contact_id, message_id)
