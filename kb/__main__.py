"""`python -m kb build [--force] [--dir DIR | --profile PROFILE_ID | --all]`: (re)build knowledge-base
indexes from PDF folders: KB_DIR's (the global base, the default), one profile's effective KB_DIR,
or the global base and every active profile's own KB_DIR."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Profile
from db.session import SessionFactory, session_scope
from kb.extract import ExtractionError
from kb.index import BuildReport, build_index, kb_base
from pipeline.profile_settings import effective_settings
from settings import Settings, SettingsError, get_settings, kb_dir_only


class TargetError(Exception):
    """A base cannot be built: the profile is unknown, or its settings do not parse."""


@dataclass(frozen=True)
class Target:
    """One knowledge base to build: its key, its folder, and whom it serves (for messages)."""

    base: str
    folder: Path
    serves: str


def _target_of(profile: Profile, settings: Settings) -> Target:
    try:
        effective, _sources = effective_settings(profile, settings)
    except SettingsError as exc:
        raise TargetError(f"profile {profile.profile_id}: {exc}") from exc
    return Target(base=kb_base(effective.kb_dir, settings.kb_dir), folder=Path(effective.kb_dir),
                  serves=f"profile {profile.profile_id}")


def profile_target(session: Session, profile_id: str, settings: Settings) -> Target:
    """The base of the profile whose `profile_id` column is `profile_id`: its own, or the global one."""
    profile = session.scalars(select(Profile).where(Profile.profile_id == profile_id)).one_or_none()
    if profile is None:
        raise TargetError(f"no profile {profile_id!r} (see `celery -A tasks profiles list`)")
    return _target_of(profile, settings)


def all_targets(session: Session, settings: Settings) -> tuple[list[Target], list[str]]:
    """The global base, then one target per base of the active profiles with their own KB_DIR (profiles
    naming one folder share it); and the problems of profiles whose settings do not parse."""
    folders: dict[str, Path] = {}
    served: dict[str, list[str]] = {}
    problems = []
    for profile in session.scalars(select(Profile).where(Profile.active.is_(True)).order_by(Profile.profile_id)):
        try:
            target = _target_of(profile, settings)
        except TargetError as exc:
            problems.append(str(exc))
            continue
        if target.base:
            folders.setdefault(target.base, target.folder)
            served.setdefault(target.base, []).append(profile.profile_id)
    own = [Target(base=base, folder=folders[base],
                  serves=("profile " if len(served[base]) == 1 else "profiles ") + ", ".join(served[base]))
           for base in sorted(served)]
    return [Target(base="", folder=Path(settings.kb_dir), serves="KB_DIR"), *own], problems


def counts(report: BuildReport) -> str:
    return (f"{len(report.indexed)} indexed, {len(report.unchanged)} unchanged, {len(report.removed)} removed, "
            f"{report.chunks} chunks in all")


def main(argv: list[str] | None = None, sessions: SessionFactory = session_scope) -> int:
    parser = argparse.ArgumentParser(prog="python -m kb", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="index new and changed PDFs, drop removed ones")
    build.add_argument("--force", action="store_true", help="re-index every file")
    which = build.add_mutually_exclusive_group()
    which.add_argument("--dir", type=Path, help="the folder of PDFs of the global base (default: KB_DIR)")
    which.add_argument("--profile", metavar="PROFILE_ID", help="build this profile's KB_DIR into its base")
    which.add_argument("--all", action="store_true",
                       help="build the global base and every active profile's own KB_DIR, one line per base")
    args = parser.parse_args(argv)
    if not (args.profile or args.all):
        try:
            with sessions() as session:
                report = build_index(session, args.dir or kb_dir_only(), force=args.force,
                                     progress=lambda line: print(line, flush=True))
        except (FileNotFoundError, ExtractionError, SettingsError) as exc:
            print(f"kb build: {exc}", file=sys.stderr)
            return 1
        print(f"knowledge base: {counts(report)}")
        return 0

    try:
        settings = get_settings()
        with sessions() as session:
            if args.all:
                targets, problems = all_targets(session, settings)
            else:
                targets, problems = [profile_target(session, args.profile, settings)], []
    except (TargetError, SettingsError) as exc:
        print(f"kb build: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"kb build: {problem}", file=sys.stderr)
    failed = bool(problems)
    # --all prints one line per base; one profile's build shows each file, as the global build does.
    progress = (lambda _line: None) if args.all else (lambda line: print(line, flush=True))
    for target in targets:
        # One transaction per base: a missing folder of one business leaves the others built.
        try:
            with sessions() as session:
                report = build_index(session, target.folder, base=target.base, force=args.force, progress=progress)
        except (FileNotFoundError, ExtractionError) as exc:
            print(f"kb build: {target.serves}: {exc}", file=sys.stderr)
            failed = True
            continue
        print(f"{target.serves} ({target.folder}): {counts(report)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
