"""In-memory emulator of the Wappi (wappi.pro) WhatsApp HTTP API.

Speaks the real wire format of the sync API subset the project uses (see
``/work/shared/reference/wappi-api.md``): paths under ``/api/sync/``, the raw
token in the ``Authorization`` header, ``profile_id`` as a query parameter on
every request, ``{"status": "done", "timestamp", "time", ...}`` envelopes and
``{"status": "error", "detail": ...}`` errors. An account's token serves only that
account's profiles (``WappiEmulator.add_account`` adds accounts beside the first).

Telegram profiles (``WappiEmulator(telegram_profile_ids=...)``) are served under ``/tapi/sync/``
in the wire format of Wappi's Telegram API (`tapi`; ``/work/shared/reference/telegram.md`` part B).

On top of that it exposes an unauthenticated control interface under
``/_emulator/`` (inject customer messages, read what the pipeline sent, fault
injection, webhook push, bulk seeding). Everything is kept in memory and
guarded by one lock; the HTTP server is threaded.

Split the way moto splits a service: `models` (state), `wire` (wire format), `tapi` (Telegram's), `backend` (the
operations on the state), `responses` (the sync-API handlers), `urls` (routes), `control` (the
control endpoints), `faults`, `webhooks`; `emulator` holds the `WappiEmulator` facade.

Run standalone::

    python -m emulators.wappi --host 127.0.0.1 --port 8701 --token T --profile P
"""

from __future__ import annotations

from emulators.wappi.cli import main
from emulators.wappi.emulator import WappiEmulator
from emulators.wappi.exceptions import EmulatorError

__all__ = ["EmulatorError", "WappiEmulator", "main"]
