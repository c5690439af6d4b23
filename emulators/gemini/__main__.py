"""``python -m emulators.gemini``: run the Gemini emulator until SIGTERM/SIGINT."""

from emulators.gemini.cli import main

main()
