"""The knowledge-base index: PDFs in the KB folder, extracted and chunked into `kb_chunks`.

A file is re-indexed only when its content hash changes; a removed file leaves the index. Each base
(KB_DIR's, or a profile's own KB_DIR) is indexed apart: a build touches only its own base's rows.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.models import KnowledgeChunk, KnowledgeFile
from kb.chunking import estimate_tokens, split_chunks
from kb.extract import extract_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildReport:
    indexed: list[str]
    unchanged: list[str]
    removed: list[str]
    chunks: int


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def kb_base(kb_dir: str, global_kb_dir: str) -> str:
    """The base a KB_DIR is indexed under: '' for the global KB_DIR's, else the folder normalised.

    Only the configured text is normalised, never resolved against this machine's disk, so every
    worker computes the same key and two profiles naming one folder share one base."""
    folder = os.path.normpath(kb_dir)
    return "" if folder == os.path.normpath(global_kb_dir) else folder


def build_index(session: Session, folder: Path, *, base: str = "", force: bool = False,
                progress: Callable[[str], None] = lambda _line: None) -> BuildReport:
    if not folder.is_dir():
        raise FileNotFoundError(f"knowledge-base folder {folder} does not exist (KB_DIR)")
    files = sorted(folder.rglob("*.pdf"))
    known = {row.path: row for row in session.scalars(select(KnowledgeFile).where(KnowledgeFile.base == base))}
    indexed, unchanged = [], []
    total = len(files)
    for number, path in enumerate(files, start=1):
        relative = str(path.relative_to(folder))
        digest = file_hash(path)
        existing = known.pop(relative, None)
        if existing is not None and existing.sha256 == digest and not force:
            unchanged.append(relative)
            progress(f"[{number}/{total}] {relative}: unchanged")
            continue
        text, extractor = extract_text(path)
        chunks = split_chunks(text)
        if existing is not None:
            session.delete(existing)
            session.flush()
        record = KnowledgeFile(base=base, path=relative, sha256=digest, extractor=extractor, chunk_count=len(chunks))
        session.add(record)
        session.flush()
        session.add_all(KnowledgeChunk(file_id=record.id, position=position, text=chunk,
                                       tokens=estimate_tokens(chunk))
                        for position, chunk in enumerate(chunks))
        indexed.append(relative)
        progress(f"[{number}/{total}] {relative}: {len(chunks)} chunks ({extractor})")
    removed = sorted(known)
    if removed:
        session.execute(delete(KnowledgeFile).where(KnowledgeFile.base == base, KnowledgeFile.path.in_(removed)))
        for relative in removed:
            progress(f"removed {relative}: no longer in the folder")
    session.flush()
    count = session.scalar(select(func.count(KnowledgeChunk.id))
                           .join(KnowledgeFile, KnowledgeFile.id == KnowledgeChunk.file_id)
                           .where(KnowledgeFile.base == base)) or 0
    return BuildReport(indexed=indexed, unchanged=unchanged, removed=removed, chunks=count)
