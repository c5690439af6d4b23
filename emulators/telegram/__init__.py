"""In-memory emulator of the Telegram Bot API (api.telegram.org).

Speaks the real wire format of the subset the product uses (see
``/work/shared/reference/telegram.md``, part A): ``/bot<token>/<method>`` with the parameters as
query string, form or JSON; ``/file/bot<token>/<file_path>`` for downloads; the
``{"ok": true, "result": ...}`` and ``{"ok": false, "error_code", "description", "parameters"}``
envelopes with the HTTP status equal to ``error_code``.

On top of that it exposes an unauthenticated control interface under ``/_emulator/`` (a user
writes, sends a voice note, a photo, a sticker, edits a message, blocks the bot, upgrades a group;
read what the bot sent; faults; Telegram's flood limits, off until turned on; reset). Everything is
kept in memory and guarded by one lock; the server is threaded.

Split the way moto splits a service: `models` (state), `wire` (wire format), `backend` (the
operations on the state), `responses` (the Bot API methods), `urls` (routes), `control` (the
control endpoints), `faults`, `limits` (flood limits), `webhooks`; `emulator` holds the
`TelegramEmulator` facade.

Run standalone::

    python -m emulators.telegram --host 127.0.0.1 --port 8703 --token 123456:TEST
"""

from __future__ import annotations

from emulators.telegram.cli import main
from emulators.telegram.emulator import TelegramEmulator
from emulators.telegram.exceptions import BotApiError, EmulatorError

__all__ = ["BotApiError", "EmulatorError", "TelegramEmulator", "main"]
