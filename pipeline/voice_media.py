"""Voice notes' audio: what intake keeps about a note's file, and the audio a webhook inlined.

Audio never travels in a Celery message. Inline audio (at most MAX_AUDIO_BYTES) waits in
`voice_media` only until its note is transcribed or given up; downloaded audio lives in the
transcribing process's memory for the length of one call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session

from clients.wappi import Media, MediaRef, WappiMessage, inline_voice, media_ref
from db.models import VoiceMedia

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredVoice:
    """What intake kept about a voice note: its file's name and size, and inline audio if any."""

    ref: MediaRef
    inline: Media | None


def save_voice_media(session: Session, message_id: int, message: WappiMessage, *, max_bytes: int) -> None:
    """At intake: keep what the message says about its file and, when a webhook inlined the audio
    (`body` as base64), the audio itself, so it is transcribed without a download."""
    ref = message.media or media_ref(message.raw)
    inline = inline_voice(message.raw)
    audio = inline.data if inline is not None else None
    if audio is not None and len(audio) > max_bytes:
        log.warning("voice note %s: inline audio of %d bytes is over MAX_AUDIO_BYTES (%d); not kept",
                    message_id, len(audio), max_bytes)
        audio = None
    # The message row was inserted in this very transaction: no one else can write this row.
    session.add(VoiceMedia(message_id=message_id, file_name=ref.file_name[:255], mime_type=ref.mime_type[:100],
                           file_ref=ref.file_id[:255],
                           size=len(inline.data) if inline is not None else ref.size, audio=audio))


def stored_voice(session: Session, message_id: int) -> StoredVoice:
    row = session.get(VoiceMedia, message_id)
    if row is None:  # stored before voice_media existed, or by a path that does not keep it
        return StoredVoice(ref=MediaRef(), inline=None)
    ref = MediaRef(file_name=row.file_name, size=row.size, mime_type=row.mime_type, file_id=row.file_ref)
    inline = None if row.audio is None else Media(data=row.audio, mime_type=row.mime_type,
                                                 file_name=row.file_name, media_type="ptt")
    return StoredVoice(ref=ref, inline=inline)


def drop_audio(session: Session, message_id: int) -> None:
    """The note is transcribed or given up: its audio is not kept any longer."""
    session.execute(update(VoiceMedia).where(VoiceMedia.message_id == message_id, VoiceMedia.audio.is_not(None))
                    .values(audio=None))
