"""The knowledge base: Russian text out of the shipped PDF, retrieval, the token budget, rebuilds, and
one base per business (the bakery of KB_DIR and the flower shop of a profile with its own KB_DIR)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from db.models import KnowledgeChunk, KnowledgeFile, Profile
from db.session import SessionFactory, session_scope
from devstack import ROOT
from kb import retrieval
from kb.__main__ import main as kb_main
from kb.chunking import estimate_tokens, split_chunks
from kb.extract import ExtractionError, extract_text
from kb.index import build_index, file_hash, kb_base
from kb.retrieval import Chunk, Index, current_index, knowledge_for
from settings import get_settings

SAMPLE = ROOT / "kb" / "docs" / "sweet_almaty.pdf"
FLOWERS = ROOT / "kb" / "examples" / "flowers" / "astra_flowers.pdf"
ROSES = "Сколько стоит букет из 25 роз?"


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
            session.execute(sa.delete(KnowledgeFile).where(KnowledgeFile.base == ""))
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


def catalogue_in(folder: Path, pdf: Path) -> Path:
    """`folder` holding `pdf` as catalogue.pdf: every business's file has the same name."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(pdf, folder / "catalogue.pdf")
    return folder


def chunks_in(pdf: Path) -> int:
    return len(split_chunks(extract_text(pdf)[0]))


def files_of(session: Session, base: str) -> list[tuple[str, str, int]]:
    """(path, sha256, chunks in the table) of each file of `base`."""
    return list(session.execute(
        sa.select(KnowledgeFile.path, KnowledgeFile.sha256, sa.func.count(KnowledgeChunk.id))
        .outerjoin(KnowledgeChunk, KnowledgeChunk.file_id == KnowledgeFile.id)
        .where(KnowledgeFile.base == base).group_by(KnowledgeFile.id).order_by(KnowledgeFile.path)).tuples())


def test_a_profile_folder_other_than_kb_dir_is_a_base_of_its_own() -> None:
    assert kb_base("/srv/kb/docs", "/srv/kb/docs") == ""
    assert kb_base("./kb/docs/", "kb/docs") == ""  # the same folder, written another way
    assert kb_base("/srv/kb/astra/", "/srv/kb/docs") == "/srv/kb/astra"
    assert kb_base("/srv/kb/docs/../astra", "/srv/kb/docs") == kb_base("/srv/kb/astra", "/srv/kb/docs")
    # Never resolved on this machine, so every worker computes the same key from the same setting.
    assert kb_base("kb/docs", str(ROOT / "kb" / "docs")) == "kb/docs"


def test_two_bases_are_indexed_apart(session: Session, tmp_path: Path) -> None:
    bakery = catalogue_in(tmp_path / "bakery", SAMPLE)
    flowers = catalogue_in(tmp_path / "flowers", FLOWERS)
    global_files = files_of(session, "")
    assert global_files  # the shipped bakery, built with the test database

    first = build_index(session, bakery, base="/srv/kb/bakery")
    second = build_index(session, flowers, base="/srv/kb/astra")
    assert first.indexed == second.indexed == ["catalogue.pdf"]  # one path, two bases
    assert first.chunks == chunks_in(SAMPLE) and second.chunks == chunks_in(FLOWERS)  # each its own only

    again = build_index(session, bakery, base="/srv/kb/bakery")
    assert again.unchanged == ["catalogue.pdf"] and again.removed == [] and again.chunks == first.chunks
    (bakery / "catalogue.pdf").unlink()
    emptied = build_index(session, bakery, base="/srv/kb/bakery")
    assert emptied.removed == ["catalogue.pdf"] and emptied.chunks == 0

    assert files_of(session, "/srv/kb/bakery") == []
    assert files_of(session, "/srv/kb/astra") == [("catalogue.pdf", file_hash(FLOWERS), second.chunks)]
    assert files_of(session, "") == global_files  # KB_DIR's base untouched by the others' builds


def test_retrieval_answers_from_the_asked_base_only(session: Session) -> None:
    flowers_base = kb_base(str(FLOWERS.parent), str(SAMPLE.parent))
    build_index(session, SAMPLE.parent)
    build_index(session, FLOWERS.parent, base=flowers_base)

    flowers = knowledge_for(session, ROSES, budget=3000, base=flowers_base)
    bakery = knowledge_for(session, ROSES, budget=3000)
    assert "Букет «Весна», 25 роз — 18 500 ₸." in flowers
    assert "Сладкий Алматы" not in flowers and "Медовик" not in flowers
    assert "Медовик" in bakery and "Астра" not in bakery and "роз" not in bakery

    # A budget smaller than the flower shop's base: ranked, and still only from that base.
    ranked = current_index(session, flowers_base).select(ROSES, budget=200)
    assert any("25 роз — 18 500 ₸" in chunk.text for chunk in ranked)
    assert all("Алматы" not in chunk.text for chunk in ranked)
    assert knowledge_for(session, ROSES, budget=3000, base="/srv/kb/nobody") == ""


def test_each_base_keeps_its_own_cached_index(session: Session) -> None:
    flowers_base = kb_base(str(FLOWERS.parent), str(SAMPLE.parent))
    build_index(session, FLOWERS.parent, base=flowers_base)
    bakery_index = current_index(session)
    flowers_index = current_index(session, flowers_base)
    assert current_index(session) is bakery_index  # asking for the other base did not evict it
    assert current_index(session, flowers_base) is flowers_index

    build_index(session, FLOWERS.parent, base=flowers_base, force=True)  # new chunk rows: a new version
    reloaded = current_index(session, flowers_base)
    assert reloaded is not flowers_index
    assert [chunk.text for chunk in reloaded.chunks] == [chunk.text for chunk in flowers_index.chunks]
    assert {chunk.id for chunk in reloaded.chunks}.isdisjoint(chunk.id for chunk in flowers_index.chunks)
    assert current_index(session) is bakery_index  # its version did not change


def test_the_index_cache_is_bounded(session: Session) -> None:
    first = current_index(session, "/srv/kb/first")
    for number in range(retrieval.CACHED_BASES - 1):
        current_index(session, f"/srv/kb/other-{number}")
    assert current_index(session, "/srv/kb/first") is first  # the most recently used stay
    for number in range(retrieval.CACHED_BASES):
        current_index(session, f"/srv/kb/newer-{number}")
    assert current_index(session, "/srv/kb/first") is not first  # the least recently used went


def test_build_profile_names_what_is_missing(session: Session, sessions: SessionFactory,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert kb_main(["build", "--profile", "no-such-profile"], sessions) == 1
    assert "no-such-profile" in capsys.readouterr().err

    session.add(Profile(profile_id="astra-missing", settings={"KB_DIR": "/nonexistent/astra"}))
    session.flush()
    assert kb_main(["build", "--profile", "astra-missing"], sessions) == 1
    error = capsys.readouterr().err
    assert "profile astra-missing" in error and "/nonexistent/astra" in error
    assert files_of(session, "/nonexistent/astra") == []


def test_build_profile_builds_its_own_base(session: Session, sessions: SessionFactory, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    folder = catalogue_in(tmp_path / "astra", FLOWERS)
    session.add(Profile(profile_id="astra-1", settings={"KB_DIR": str(folder)}))
    session.flush()
    global_files = files_of(session, "")

    assert kb_main(["build", "--profile", "astra-1"], sessions) == 0
    output = capsys.readouterr().out
    assert "[1/1] catalogue.pdf:" in output and f"profile astra-1 ({folder}): 1 indexed" in output
    base = kb_base(str(folder), get_settings().kb_dir)
    assert base == str(folder) and files_of(session, base)[0][:2] == ("catalogue.pdf", file_hash(FLOWERS))
    assert "Букет «Весна»" in knowledge_for(session, ROSES, budget=3000, base=base)
    assert files_of(session, "") == global_files


def test_build_all_builds_each_base_once(session: Session, sessions: SessionFactory, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    shared = catalogue_in(tmp_path / "astra", FLOWERS)
    elsewhere = catalogue_in(tmp_path / "inactive", FLOWERS)
    session.add_all([
        Profile(profile_id="astra-1", settings={"KB_DIR": str(shared)}),
        Profile(profile_id="astra-2", settings={"KB_DIR": f"{shared}/"}),  # the same folder: one base
        Profile(profile_id="inactive", active=False, settings={"KB_DIR": str(elsewhere)}),
        Profile(profile_id="global-kb", settings={"KB_DIR": get_settings().kb_dir}),
    ])
    session.flush()

    assert kb_main(["build", "--all"], sessions) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"KB_DIR ({get_settings().kb_dir}): 0 indexed, 1 unchanged, 0 removed, " \
                       f"{chunks_in(SAMPLE)} chunks in all"
    assert [line for line in lines if f"({shared})" in line] == [
        f"profiles astra-1, astra-2 ({shared}): 1 indexed, 0 unchanged, 0 removed, {chunks_in(FLOWERS)} chunks in all"]
    assert files_of(session, str(shared)) == [("catalogue.pdf", file_hash(FLOWERS), chunks_in(FLOWERS))]
    assert files_of(session, str(elsewhere)) == []  # an inactive profile's base is not built
