"""Webhook push: each injected message POSTed to the profile's webhook URL from its own thread,
so a slow or dead receiver never holds up the emulator. Errors are only logged, as Wappi does."""

from __future__ import annotations

import json
import logging
import threading
import urllib.request

from emulators.wappi.models import JSON

LOG = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 5.0


def push(url: str, secret: str, messages: list[JSON]) -> None:
    """POST ``{"messages": [...]}`` to `url` with ``Authorization: <secret>`` (none when empty)."""
    data = json.dumps({"messages": messages}, ensure_ascii=False).encode("utf-8")
    threading.Thread(target=_post, args=(url, secret, data), name="wappi-webhook", daemon=True).start()


def _post(url: str, secret: str, data: bytes) -> None:
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json; charset=utf-8")
    if secret:
        request.add_header("Authorization", secret)
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
            response.read()
    except Exception as exc:  # noqa: BLE001 - webhook errors are only logged
        LOG.warning("webhook POST to %s failed: %s", url, exc)
