"""Retrieval: the chunks most relevant to a conversation, within a token budget.

BM25 (rank-bm25) over Russian word stems (snowballstemmer): it ranks well for short, keyword-heavy
customer questions, needs no model, and works the same whatever the database. A knowledge base
that fits in the budget is sent whole. Each base (KB_DIR's, or a profile's own) is searched alone.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

import snowballstemmer
from rank_bm25 import BM25Okapi
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from db.models import KnowledgeChunk, KnowledgeFile
from db.session import execute_core

WORD = re.compile(r"[0-9a-zа-я]+")
_stemmer = snowballstemmer.stemmer("russian")


def tokenize(text: str) -> list[str]:
    words = WORD.findall(text.lower().replace("ё", "е"))
    return [stem for stem in _stemmer.stemWords(words) if len(stem) > 1]


@dataclass(frozen=True)
class Chunk:
    id: int
    order: tuple[str, int]
    text: str
    tokens: int


class Index:
    def __init__(self, chunks: list[Chunk]) -> None:
        self.chunks = chunks
        self.total_tokens = sum(chunk.tokens for chunk in chunks)
        self._bm25 = BM25Okapi([tokenize(chunk.text) or ["_"] for chunk in chunks]) if chunks else None

    def select(self, query: str, budget: int) -> list[Chunk]:
        """The best chunks for `query` whose tokens add up to at most `budget`, in document order."""
        if not self.chunks:
            return []
        if self.total_tokens <= budget:
            return list(self.chunks)
        assert self._bm25 is not None
        scores = self._bm25.get_scores(tokenize(query))
        ranked = sorted(range(len(self.chunks)), key=lambda index: (-scores[index], index))
        chosen: list[Chunk] = []
        used = 0
        for index in ranked:
            chunk = self.chunks[index]
            if scores[index] <= 0 and chosen:
                break  # the rest share no word with the question
            if used + chunk.tokens <= budget:
                chosen.append(chunk)
                used += chunk.tokens
        return sorted(chosen, key=lambda chunk: chunk.order)


BASE_VERSION = (select(func.count(KnowledgeChunk.id), func.max(KnowledgeChunk.id))
                .join(KnowledgeFile, KnowledgeFile.id == KnowledgeChunk.file_id)
                .where(KnowledgeFile.base == bindparam("base")))  # built once: asked at every answer


def _version(session: Session, base: str) -> tuple[int, int]:
    count, newest = execute_core(session, BASE_VERSION, {"base": base}).one()
    return int(count or 0), int(newest or 0)


CACHED_BASES = 64  # indexes kept per process, the most recently used; a worker serves a few businesses

# (database URL, base) -> (the base's version, its index), least recently used first. Workers may
# run threads, so the cache is read and changed under a lock.
_cache: OrderedDict[tuple[object, str], tuple[tuple[int, int], Index]] = OrderedDict()
_cache_lock = threading.Lock()


def current_index(session: Session, base: str = "") -> Index:
    """This process's index of `base`, reloaded only when that base changed (one cheap query per call).

    The chunks are read in the caller's session, so the index always matches the version seen."""
    version = _version(session, base)
    key = (getattr(session.get_bind(), "url", None), base)  # a URL is an immutable, hashable tuple
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] == version:
            _cache.move_to_end(key)
            return cached[1]
    rows = session.execute(select(KnowledgeChunk.id, KnowledgeFile.path, KnowledgeChunk.position,
                                  KnowledgeChunk.text, KnowledgeChunk.tokens)
                           .join(KnowledgeFile, KnowledgeFile.id == KnowledgeChunk.file_id)
                           .where(KnowledgeFile.base == base)
                           .order_by(KnowledgeFile.path, KnowledgeChunk.position)).all()
    index = Index([Chunk(id=row[0], order=(row[1], row[2]), text=row[3], tokens=row[4]) for row in rows])
    with _cache_lock:
        _cache[key] = (version, index)
        _cache.move_to_end(key)
        while len(_cache) > CACHED_BASES:
            _cache.popitem(last=False)
    return index


def knowledge_for(session: Session, query: str, budget: int, base: str = "") -> str:
    return "\n\n".join(chunk.text for chunk in current_index(session, base).select(query, budget))
