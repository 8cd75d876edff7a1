"""RAG's edges on small real files: changed and removed files, PDFs (text, encrypted, broken),
binary files, empty folders, unknown collections, another embedder, a second writer, and the
citation parser. Every collection here is small and built with the real bundled MiniLM."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import SHARED_DATA
from llmlab.errors import CollectionBusyError, CollectionNotFoundError, EmbedderMismatchError, RagError
from llmlab.rag.answer import parse_citations
from llmlab.rag.collection import Collection
from llmlab.rag.ingestion import ingest
from llmlab.rag.retrieval import retrieve


@pytest.fixture(scope="module")
def passage() -> str:
    path = SHARED_DATA / "corpus" / "frankenstein.txt"
    if not path.is_file():
        pytest.skip(f"shared novel not found at {path}")
    return path.read_text()[30_000:36_000]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "llmlab", *args], capture_output=True, text=True,
                          timeout=300)


def test_a_changed_file_replaces_its_chunks_and_prune_removes_a_gone_file(tmp_path, passage):
    docs = tmp_path / "docs"
    docs.mkdir()
    one, two = docs / "one.txt", docs / "two.md"
    one.write_text(passage)
    two.write_text("# Notes\n\nThe harbour master kept a blue ledger. He counted ships at dawn.\n")
    store = tmp_path / "store"
    first = ingest([docs], "small", store=store)
    assert len(first.added) == 2 and first.chunks_total == first.chunks_added
    coll = Collection.open("small", store)
    one.write_text(passage[:3000] + "\n\nA new closing sentence about a lantern on the quay.")
    second = ingest([docs], "small", store=store)
    assert second.replaced == [str(one.resolve())] and second.unchanged == [str(two.resolve())]
    chunks = list(coll.store.chunks())
    assert len({c.id for c in chunks}) == len(chunks) == coll.store.count()
    entries = coll.manifest()["documents"]
    assert sum(e["chunks"] for e in entries.values()) == len(chunks)
    new_text = one.read_text()
    assert all(new_text[c.metadata["start"]:c.metadata["end"]] == c.text
               for c in chunks if c.metadata["source"] == str(one.resolve()))
    assert any("lantern on the quay" in c.text for c in chunks)
    two.unlink()
    kept = ingest([one], "small", store=store)
    assert not kept.pruned and coll.store.count() == len(chunks)  # without --prune nothing goes
    pruned = ingest([one], "small", store=store, prune=True)
    assert pruned.pruned == [str(two.resolve())]
    assert all(c.metadata["source"] != str(two.resolve()) for c in coll.store.chunks())


def test_html_and_markdown_are_read_as_text(tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<html><head><title>T</title><style>p {color: red}</style></head><body>"
                    "<h1>Harbour</h1><p>The keeper&apos;s lamp was <b>green</b>.</p>"
                    "<script>var x = '<p>no</p>';</script></body></html>")
    ingest([page], "web", store=tmp_path / "s")
    [hit] = retrieve("keeper lamp", "web", retriever="bm25", k=1, store=tmp_path / "s")
    assert "The keeper's lamp was green." in hit.text
    assert "<" not in hit.text and "color" not in hit.text and "var x" not in hit.text


def _text_pdf(path, pages, password=None):
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = writer._add_object(DictionaryObject({NameObject("/Type"): NameObject("/Font"),
                                                NameObject("/Subtype"): NameObject("/Type1"),
                                                NameObject("/BaseFont"): NameObject("/Helvetica")}))
    for text in pages:
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
        page[NameObject("/Contents")] = writer._add_object(stream)
    if password:
        writer.encrypt(password)
    writer.write(path)


def test_a_pdf_keeps_its_page_numbers(tmp_path):
    pdf = tmp_path / "log.pdf"
    _text_pdf(pdf, ["The lighthouse keeper was named Arthur Pym.", "On the second page the tide turned."])
    ingest([pdf], "pdfs", store=tmp_path / "s")
    [hit] = retrieve("tide turned", "pdfs", retriever="bm25", k=1, store=tmp_path / "s")
    assert hit.page == 2 and hit.text == "On the second page the tide turned."
    assert hit.where() == f"log.pdf, page 2, chars 0-{len(hit.text)}"


def test_bad_files_each_give_one_line_and_the_good_ones_are_kept(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    _text_pdf(docs / "locked.pdf", ["secret"], password="hunter2")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf\n")
    (docs / "binary.txt").write_bytes(b"ELF\x00\x01\x02 text with NULs")
    (docs / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (docs / "good.txt").write_text("A good file about gulls over the harbour.")
    report = ingest([docs], "mixed", store=tmp_path / "s")
    assert report.added == [str((docs / "good.txt").resolve())]
    reasons = dict(report.failed)
    assert "encrypted with a password" in reasons[str((docs / "locked.pdf").resolve())]
    assert "not a readable PDF" in reasons[str((docs / "broken.pdf").resolve())]
    assert "NUL bytes" in reasons[str((docs / "binary.txt").resolve())]
    assert "not UTF-8" in reasons[str((docs / "latin1.txt").resolve())]
    assert all("\n" not in r for r in reasons.values())
    out = _cli("rag", "ingest", str(docs / "locked.pdf"), "-c", "mixed", "--store", str(tmp_path / "s"))
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("llmlab: error: ")
    assert "encrypted with a password" in out.stderr and "Traceback" not in out.stderr


def test_an_empty_folder_and_an_unknown_collection_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RagError, match="no files to ingest in this folder"):
        ingest([tmp_path / "empty"], "x-empty", store=tmp_path / "s")
    (tmp_path / "a.txt").write_text("Gulls over the harbour.")
    ingest([tmp_path / "a.txt"], "harbour", store=tmp_path / "s")
    with pytest.raises(CollectionNotFoundError,
                       match=r"no collection named 'harbor' \(did you mean 'harbour'\?\)"):
        retrieve("gulls", "harbor", store=tmp_path / "s")
    out = _cli("rag", "retrieve", "gulls", "-c", "harbor", "--store", str(tmp_path / "s"))
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "did you mean 'harbour'?" in out.stderr


def test_another_embedder_is_refused_with_the_command_that_reembeds(tmp_path):
    (tmp_path / "a.txt").write_text("Gulls over the harbour.")
    store = tmp_path / "s"
    ingest([tmp_path / "a.txt"], "gulls", store=store)
    coll = Collection.open("gulls", store)
    meta = coll.meta
    meta["embedder"], meta["dimension"] = "openai/text-embedding-3-small", 1536  # as if built by another
    (coll.dir / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(EmbedderMismatchError, match="--reembed"):
        ingest([tmp_path / "a.txt"], "gulls", store=store)
    with pytest.raises(EmbedderMismatchError, match="embedded with openai/text-embedding-3-small"):
        retrieve("gulls", "gulls", retriever="dense", store=store, embedder="minilm")
    out = _cli("rag", "ingest", str(tmp_path / "a.txt"), "-c", "gulls", "--store", str(store))
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "llmlab rag ingest PATH... --collection gulls --embedder minilm --reembed" in out.stderr
    report = ingest([tmp_path / "a.txt"], "gulls", store=store, reembed=True)
    assert report.added and Collection.open("gulls", store).meta["embedder"] == "minilm"
    [hit] = retrieve("gulls", "gulls", retriever="dense", k=1, store=store)
    assert hit.text == "Gulls over the harbour."


HOLD_LOCK = """
import sys
from llmlab.rag.collection import Collection
with Collection.open(sys.argv[1], sys.argv[2]).writing():
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_a_second_writer_is_refused_at_once(tmp_path):
    (tmp_path / "a.txt").write_text("Gulls over the harbour.")
    store = tmp_path / "s"
    ingest([tmp_path / "a.txt"], "busy", store=store)
    (tmp_path / "b.txt").write_text("Terns over the pier.")
    child = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, "busy", str(store)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        busy = r"collection busy is busy \(another ingest is writing it\)"
        with pytest.raises(CollectionBusyError, match=busy):
            ingest([tmp_path / "b.txt"], "busy", store=store)
        out = _cli("rag", "ingest", str(tmp_path / "b.txt"), "-c", "busy", "--store", str(store))
        assert out.returncode == 1 and "is busy" in out.stderr and out.stderr.count("\n") == 1
    finally:
        child.communicate("done\n", timeout=60)
    assert ingest([tmp_path / "b.txt"], "busy", store=store).added  # free again once the child let go


def test_an_interrupted_document_is_redone_next_time(tmp_path, monkeypatch):
    from llmlab.rag import ingestion as ingest_module

    (tmp_path / "a.txt").write_text("Gulls over the harbour. " * 200)
    store = tmp_path / "s"
    real_add = ingest_module.Collection.store.fget

    class Interrupting:  # the store's add() raises Ctrl-C after writing half the chunks
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def add(self, ids, vectors, texts, metadatas):
            half = len(ids) // 2
            self.inner.add(ids[:half], vectors[:half], texts[:half], metadatas[:half])
            raise KeyboardInterrupt

    monkeypatch.setattr(ingest_module.Collection, "store",
                        property(lambda self: Interrupting(real_add(self))))
    with pytest.raises(KeyboardInterrupt, match="was not finished and will be redone by the next ingest"):
        ingest([tmp_path / "a.txt"], "cut", store=store)
    monkeypatch.undo()
    coll = Collection.open("cut", store)
    assert next(iter(coll.manifest()["documents"].values()))["pending"] is True
    report = ingest([tmp_path / "a.txt"], "cut", store=store)
    assert report.replaced == [str((tmp_path / "a.txt").resolve())]
    assert coll.store.count() == report.chunks_added == coll.manifest()["documents"].popitem()[1]["chunks"]


@pytest.mark.parametrize(("text", "n", "valid", "invalid"), [
    ("Geneva [1][3], and [2, 9]; see [1].", 3, [1, 3, 2], [9]),
    ("No citations at all.", 3, [], []),
    ("Out of range [0] and [4]; fine [2 ; 1].", 3, [2, 1], [0, 4]),
    ("Not a citation: [a] or [1a] or list[1:2].", 5, [], []),
])
def test_citations_are_parsed_and_ids_that_point_nowhere_are_dropped(text, n, valid, invalid):
    assert parse_citations(text, n) == (valid, invalid)


def test_a_folder_is_walked_without_its_hidden_folders_and_package_trees(tmp_path):
    from llmlab.rag.documents import find_files

    for rel in ("notes.txt", "sub/more.md", ".venv/lib/README.txt", ".git/description.txt",
                "node_modules/pkg/readme.md", "sub/__pycache__/x.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("text")
    found = find_files([tmp_path])
    assert sorted(p.relative_to(tmp_path.resolve()).as_posix() for p in found) == ["notes.txt", "sub/more.md"]
    assert find_files([tmp_path / ".venv" / "lib"]) == [(tmp_path / ".venv/lib/README.txt").resolve()]
