"""``python -m emulators.telegram``: run the Telegram Bot API emulator until SIGTERM/SIGINT."""

from emulators.telegram.cli import main

main()
