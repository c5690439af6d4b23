"""Media downloads are capped while streaming: an oversized file is refused from its
Content-Length (a file link) or its encoded size (file_b64), before it is read into memory. The
real client against the emulator; no database (each note is found by its own message id)."""

from __future__ import annotations

import pytest
import requests

from clients.wappi import WappiClient, WappiMediaTooLargeError
from emulators.wappi import WappiEmulator
from tests.support.env import PROFILE_ID, WAPPI_TOKEN

CAP = 64 * 1024


@pytest.mark.parametrize("shape", ["link", "b64"])
def test_an_oversized_voice_note_is_refused_before_it_is_read(wappi: WappiEmulator, shape: str) -> None:
    big = wappi.customer_message(PROFILE_ID, "77060000001", type="ptt", media=b"OggS" + b"\x00" * (CAP * 4),
                                 media_shape=shape)
    small = wappi.customer_message(PROFILE_ID, "77060000001", type="ptt", media=b"OggS" + b"\x01" * 1000,
                                   media_shape=shape)
    client = WappiClient(requests.Session(), wappi.url, WAPPI_TOKEN, PROFILE_ID, timeout=5, max_media_bytes=CAP)
    with pytest.raises(WappiMediaTooLargeError, match="cap"):
        client.download_media(str(big["message_id"]))
    assert client.download_media(str(small["message_id"])).data == b"OggS" + b"\x01" * 1000
