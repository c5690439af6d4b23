"""The AgentOS emulator's command line (``python -m emulators.agentos``)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from emulators.agentos.emulator import AgentOSEmulator
from emulators.agentos.models import DEFAULT_AGENTS
from emulators.server import add_server_arguments, configure_logging, serve_until_signal


def main(argv: Sequence[str] | None = None) -> None:
    """Run the emulator until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m emulators.agentos", description="Agno AgentOS emulator")
    add_server_arguments(parser, port=7777)
    parser.add_argument("--api-key", default=os.environ.get("OS_SECURITY_KEY") or None,
                        help="require 'Authorization: Bearer <key>' (default: $OS_SECURITY_KEY; unset: open)")
    parser.add_argument("--agent", action="append", dest="agents", metavar="ID",
                        help=f"an agent id to host (repeatable; default: {', '.join(DEFAULT_AGENTS)})")
    parser.add_argument("--public-url", default=None, help="base URL others reach it at (e.g. inside docker)")
    args = parser.parse_args(argv)

    configure_logging(args.log_level)
    emulator = AgentOSEmulator(args.api_key, args.agents or DEFAULT_AGENTS, host=args.host, port=args.port,
                               public_url=args.public_url)
    serve_until_signal(emulator, lambda: f"AgentOS emulator listening on {emulator.listen_url}")
