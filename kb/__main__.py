"""`python -m kb build [--force]`: (re)build the knowledge-base index from the PDFs in KB_DIR."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from db.session import session_scope
from kb.extract import ExtractionError
from kb.index import build_index
from settings import SettingsError, kb_dir_only


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kb", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="index new and changed PDFs, drop removed ones")
    build.add_argument("--force", action="store_true", help="re-index every file")
    build.add_argument("--dir", type=Path, help="the folder of PDFs (default: KB_DIR)")
    args = parser.parse_args(argv)
    folder = args.dir or kb_dir_only()
    try:
        with session_scope() as session:
            report = build_index(session, folder, force=args.force, progress=lambda line: print(line, flush=True))
    except (FileNotFoundError, ExtractionError, SettingsError) as exc:
        print(f"kb build: {exc}", file=sys.stderr)
        return 1
    print(f"knowledge base: {len(report.indexed)} indexed, {len(report.unchanged)} unchanged, "
          f"{len(report.removed)} removed, {report.chunks} chunks in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
