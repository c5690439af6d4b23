"""The Wappi emulator's command line (``python -m emulators.wappi``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from emulators.server import add_server_arguments, configure_logging, serve_until_signal
from emulators.wappi.emulator import WappiEmulator
from emulators.wappi.models import DEFAULT_OWN_PHONE, DEFAULT_PROFILE_ID, DEFAULT_TOKEN


def main(argv: Sequence[str] | None = None) -> None:
    """Run the emulator until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m emulators.wappi", description="Wappi WhatsApp API emulator")
    add_server_arguments(parser, port=8701)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument(
        "--profile", action="append", dest="profiles", help=f"profile id (repeatable; default {DEFAULT_PROFILE_ID})"
    )
    parser.add_argument("--telegram-profile", action="append", dest="telegram_profiles", default=[],
                        help="Telegram profile id, served under /tapi/ (repeatable)")
    parser.add_argument("--own-phone", default=DEFAULT_OWN_PHONE)
    parser.add_argument("--public-url", default=None, help="base URL used in file links (e.g. inside docker)")
    args = parser.parse_args(argv)

    configure_logging(args.log_level)
    emulator = WappiEmulator(
        host=args.host,
        port=args.port,
        token=args.token,
        profile_ids=args.profiles or ([] if args.telegram_profiles else [DEFAULT_PROFILE_ID]),
        telegram_profile_ids=args.telegram_profiles,
        own_phone=args.own_phone,
        public_url=args.public_url,
    )
    serve_until_signal(emulator, lambda: f"Wappi emulator listening on {emulator.listen_url}")
