"""Stage `transcribe`: a voice note becomes text before it is classified and answered.

Every voice note of the burst is transcribed here. A note that fails for good costs only itself:
it gets a dead letter of its own and one "please write" quoting it, and the chain goes on with the
rest of the burst. Which failures are retried is decided here, per exception type.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from celery.exceptions import Ignore, Retry

from clients.gemini import get_client as get_gemini
from clients.wappi import WappiMediaTooLargeError
from clients.wappi import get_client as get_wappi
from db.session import session_scope
from pipeline.locks import Defer
from pipeline.transcribe import (
    AudioTooLarge,
    burst_carrier,
    give_up,
    is_pending_voice,
    store_transcript,
    transcribe_note,
    voice_burst,
)
from pipeline.voice_media import stored_voice
from settings import get_settings
from tasks.app import app
from tasks.base import TRANSIENT, MessageStageTask
from tasks.send import enqueue_send

log = logging.getLogger(__name__)


def give_up_on(voice_id: int) -> None:
    """One "please write" quoting this voice note, sent after the commit; the note is marked failed."""
    with session_scope() as session:
        outbox_id = give_up(session, voice_id, get_settings().voice_fallback_text)
    enqueue_send(outbox_id)


class TranscribeTask(MessageStageTask):
    def after_dead_letter(self, args: Any, kwargs: Any, exc: BaseException) -> None:
        """The task itself failed for good (a crash, a time limit): a voice note it carried is
        answered with the fallback; a text it carried is marked failed, as in any stage."""
        message_id = args[0] if args else None
        if not isinstance(message_id, int):
            return
        with session_scope() as session:
            pending_voice = is_pending_voice(session, message_id)
        if pending_voice:
            give_up_on(message_id)
        else:
            super().after_dead_letter(args, kwargs, exc)


@app.task(base=TranscribeTask, name="pipeline.transcribe", bind=True)
def transcribe(self: TranscribeTask, message_id: int | None) -> int | None:
    if message_id is None:
        return None
    settings = get_settings()
    with session_scope() as session:
        burst = voice_burst(session, message_id)
    if burst is None:
        return None
    for voice_id, provider_id in burst.pending:
        with session_scope() as session:
            stored = stored_voice(session, voice_id)
        try:
            transcript = transcribe_note(get_wappi(burst.provider_profile), get_gemini(), provider_id, stored,
                                         model=settings.gemini_transcribe_model, max_bytes=settings.max_audio_bytes)
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
            store_transcript(session, voice_id, burst.contact_id, transcript)
    with session_scope() as session:
        # A failed voice note gives its place to the burst's texts; None when nothing is left.
        return burst_carrier(session, burst.contact_id, message_id)
