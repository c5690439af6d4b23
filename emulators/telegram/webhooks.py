"""Webhook push: one thread per `setWebhook` that POSTs each queued update, oldest first, with
``X-Telegram-Bot-Api-Secret-Token``; a non-2xx answer or a network error is retried a few times and
then the update is dropped, as Telegram "gives up after a reasonable amount of attempts"."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

from emulators.telegram.models import JSON

LOG = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 5.0
WEBHOOK_ATTEMPTS = 3  # our choice: Telegram documents neither the count nor the backoff
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def post(url: str, secret_token: str, update: JSON) -> str:
    """POST one update; "" when the receiver answered 2xx, else what went wrong."""
    request = urllib.request.Request(url, data=json.dumps(update, ensure_ascii=False).encode("utf-8"),
                                     method="POST")
    request.add_header("Content-Type", "application/json")
    if secret_token:
        request.add_header(SECRET_HEADER, secret_token)
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
            response.read()
            return ""
    except urllib.error.HTTPError as exc:
        return f"Wrong response from the webhook: {exc.code} {exc.reason}"
    except Exception as exc:  # noqa: BLE001 - any failure of the receiver is only recorded
        LOG.warning("webhook POST to %s failed: %s", url, exc)
        return f"Connection failed: {type(exc).__name__}"
