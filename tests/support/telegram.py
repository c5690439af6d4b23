"""What a test of the Telegram channel needs besides the emulator: a webhook receiver (a tiny
local HTTP server that records each POST and lets the test wait for them, never sleep)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any


class WebhookReceiver:
    """Records every POST; answers `status` (200 unless a test wants the sender to retry)."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.status = 200
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                delivery = Delivery(self.path, {name.lower(): value for name, value in self.headers.items()},
                                    json.loads(raw) if raw else None)
                status = receiver.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver._arrived:
                    receiver.deliveries.append(delivery)
                    receiver._arrived.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/webhooks/telegram/bot"

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Delivery]:
        """The first `count` deliveries, once they have arrived (AssertionError after `timeout`)."""
        with self._arrived:
            arrived = self._arrived.wait_for(lambda: len(self.deliveries) >= count, timeout=timeout)
            assert arrived, f"{len(self.deliveries)} webhook deliveries arrived, expected {count}"
            return list(self.deliveries[:count])

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
