"""Rules behind voice notes and dead letters, without workers: inline audio in a webhook, a
download that belongs to another message, masking of stored failure text."""

from __future__ import annotations

import base64

import pytest

from clients.wappi import MediaRef, WappiClient, WappiMediaMismatchError, inline_voice, media_ref
from emulators.wappi import WappiEmulator
from infra.logging import mask_text
from tests.support.env import PRIVATE_PROFILE as PROFILE

AUDIO = b"OggS\x00\x02voice-rules-audio"


def test_a_webhook_voice_note_carries_its_audio_inline() -> None:
    item = {"id": "AC8E", "type": "ptt", "body": base64.b64encode(AUDIO).decode().rstrip("="),
            "mimetype": "audio/ogg; codecs=opus", "file_name": "822f55f2.ogg",
            "file_link": "https://expired.example/x.ogg", "media_info": {"size": 0, "duration": 4}}
    media = inline_voice(item)
    assert media is not None and media.data == AUDIO and media.mime_type.startswith("audio/ogg")
    assert media_ref(item) == MediaRef(file_name="822f55f2.ogg", size=0, mime_type="audio/ogg; codecs=opus")
    # The sync API's media object, a text, and a body that is not base64 carry no audio.
    assert inline_voice({"id": "1", "type": "ptt", "body": {"mimetype": "audio/ogg", "fileLength": 9}}) is None
    assert inline_voice({"id": "2", "type": "chat", "body": base64.b64encode(AUDIO).decode()}) is None
    assert inline_voice({"id": "3", "type": "ptt", "body": "not base64 at all!"}) is None
    assert media_ref({"type": "ptt", "body": {"fileLength": 9, "mimetype": "audio/ogg"}}).size == 9


def test_a_download_of_another_messages_file_is_refused(private_wappi: WappiEmulator,
                                                        wappi_client: WappiClient) -> None:
    other = private_wappi.customer_message(PROFILE, "77010000001", type="ptt", media=b"OggS-other-file",
                                      media_shape="b64")["message_id"]
    mine = private_wappi.customer_message(PROFILE, "77010000002", type="ptt", media=AUDIO, media_shape="b64")
    expected = media_ref(private_wappi.chat_messages(PROFILE, "77010000002")[-1])
    assert expected.size == len(AUDIO) and expected.file_name
    private_wappi.set_media_faults({"cross_next": 2})  # both tries of the client's short retry are crossed
    with pytest.raises(WappiMediaMismatchError):
        wappi_client.download_media(mine["message_id"], expected)
    private_wappi.set_media_faults({"cross_next": 1})  # one crossed answer: dropped, asked again
    assert wappi_client.download_media(mine["message_id"], expected).data == AUDIO
    assert wappi_client.download_media(other).data == b"OggS-other-file"  # nothing expected: nothing checked


def test_stored_failure_text_is_masked_like_logs() -> None:
    text = "Wappi 400 for 77011234567@c.us: token=abcd1234efgh key: AIzaSecret42 Authorization: rawsecret"
    masked = mask_text(text, ["rawsecret"])
    assert "77011234567" not in masked and "*******4567@c.us" in masked
    assert "abcd1234efgh" not in masked and "AIzaSecret42" not in masked and "rawsecret" not in masked
    assert masked.startswith("Wappi 400 for") and "token=***" in masked


def test_a_history_body_in_a_download_answer_is_crossed_not_a_missing_file(private_wappi: WappiEmulator,
                                                                            wappi_client: WappiClient) -> None:
    mine = private_wappi.customer_message(PROFILE, "77010000002", type="ptt", media=AUDIO, media_shape="b64")
    private_wappi.set_media_faults({"cross_next": 1, "cross_kind": "messages"})  # dropped, asked again
    assert wappi_client.download_media(mine["message_id"]).data == AUDIO
    private_wappi.set_media_faults({"cross_next": 2, "cross_kind": "messages"})  # both tries crossed: transient
    with pytest.raises(WappiMediaMismatchError):
        wappi_client.download_media(mine["message_id"])
