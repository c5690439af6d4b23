"""`make eval`: run the labelled dialogues through the moderator prompt and the configured model.

With GEMINI_API_KEY set it measures the real prompt on the real model (the plan's target is
90 % or more). Without it, it runs end to end against the Gemini emulator, whose keyword
classifier makes the accuracy meaningless: it only proves the harness works.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LABELS: dict[bool | None, str] = {True: "lead", False: "not lead", None: "unclear"}


def load_dialogues() -> list[dict[str, Any]]:
    dialogues: list[dict[str, Any]] = json.loads((HERE / "dialogues.json").read_text(encoding="utf-8"))
    return dialogues


def main() -> int:
    emulator = None
    if not os.environ.get("GEMINI_API_KEY"):
        from emulators.gemini import GeminiEmulator  # deferred: only without a real key

        emulator = GeminiEmulator(api_key="eval-key").start()
        os.environ.update({"GEMINI_API_KEY": "eval-key", "GEMINI_BASE_URL": emulator.url})
        print("GEMINI_API_KEY is not set: using the Gemini emulator (the accuracy below is meaningless)\n")
    os.environ.setdefault("WAPPI_TOKEN", "unused-by-eval")
    os.environ.setdefault("WAPPI_PROFILE_ID", "00000000-0000")

    # deferred: the settings are read at import, after the environment above is set
    from clients.gemini import GeminiError, build_client
    from pipeline.classify import VERDICT_SCHEMA, InvalidVerdict, parse_verdict
    from pipeline.history import Turn, contact_data, to_contents
    from prompts import render
    from settings import get_settings

    settings = get_settings()
    client = build_client(settings)
    confusion: Counter[tuple[bool | None, bool | str | None]] = Counter()
    dialogues = load_dialogues()
    try:
        for number, dialogue in enumerate(dialogues, start=1):
            system = render("moderator", business_name=settings.business_name)
            contents = to_contents([Turn(role=turn["role"], text=turn["text"]) for turn in dialogue["turns"]],
                                   contact_data(push_name=dialogue["push_name"] or ""))
            predicted: bool | str | None
            try:
                answer = client.generate(contents, system_instruction=system, response_schema=VERDICT_SCHEMA,
                                         model=settings.gemini_classify_model)
                predicted = parse_verdict(answer.text).is_client
            except (GeminiError, InvalidVerdict) as exc:
                predicted = "invalid"
                print(f"  {dialogue['id']}: {type(exc).__name__}: {exc}", file=sys.stderr)
            confusion[(dialogue["label"], predicted)] += 1
            print(f"\r{number}/{len(dialogues)}", end="", flush=True)
    finally:
        if emulator is not None:
            emulator.stop()
    print()
    correct = sum(count for (label, predicted), count in confusion.items() if label == predicted)
    columns: list[bool | str | None] = [True, False, None, "invalid"]
    print(f"model: {settings.gemini_classify_model}   dialogues: {len(dialogues)}")
    print(f"accuracy: {correct / len(dialogues):.1%} ({correct}/{len(dialogues)}); target 90 %\n")
    header = "label \\ predicted".ljust(18) + "".join(LABELS.get(c, str(c)).rjust(10)  # type: ignore[arg-type]
                                                    for c in columns)
    print(header)
    for label in (True, False, None):
        print(LABELS[label].ljust(18) + "".join(str(confusion[(label, column)]).rjust(10) for column in columns))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent.parent))
    sys.exit(main())
