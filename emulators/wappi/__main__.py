"""``python -m emulators.wappi``: run the Wappi emulator until SIGTERM/SIGINT."""

from emulators.wappi.cli import main

main()
