"""Files in, plain text out: what ``llmlab rag ingest`` can read, one ``Page`` of text at a time.

    .txt .md    read as UTF-8, as they are (Markdown markup is kept: it is text, and worth matching)
    .html .htm  the text between the tags (stdlib ``html.parser``; script and style dropped)
    .pdf        one ``Page`` per page with its number (pypdf's text extraction)

A folder is read recursively, in sorted order; files with other extensions in it are skipped (a
file named on the command line with another extension is an error). Each document's id is a hash
of its resolved path, so the same file always has the same id and a changed file replaces its chunks.

What it gives up: offsets are into the text llmlab extracted -- for .txt and .md that is the file
itself, for HTML the text without markup, for a PDF the page's extracted text. No OCR: a PDF page
of images has no text. Every failure (not UTF-8, NUL bytes, an encrypted or broken PDF) is a
``RagError`` that names the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from ..errors import RagError

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf"}


@dataclass
class Page:
    text: str
    page: int | None = None  # 1-based page number for a PDF, None for other files


def document_id(path: Path) -> str:
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_files(paths: list[str | Path]) -> list[Path]:
    """Every readable file under ``paths``, resolved, without repeats; an error for nothing at all."""
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            inside = sorted(_walk(path))
            if not inside:
                raise RagError(f"{path}: no files to ingest in this folder (llmlab reads "
                               f"{', '.join(sorted(SUFFIXES))})")
            found.update(dict.fromkeys(p.resolve() for p in inside))
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise RagError(f"{path}: cannot ingest {path.suffix or 'a file without an extension'} "
                               f"files (llmlab reads {', '.join(sorted(SUFFIXES))})")
            found[path.resolve()] = None
        else:
            raise RagError(f"{path}: no such file or folder")
    return list(found)


SKIPPED_DIRS = ("__pycache__", "node_modules", "site-packages")


def _walk(folder: Path):
    """The readable files under ``folder``, leaving out hidden folders (``.git``, ``.venv``) and
    package trees (``node_modules``, ``site-packages``), as a code search tool does."""
    import os

    for top, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS]
        for name in files:
            p = Path(top) / name
            if p.suffix.lower() in SUFFIXES and p.is_file():
                yield p


def read_pages(path: Path) -> list[Page]:
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return _read_pdf(path)
    text = _read_text(path)
    if suffix in HTML_SUFFIXES:
        text = html_text(text)
    return [Page(text)]


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data:
        raise RagError(f"{path}: has NUL bytes, so it is binary, not {path.suffix} text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RagError(f"{path}: not UTF-8 text (byte {exc.start}); convert it with "
                       f"'iconv -t utf-8' first") from exc


class _TextOnly(HTMLParser):
    SKIP = {"script", "style", "head", "noscript", "template"}
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
             "blockquote", "pre", "title", "table", "ul", "ol", "dd", "dt"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def html_text(markup: str) -> str:
    """The text of an HTML page, paragraphs kept apart by blank lines, no markup left."""
    parser = _TextOnly()
    parser.feed(markup)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).split("\n")]
    out, blank = [], False
    for line in lines:
        if line:
            out.append(line)
            blank = False
        elif not blank and out:
            out.append("")
            blank = True
    return "\n".join(out).strip()


def _read_pdf(path: Path) -> list[Page]:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError as exc:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("pypdf", "rag") from exc
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            # an empty user password opens many "protected" PDFs; a real one we cannot guess
            try:
                if not reader.decrypt(""):
                    raise RagError(f"{path}: the PDF is encrypted with a password; decrypt it first "
                                   "(e.g. qpdf --decrypt --password=... in.pdf out.pdf)")
            except NotImplementedError as exc:
                raise RagError(f"{path}: the PDF is encrypted in a way pypdf cannot open") from exc
        pages = [Page(page.extract_text() or "", number) for number, page in enumerate(reader.pages, 1)]
    except RagError:
        raise
    except (PyPdfError, OSError, ValueError, KeyError, TypeError) as exc:
        raise RagError(f"{path}: not a readable PDF ({type(exc).__name__}: {exc})") from exc
    if not any(p.text.strip() for p in pages):
        raise RagError(f"{path}: the PDF has no text to extract ({len(pages)} pages of images or "
                       "blank pages; llmlab does no OCR)")
    return pages
