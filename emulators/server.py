"""The HTTP layer both emulators share: a threaded keep-alive server that hands each request to an
emulator's app and writes its answer, start/stop on a background thread, and the command line loop.

An app is anything with ``handle(request)`` and ``malformed_body()`` (see `App`); the server knows
nothing of Wappi or Gemini.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Protocol, Self

LOG = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_LINE_BYTES = 1024


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query string, as sent
    headers: Mapping[str, str]  # names lower-cased
    body: bytes


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = JSON_CONTENT_TYPE


def json_response(status: int, payload: Any, content_type: str = JSON_CONTENT_TYPE) -> Response:
    return Response(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), content_type)


class App(Protocol):
    def handle(self, request: Request) -> Response | None:
        """The answer to `request`; ``None`` drops the connection unanswered (a simulated timeout)."""

    def malformed_body(self) -> Response:
        """The answer to a request whose body cannot be read (bad chunking or Content-Length)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App, *, server_version: str,
                 idle_timeout: float | None) -> None:
        self.app = app
        self.server_version = server_version
        self.idle_timeout = idle_timeout
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Drop idle keep-alive connections so handler threads end with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add about 40 ms to every keep-alive answer.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"  # keep-alive, like the real services
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        # Per app: an idle keep-alive connection ends after the app's timeout (None: never), and
        # the Server header names the emulator.
        self.request.settimeout(self.server.idle_timeout)
        self.server_version = self.server.server_version
        super().setup()

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            # A client that drops a keep-alive connection mid-read (a refused download, a timeout
            # of its own) is no error of the emulator's.
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("%s %s", self.address_string(), format % args)

    def _read_body(self) -> bytes:
        # The whole body is always consumed so the keep-alive connection stays in sync.
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = self.rfile.readline(MAX_LINE_BYTES)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(MAX_LINE_BYTES) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(MAX_LINE_BYTES)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY_BYTES:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        app = self.server.app
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._write(app.malformed_body())
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        response = app.handle(Request(method, self.path, headers, body))
        if response is None:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._write(response)

    def _write(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(response.body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (e.g. its timeout fired during a simulated delay).
            self.close_connection = True


class HttpService:
    """One app served from a background thread. `stopping` is set while stopping, so an app's
    simulated waits (timeouts, delays) end with the server instead of holding it up."""

    def __init__(self, app: App, host: str, port: int, *, name: str, server_version: str,
                 idle_timeout: float | None = None, stopping: threading.Event | None = None) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.name = name
        self.server_version = server_version
        self.idle_timeout = idle_timeout
        self.stopping = stopping or threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._server is not None

    @property
    def bound_port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port`` of the bound socket; a wildcard host reads as loopback."""
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started")
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.bound_port}"

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError(f"{self.name} is already started")
        self.stopping.clear()
        server = _Server((self.host, self.port), self.app, server_version=self.server_version,
                         idle_timeout=self.idle_timeout)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None


# --------------------------------------------------------------------------- command line


class Service(Protocol):
    def start(self) -> object: ...

    def stop(self) -> None: ...


def add_server_arguments(parser: argparse.ArgumentParser, *, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--log-level", default="INFO")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve_until_signal(service: Service, banner: Callable[[], str]) -> None:
    """Start `service`, print `banner()` (the line scripts wait for), serve until SIGTERM/SIGINT."""
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        service.start()
        print(banner(), flush=True)
        while not stop_requested.wait(0.5):
            pass
    finally:
        service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class EmulatorFacade:
    """What the Wappi, Telegram and AgentOS emulators' facades share: an `HttpService`, the URL
    clients use (`public_url` when the emulator sits behind a proxy), start and stop, and `with`."""

    LABEL = "emulator"  # for the start log line: "<LABEL> started on <url>"
    _service: HttpService
    _public_url: str | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8701`` (valid after :meth:`start`)."""
        return self._public_url or self.listen_url

    @property
    def listen_url(self) -> str:
        """URL of the bound socket (differs from :attr:`url` only with ``public_url``)."""
        return self._service.url

    def start(self) -> Self:
        self._service.start()
        LOG.info("%s started on %s", self.LABEL, self.url)
        return self

    def stop(self) -> None:
        self._service.stop()

    def __enter__(self) -> Self:
        if not self._service.started:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
