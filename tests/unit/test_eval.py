"""The evaluation harness runs end to end (against the emulator here, so the figure is not judged)."""

from __future__ import annotations

import os
import subprocess
import sys

from devstack import ROOT
from tests.eval.run import load_dialogues


def test_labelled_set_covers_every_kind() -> None:
    dialogues = load_dialogues()
    assert len(dialogues) >= 50
    kinds = {dialogue["kind"] for dialogue in dialogues}
    assert {"lead", "friend", "supplier", "spam", "ambiguous"} <= kinds
    assert {dialogue["label"] for dialogue in dialogues} == {True, False, None}


def test_make_eval_prints_accuracy_and_confusion() -> None:
    environ = {key: value for key, value in os.environ.items() if key not in ("GEMINI_API_KEY", "GEMINI_BASE_URL")}
    result = subprocess.run([sys.executable, "-m", "tests.eval.run"], cwd=ROOT, env=environ, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "using the Gemini emulator" in result.stdout
    assert "dialogues: 55" in result.stdout and "accuracy:" in result.stdout
    assert "label \\ predicted" in result.stdout and "unclear" in result.stdout
