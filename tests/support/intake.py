"""What reaches intake, as a test makes it: voice notes whose audio names their transcript, the
downloads Wappi was asked for, one poll answered to its end in-process (the unit tier), and the
webhook Wappi would push, caught in the test's own process (so the unit tier stores it without the
web app)."""

from __future__ import annotations

import base64
import json
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from db.session import SessionFactory
from emulators.wappi import WappiEmulator
from tests.support import chain
from tests.support.emulators import customer_says
from tests.support.env import PROFILE_ID


def voice_audio(transcript: str) -> bytes:
    """Audio the Gemini emulator transcribes as `transcript`."""
    return b"OggS\x00\x02fake-opus-frames\x00TRANSCRIPT:" + transcript.encode() + b"\x00\x01\x02"


def voice_note(wappi: WappiEmulator, phone: str, transcript: str, **extra: Any) -> str:
    """A customer records a voice note; returns Wappi's message id."""
    return customer_says(wappi, phone, "", type="ptt", media_b64=base64.b64encode(voice_audio(transcript)).decode(),
                         **extra)


def answer_new(sessions: SessionFactory) -> list[int]:
    """One poll, and every conversation it starts run to its end; the message ids it started."""
    started = chain.poll(sessions)
    for message_id in started:
        chain.answer(sessions, message_id)
    return started


def downloads(wappi: WappiEmulator) -> list[dict[str, Any]]:
    """The media downloads the pipeline asked Wappi for."""
    return [entry for entry in wappi.requests_log() if entry["path"].endswith("message/media/download")]


class WebhookCatcher:
    """The items Wappi pushed, one webhook body at a time."""

    def __init__(self) -> None:
        self.bodies: queue.Queue[dict[str, Any]] = queue.Queue()

    def next_items(self, timeout: float = 10.0) -> list[Any]:
        """The `messages` of the next webhook Wappi pushes (it pushes from a thread of its own)."""
        items: list[Any] = self.bodies.get(timeout=timeout)["messages"]
        return items


@contextmanager
def webhook_caught(wappi: WappiEmulator) -> Iterator[WebhookCatcher]:
    """Point the profile's webhook at a receiver in this process for the length of the block."""
    catcher = WebhookCatcher()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            catcher.bodies.put(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads what was pushed, not the access log."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="webhook-receiver",
                              daemon=True)
    thread.start()
    wappi.set_webhook(PROFILE_ID, f"http://127.0.0.1:{server.server_address[1]}/webhooks/wappi")
    try:
        yield catcher
    finally:
        wappi.set_webhook(PROFILE_ID, "")
        server.shutdown()
        server.server_close()
