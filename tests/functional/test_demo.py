"""`make demo` on embedded defaults (an embedded PostgreSQL, emulators): the scripted WhatsApp and
Telegram conversations are answered, each from its own business's knowledge base, and it exits 0."""

from __future__ import annotations

import os
import subprocess
import sys

from devstack import ROOT


def test_demo_plays_both_conversations_and_exits_zero() -> None:
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith(("WAPPI_", "GEMINI_", "DATABASE_", "REDIS_", "BATCH_", "SEND_"))}
    result = subprocess.run([sys.executable, "scripts/demo.py"], cwd=ROOT, env=environ, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    transcript = result.stdout
    assert "=== WhatsApp chat with +77017654321 ===" in transcript and "=== end of conversation ===" in transcript
    whatsapp, _, telegram = transcript.partition("=== Telegram chat with the bot @astra_demo_bot ===")
    assert whatsapp.count("Customer:") == 3 and whatsapp.count("Assistant:") == 3
    assert "12 900 ₸" in whatsapp  # the answer came from the shipped knowledge base
    assert telegram.count("Customer:") == 2 and telegram.count("Bot:") == 2
    assert "=== end of conversation ===" in telegram
    # The bot is the florist's: its answer comes from the florist's knowledge base, not the bakery's.
    assert "Астра" in telegram and "Сладкий Алматы" not in telegram and "Астра" not in whatsapp
    # No DATABASE_URL: the demo ran on the embedded PostgreSQL, and says where its parts are.
    assert "[demo] PostgreSQL: embedded PostgreSQL in var/pgdata, database assistant_demo" in transcript
    assert "/health" in transcript and "Wappi emulator" in transcript
    assert "[demo] stopping what it started" in transcript
