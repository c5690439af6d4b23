"""The knowledge base: Russian text out of the shipped PDF, retrieval, the token budget, rebuilds."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.models import KnowledgeFile
from db.session import session_scope
from devstack import ROOT
from kb.chunking import estimate_tokens, split_chunks
from kb.extract import ExtractionError, extract_text
from kb.index import build_index
from kb.retrieval import Chunk, Index, current_index, knowledge_for

SAMPLE = ROOT / "kb" / "docs" / "sweet_almaty.pdf"


def test_russian_text_survives_extraction() -> None:
    text, extractor = extract_text(SAMPLE)
    assert extractor == "pdfplumber"
    assert "Кондитерская «Сладкий Алматы»" in text
    assert "Торт «Красный бархат», 1 кг — 12 900 ₸." in text
    assert "ё" in text or "печёт" in text


def test_a_broken_pdf_is_named_in_the_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 this is not really a pdf")
    with pytest.raises(ExtractionError, match=r"broken\.pdf"):
        extract_text(broken)


def test_retrieval_finds_the_price_asked_for(database: str) -> None:
    with session_scope() as session:
        build_index(session, SAMPLE.parent)
        index = current_index(session)
        # A budget smaller than the whole base forces ranking instead of "send everything".
        chosen = index.select("Сколько стоит красный бархат?", budget=300)
    assert chosen and any("Красный бархат" in chunk.text and "12 900 ₸" in chunk.text for chunk in chosen)
    assert sum(chunk.tokens for chunk in chosen) <= 300


def test_a_small_base_is_sent_whole(database: str) -> None:
    with session_scope() as session:
        build_index(session, SAMPLE.parent)
        whole = knowledge_for(session, "привет", budget=3000)
    assert "Медовик" in whole and "Частые вопросы" in whole


def test_budget_holds_with_a_base_fifty_times_larger() -> None:
    text, _ = extract_text(SAMPLE)
    chunks = []
    for copy in range(50):
        for position, chunk in enumerate(split_chunks(text)):
            varied = chunk.replace("Торт", f"Торт серии {copy}")
            chunks.append((f"copy{copy:02d}", position, varied))

    index = Index([Chunk(id=number, order=(name, position), text=body, tokens=estimate_tokens(body))
                   for number, (name, position, body) in enumerate(chunks)])
    assert index.total_tokens > 50 * 3000 // 10  # far bigger than the budget
    chosen = index.select("Сколько стоит доставка в пригород, в Талгар?", budget=3000)
    assert sum(chunk.tokens for chunk in chosen) <= 3000
    assert any("Талгар" in chunk.text for chunk in chosen)


def test_rebuild_only_when_a_file_changes(database: str, tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    shutil.copy(SAMPLE, folder / "catalogue.pdf")
    # This replaces the shared database's knowledge base (committed): the sample base is put back
    # whatever happens, since the other tests answer from it.
    try:
        with session_scope() as session:
            session.execute(sa.delete(KnowledgeFile))
        with session_scope() as session:
            first = build_index(session, folder)
        with session_scope() as session:
            second = build_index(session, folder)
        assert first.indexed == ["catalogue.pdf"] and second.indexed == [] and second.unchanged == ["catalogue.pdf"]
        (folder / "catalogue.pdf").unlink()
        with session_scope() as session:
            third = build_index(session, folder)
        assert third.removed == ["catalogue.pdf"] and third.chunks == 0
    finally:
        with session_scope() as session:
            build_index(session, SAMPLE.parent)


def test_build_command_shows_progress(database: str) -> None:
    result = subprocess.run([sys.executable, "-m", "kb", "build", "--force"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "[1/1] sweet_almaty.pdf:" in result.stdout and "chunks" in result.stdout
    missing = subprocess.run([sys.executable, "-m", "kb", "build", "--dir", "/nonexistent/kb"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "/nonexistent/kb" in missing.stderr
