"""The shared HTTP server (`emulators.server`) with one addition AgentOS needs: response headers
beyond Content-Type, for ``Retry-After`` on a 429. A `HeaderResponse` carries them; a plain
`Response` is written exactly as the shared server writes it."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from emulators import server
from emulators.server import HttpService, Response


@dataclass(frozen=True)
class HeaderResponse(Response):
    headers: tuple[tuple[str, str], ...] = ()


class _Handler(server._Handler):
    _extra_headers: tuple[tuple[str, str], ...] = ()

    def _write(self, response: Response) -> None:
        self._extra_headers = response.headers if isinstance(response, HeaderResponse) else ()
        super()._write(response)

    def end_headers(self) -> None:
        for name, value in self._extra_headers:
            self.send_header(name, value)
        self._extra_headers = ()
        super().end_headers()


class _Server(server._Server):
    def finish_request(self, request: Any, client_address: Any) -> None:
        _Handler(request, client_address, self)


class HeaderHttpService(HttpService):
    """`HttpService` on the server above; everything else (stop, url, `stopping`) is inherited."""

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError(f"{self.name} is already started")
        self.stopping.clear()
        http_server = _Server((self.host, self.port), self.app, server_version=self.server_version,
                              idle_timeout=self.idle_timeout)
        self._server = http_server
        self._thread = threading.Thread(target=http_server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=self.name, daemon=True)
        self._thread.start()
