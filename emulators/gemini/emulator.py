"""`GeminiEmulator`: the Gemini emulator as tests, benchmarks and scripts use it from Python."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any, Self

from emulators.gemini import control
from emulators.gemini.models import GeminiBackend
from emulators.gemini.responses import GenerateContent
from emulators.gemini.urls import Router
from emulators.server import HttpService

LOG = logging.getLogger(__name__)

IDLE_TIMEOUT_SECONDS = 120  # idle keep-alive connections end instead of pinning a thread forever


class GeminiEmulator:
    """A threaded HTTP server speaking the Gemini ``generateContent`` wire format.

    Use as a context manager or call ``start()``/``stop()``. ``port=0`` picks a free port.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, api_key: str = "emulator-key") -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self._backend = GeminiBackend()
        stopping = threading.Event()
        self._generate = GenerateContent(self._backend, stopping)
        router = Router(lambda: self.api_key, self._generate, self.control)
        self._service = HttpService(router, host, port, name="GeminiEmulator", server_version="GeminiEmulator/1.0",
                                    idle_timeout=IDLE_TIMEOUT_SECONDS, stopping=stopping)

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._service.url

    def start(self) -> Self:
        self._service.host, self._service.port = self.host, self.port
        self._service.start()
        self.port = self._service.bound_port
        LOG.info("Gemini emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        self._service.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- control -----------------------------------------------------------------------------

    def script(self, responses: list[dict[str, Any]]) -> None:
        """Queue scripted answers, consumed one per generateContent call (see `models`)."""
        self._backend.script(responses)

    def set_faults(self, config: dict[str, Any]) -> dict[str, Any]:
        """Random faults applied when no scripted item is consumed; returns the active config."""
        return self._backend.set_faults(config)

    def reset(self) -> None:
        self._backend.reset()

    def requests_log(self) -> list[dict[str, Any]]:
        """Recorded generateContent calls: ``{"version", "model", "body"}`` each, oldest first."""
        return self._backend.requests_log()

    def generate(self, version: str, model: str, body: dict[str, Any]) -> tuple[int, Any]:
        """Record the call and produce ``(status, json_body)``."""
        return self._generate(version, model, body)

    def control(self, method: str, action: str, payload: Any) -> tuple[int, Any]:
        """The ``/_emulator/*`` routes; no authentication."""
        return control.control(self._backend, method, action, payload)
