"""Stage `transcribe`: every voice note of the burst becomes text (pipeline/transcribe.py) before it is
classified and answered. Which failures of a note are retried is decided here, per exception type;
a note that fails for good gets a dead letter of its own and the chain goes on without it."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from celery.exceptions import Ignore, Retry

from clients.gemini import get_client as get_gemini
from db.session import session_scope
from pipeline.channels import channel_for
from pipeline.locks import Defer
from pipeline.transcribe import give_up, is_pending_voice, run_transcribe
from settings import get_settings
from tasks.app import app, enqueue_send
from tasks.base import TRANSIENT, MessageStageTask

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

    def fails_for_good(voice_id: int, exc: Exception) -> bool:
        """Retry (False) a deferral or a transient error with attempts left; otherwise the note gets a
        dead letter of its own, and the chain goes on without it."""
        if isinstance(exc, (Defer, Retry, Ignore)):
            return False
        if isinstance(exc, TRANSIENT) and not self.is_last_attempt():
            return False  # retried with backoff; notes already transcribed are not asked again
        self.dead_letter(exc, (voice_id,), {}, "".join(traceback.format_exception(exc)), part=f"voice-{voice_id}")
        return True

    return run_transcribe(self.stage_sessions(message_id), channel_for, get_gemini(), message_id, get_settings(),
                          fails_for_good=fails_for_good, enqueue_send=enqueue_send)
