"""`python -m web [--port N]`: serve the web app with the standard library (threads)."""

from __future__ import annotations

import argparse
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from infra.logging import configure_from_settings
from settings import get_settings
from web.app import application


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    configure_from_settings()
    port = args.port or get_settings().web_port
    server = make_server(args.host, port, application, server_class=ThreadingWSGIServer, handler_class=QuietHandler)
    print(f"web listening on http://{args.host}:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
