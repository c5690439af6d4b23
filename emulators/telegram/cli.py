"""The Telegram emulator's command line (``python -m emulators.telegram``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from emulators.server import add_server_arguments, configure_logging, serve_until_signal
from emulators.telegram.emulator import TelegramEmulator
from emulators.telegram.models import DEFAULT_TOKEN


def main(argv: Sequence[str] | None = None) -> None:
    """Run the emulator until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m emulators.telegram", description="Telegram Bot API emulator")
    add_server_arguments(parser, port=8703)
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the bot token (<bot id>:<secret>)")
    parser.add_argument("--public-url", default=None, help="base URL others reach it at (e.g. inside docker)")
    args = parser.parse_args(argv)

    configure_logging(args.log_level)
    emulator = TelegramEmulator(host=args.host, port=args.port, token=args.token, public_url=args.public_url)
    serve_until_signal(emulator, lambda: f"Telegram emulator listening on {emulator.listen_url}")
