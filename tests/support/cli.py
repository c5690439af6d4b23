"""The operator's command line, run as an operator runs it: `celery -A tasks ...` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

from devstack import ROOT


def celery(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`celery -A tasks ...` with this process's environment, or `env` (a private stack's)."""
    return subprocess.run([sys.executable, "-m", "celery", "-A", "tasks", *args], cwd=ROOT,
                          env={**os.environ} if env is None else env, capture_output=True, text=True, timeout=60)


def dlq(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return celery("dlq", *args, env=env)
