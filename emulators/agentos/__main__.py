"""``python -m emulators.agentos``: run the Agno AgentOS emulator until SIGTERM/SIGINT."""

from emulators.agentos.cli import main

main()
