"""`make demo` on embedded defaults (an embedded PostgreSQL, emulators): the scripted conversation is
answered and it exits 0."""

from __future__ import annotations

import os
import subprocess
import sys

from devstack import ROOT


def test_demo_plays_the_conversation_and_exits_zero() -> None:
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith(("WAPPI_", "GEMINI_", "DATABASE_", "REDIS_", "BATCH_", "SEND_"))}
    result = subprocess.run([sys.executable, "scripts/demo.py"], cwd=ROOT, env=environ, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    transcript = result.stdout
    assert "=== WhatsApp chat with +77017654321 ===" in transcript and "=== end of conversation ===" in transcript
    assert transcript.count("Customer:") == 3 and transcript.count("Assistant:") == 3
    assert "12 900 ₸" in transcript  # the answer came from the shipped knowledge base
    # No DATABASE_URL: the demo ran on the embedded PostgreSQL, and says where its parts are.
    assert "[demo] PostgreSQL: embedded PostgreSQL in var/pgdata, database assistant_demo" in transcript
    assert "/health" in transcript and "Wappi emulator" in transcript
    assert "[demo] stopping what it started" in transcript
