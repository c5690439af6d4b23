"""Text out of PDFs: pdfplumber first, pypdf when pdfplumber fails or finds no text."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


class ExtractionError(Exception):
    """Neither extractor could read the file."""


def extract_text(path: Path) -> tuple[str, str]:
    """(text, extractor name). Pages are separated by blank lines."""
    try:
        import pdfplumber  # deferred: heavy, and only `kb build` reads PDFs

        with pdfplumber.open(path) as pdf:
            text = "\n\n".join(page.extract_text() or "" for page in pdf.pages).strip()
        if text:
            return text, "pdfplumber"
        log.warning("pdfplumber found no text in %s; trying pypdf", path.name)
    except Exception as exc:  # noqa: BLE001 - any parser failure means: try the other extractor
        log.warning("pdfplumber failed on %s (%s: %s); trying pypdf", path.name, type(exc).__name__, exc)
    try:
        from pypdf import PdfReader  # deferred: the fallback, loaded only when pdfplumber fails

        reader = PdfReader(path)
        text = "\n\n".join(page.extract_text() or "" for page in reader.pages).strip()
    except Exception as exc:
        raise ExtractionError(f"{path}: neither pdfplumber nor pypdf could read it ({exc})") from exc
    if not text:
        raise ExtractionError(f"{path}: no text found (a scanned PDF needs OCR first)")
    return text, "pypdf"
