"""The Gemini emulator's command line (``python -m emulators.gemini``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from emulators.gemini.emulator import GeminiEmulator
from emulators.server import add_server_arguments, configure_logging, serve_until_signal

DESCRIPTION = "Local emulator of the Gemini REST API (models/{model}:generateContent) for offline tests."


def main(argv: Sequence[str] | None = None) -> None:
    """Run the emulator until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m emulators.gemini", description=DESCRIPTION)
    add_server_arguments(parser, port=8702)
    parser.add_argument("--api-key", default="emulator-key")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    emulator = GeminiEmulator(host=args.host, port=args.port, api_key=args.api_key)
    serve_until_signal(emulator, lambda: f"Gemini emulator listening on {emulator.url}")
