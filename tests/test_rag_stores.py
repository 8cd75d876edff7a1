"""The same collection commands on every store: ChromaDB embedded (a directory), a Chroma server that
these tests start (``chroma run``), and Qdrant's local mode; a server that is down or goes away; bad
``--store`` strings. Qdrant's server form is checked only for the down case (no server here).

Each store ingests the same three files, cut at sentences from the first 15,000 characters of
Frankenstein (Walton's first letters, ~20 chunks), so an ingest takes seconds; the embedder is loaded
once per process. Embedded chroma is the reference the other stores are compared with.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import SHARED_DATA
from llmlab.errors import ConfigError, RagError, StoreUnreachableError
from llmlab.rag.collection import Collection, collection_names
from llmlab.rag.documents import document_id
from llmlab.rag.ingestion import ingest
from llmlab.rag.retrieval import retrieve
from llmlab.rag.stores import parse_store

EXCERPT = 15_000
QUESTIONS = [
    "In which port did Walton hire a vessel and collect his sailors?",
    "Which poets did Walton hope to have his name beside in the temple?",
    "Which poem does Walton allude to when he promises to kill no albatross?",
    "Why did the ship's master give his farm to his rival?",
    "How old is Walton, and what does he regret about his education?",
]
RETRIEVERS = ("dense", "bm25", "hybrid")


# --- fixtures: one data directory for the module, real servers, small real files -------------------

@pytest.fixture(scope="module", autouse=True)
def isolated_home(tmp_path_factory):
    """Overrides conftest's per-test home: a server store keeps its records in the data directory,
    which this module's tests and the CLI processes they start must share."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMLAB_HOME", str(home))
        mp.delenv("LLMLAB_DB", raising=False)
        yield home


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_chroma(path: Path, port: int) -> subprocess.Popen:
    """``chroma run`` on 127.0.0.1, returned once its heartbeat answers (or the test fails with its log)."""
    exe = Path(sys.executable).with_name("chroma")
    if not exe.is_file():
        pytest.skip(f"the chroma CLI is not installed beside {sys.executable} (pip install chromadb)")
    log = path.with_suffix(".log")
    with open(log, "w") as out:
        proc = subprocess.Popen([str(exe), "run", "--path", str(path), "--host", "127.0.0.1", "--port",
                                 str(port)], stdout=out, stderr=subprocess.STDOUT)
    for _ in range(300):  # up to a minute; it answers in about a second
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        try:
            proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"chroma run exited with {proc.returncode}: {log.read_text()[-3000:]}")
    proc.kill()
    pytest.fail(f"chroma run did not answer within a minute: {log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    port = free_port()
    proc = start_chroma(tmp_path_factory.mktemp("chroma-server") / "db", port)
    yield f"chroma+http://127.0.0.1:{port}"
    stop(proc)


@pytest.fixture(scope="module")
def parts() -> list[str]:
    """The excerpt in three files' worth, each cut at a sentence."""
    path = SHARED_DATA / "corpus" / "frankenstein.txt"
    if not path.is_file():
        pytest.skip(f"shared novel not found at {path}")
    text = path.read_text()
    text = text[:text.rfind(". ", 0, EXCERPT) + 1]
    cuts = [0] + [text.rfind(". ", 0, len(text) * i // 3) + 1 for i in (1, 2)] + [len(text)]
    return [text[a:b].strip() for a, b in zip(cuts, cuts[1:], strict=False)]


def write_docs(where: Path, parts: list[str]) -> Path:
    where.mkdir(parents=True)
    for name, part in zip(("a.txt", "b.txt", "c.md"), parts, strict=True):
        (where / name).write_text(part)
    return where


def key(hit) -> tuple[str, int]:
    """A chunk named by file name and position: ids hash the full path, which differs per store here."""
    return Path(hit.source).name, int(hit.metadata["chunk"])


def rankings(store) -> dict:
    return {(r, q): [key(h) for h in retrieve(q, "novel", retriever=r, k=5, store=store)]
            for r in RETRIEVERS for q in QUESTIONS}


def ingested(name: str, store, root: Path, parts: list[str]) -> dict:
    docs = write_docs(root / "docs", parts)
    report = ingest([docs], "novel", store=store)
    return {"name": name, "store": store, "docs": docs, "report": report,
            "rankings": rankings(store)}  # taken now, before a test changes the files


@pytest.fixture(scope="module")
def reference(tmp_path_factory, parts):
    """Embedded chroma in a directory (given as a string, as the CLI passes it): today's store, whose
    rankings every other store must reproduce."""
    root = tmp_path_factory.mktemp("chroma-dir")
    return ingested("chroma-dir", str(root / "store"), root, parts)


@pytest.fixture(scope="module", params=["chroma-dir", "chroma-server", "qdrant-local"])
def engine(request, tmp_path_factory, parts, reference):
    if request.param == "chroma-dir":
        return reference  # compared with itself below (trivially); changed, pruned, re-embedded after
    root = tmp_path_factory.mktemp(request.param)
    store = request.getfixturevalue("chroma_server") if request.param == "chroma-server" else \
        f"qdrant:{root / 'store'}"
    return ingested(request.param, store, root, parts)


# --- every store -------------------------------------------------------------------------------------

def test_every_store_ranks_as_embedded_chroma_does(engine, reference):
    got, ref = engine["rankings"], reference["rankings"]
    assert engine["report"].chunks_total == reference["report"].chunks_total > 10
    assert len(engine["report"].added) == 3 and not engine["report"].failed
    for (retriever, question), ids in ref.items():
        mine = got[(retriever, question)]
        assert len(mine) == len(ids) == 5
        if retriever == "bm25":  # the same index over the same chunk texts: exactly the same
            assert mine == ids, (engine["name"], question)
        else:  # chroma's HNSW is approximate and Qdrant's local mode exact: on ~50 chunks they agree
            # on the best hit, and a near tie further down may swap in or out
            assert mine[0] == ids[0], (engine["name"], retriever, question)
            assert len(set(mine) & set(ids)) >= 4, (engine["name"], retriever, question)


def test_reingest_change_prune_and_reembed_on_every_store(engine):
    store, docs = engine["store"], engine["docs"]
    coll = Collection.open("novel", store)
    total = engine["report"].chunks_total
    before = coll.manifest()
    again = ingest([docs], "novel", store=store)
    assert again.chunks_added == 0 and len(again.unchanged) == 3 and coll.manifest() == before
    assert coll.store.count() == total

    changed = docs / "c.md"
    changed.write_text(changed.read_text()[:1000] + "\n\nA last sentence about a brass lantern on the quay.")
    second = ingest([docs], "novel", store=store)
    assert second.replaced == [str(changed.resolve())] and len(second.unchanged) == 2
    chunks = list(coll.store.chunks())
    assert len({c.id for c in chunks}) == len(chunks) == coll.store.count() == second.chunks_total
    assert sum(e["chunks"] for e in coll.manifest()["documents"].values()) == len(chunks)
    assert any("brass lantern" in c.text for c in chunks)
    [hit] = retrieve("brass lantern quay", "novel", retriever="bm25", k=1, store=store)
    assert hit.source == str(changed.resolve())

    gone = docs / "b.txt"
    gone.unlink()
    assert not ingest([docs], "novel", store=store).pruned and coll.store.count() == len(chunks)
    pruned = ingest([docs], "novel", store=store, prune=True)
    assert pruned.pruned == [str(gone.resolve())]
    assert all(c.metadata["source"] != str(gone.resolve()) for c in coll.store.chunks())
    assert coll.store.count() == pruned.chunks_total < len(chunks)

    redone = ingest([changed], "novel", store=store, reembed=True)  # Collection.drop, then this file
    assert redone.added == [str(changed.resolve())] and redone.chunks_total == redone.chunks_added
    assert list(coll.manifest()["documents"]) == [document_id(changed)]
    assert "novel" in collection_names(store)


# --- the CLI against a Chroma server -----------------------------------------------------------------

def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "llmlab", *args], capture_output=True, text=True,
                          timeout=timeout)


def _one_line_error(out) -> str:
    assert out.returncode != 0, out.stdout
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("llmlab: error: ")
    return out.stderr


def test_the_cli_ingests_retrieves_and_lists_on_a_chroma_server(chroma_server, parts, tmp_path):
    doc = tmp_path / "walton.txt"
    doc.write_text(parts[0][:4000])
    out = _cli("rag", "ingest", str(doc), "-c", "cli-novel", "--store", chroma_server)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("collection cli-novel: 1 added")
    out = _cli("rag", "retrieve", "Uncle Thomas' library of voyages", "-c", "cli-novel", "--store",
               chroma_server, "-r", "bm25", "-k", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("1. [") and "walton.txt, chars " in out.stdout
    out = _cli("rag", "collections", "--store", chroma_server)
    assert out.returncode == 0 and "cli-novel\tminilm\t1 documents" in out.stdout.splitlines()
    # the records are local, the chunks on the server
    assert (parse_store(chroma_server).root / "collections" / "cli-novel" / "manifest.json").is_file()
    assert Collection.open("cli-novel", chroma_server).store.count() > 0


# --- a server that is down, or goes away ---------------------------------------------------------------

def test_a_server_that_is_down_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "a.txt").write_text("Gulls over the harbour.")
    port = free_port()  # nobody listens here
    store = f"chroma+http://127.0.0.1:{port}"
    out = _one_line_error(_cli("rag", "ingest", str(tmp_path / "a.txt"), "-c", "gulls", "--store", store))
    assert f"no Chroma server answers at http://127.0.0.1:{port}" in out
    assert f"chroma run --path DIR --host 127.0.0.1 --port {port}" in out
    assert not (parse_store(store).root / "collections").exists()
    with pytest.raises(StoreUnreachableError, match=r"no Qdrant server answers at http://127\.0\.0\.1:\d+ "
                       r".*docker run -p \d+:6333"):
        ingest([tmp_path / "a.txt"], "gulls", store=f"qdrant+http://127.0.0.1:{port}")
    assert collection_names(f"qdrant+http://127.0.0.1:{port}") == []


def test_a_server_that_goes_away_loses_nothing(tmp_path, parts):
    port = free_port()
    data = tmp_path / "db"
    proc = start_chroma(data, port)
    store = f"chroma+http://127.0.0.1:{port}"
    doc = tmp_path / "letter.txt"
    doc.write_text(parts[1][:3000])
    try:
        first = ingest([doc], "letters", store=store)
        coll = Collection.open("letters", store)
        opened = coll.store
    finally:
        stop(proc)
    manifest = (coll.dir / "manifest.json").read_bytes()
    doc.write_text(parts[1][:1500])
    with pytest.raises(StoreUnreachableError, match=f"no Chroma server answers at http://127.0.0.1:{port}"):
        ingest([doc], "letters", store=store)  # this process's client: its heartbeat fails first
    with pytest.raises(StoreUnreachableError, match="chroma run --path DIR"):
        opened.count()  # a store opened before it went away, as mid-ingest
    assert (coll.dir / "manifest.json").read_bytes() == manifest
    for args in (("ingest", str(doc)), ("retrieve", "the ice")):
        out = _one_line_error(_cli("rag", *args, "-c", "letters", "--store", store))
        assert f"no Chroma server answers at http://127.0.0.1:{port}" in out
    assert (coll.dir / "manifest.json").read_bytes() == manifest
    proc = start_chroma(data, port)  # back on the same data: nothing was lost, the change goes in
    try:
        again = ingest([doc], "letters", store=store)
        assert again.replaced == [str(doc.resolve())]
        assert coll.store.count() == again.chunks_total == again.chunks_added < first.chunks_total
    finally:
        stop(proc)


def test_qdrant_local_mode_is_one_process_at_a_time(tmp_path):
    (tmp_path / "a.txt").write_text("Gulls over the harbour.")
    store = f"qdrant:{tmp_path / 'q'}"
    ingest([tmp_path / "a.txt"], "gulls", store=store)  # this process now holds the directory
    out = _one_line_error(_cli("rag", "retrieve", "gulls", "-c", "gulls", "--store", store, "-r", "bm25"))
    assert "is open in another process" in out and "qdrant+http://" in out


# --- the --store string ----------------------------------------------------------------------------

def test_store_strings_parse_in_one_place(isolated_home, tmp_path):
    home = isolated_home / "rag"
    assert parse_store(None).root == home and parse_store(None).path == home / "chroma"
    assert parse_store(str(tmp_path)).path == tmp_path / "chroma"
    assert parse_store(f"chroma:{tmp_path}").path == tmp_path / "chroma"
    q = parse_store(f"qdrant:{tmp_path}")
    assert (q.engine, q.root, q.path, q.url) == ("qdrant", tmp_path, tmp_path / "qdrant", None)
    c = parse_store("chroma+http://localhost:8001/")
    assert (c.engine, c.url, c.root) == ("chroma", "http://localhost:8001", home / "servers" /
                                         "chroma-localhost-8001")
    assert parse_store("qdrant+http://10.0.0.5").url == "http://10.0.0.5:6333"
    assert parse_store(Path("odd:name")).root == Path("odd:name")  # a Path is always a directory
    for spec, message in [("qdrnt:/x", "did you mean 'qdrant'"),
                          ("chroma+htp://h:1", "did you mean 'chroma+http'"),
                          ("http://127.0.0.1:8000", "name the engine: chroma+http://"),
                          ("chroma+http://h:99999", "not a number from 1 to 65535"),
                          ("qdrant://h:6333", "is qdrant+http://HOST:PORT"),
                          ("chroma+http://h:1/db", "is not chroma+http://HOST:PORT"),
                          ("qdrant:", "names no directory")]:
        with pytest.raises(ConfigError, match=message.replace("+", r"\+").replace("(", r"\(")):
            parse_store(spec)


def test_an_unknown_scheme_is_one_line_on_every_command(tmp_path):
    for args in (("collections",), ("retrieve", "x", "-c", "any"), ("ingest", str(tmp_path), "-c", "any")):
        out = _one_line_error(_cli("rag", *args, "--store", "qdrnt:/tmp/x", timeout=120))
        assert "unknown store scheme 'qdrnt'" in out and "did you mean 'qdrant'?" in out


def test_drop_keeps_the_records_when_the_server_is_down(tmp_path):
    """``Collection.drop`` (--reembed) must not forget a collection whose chunks it could not delete."""
    port = free_port()
    store = f"chroma+http://127.0.0.1:{port}"
    coll = Collection.create("kept", store, "minilm", 384)
    coll.save_manifest({"documents": {"d": {"source": "/x", "sha256": "0", "chunks": 1}}})
    with pytest.raises(RagError, match="no Chroma server answers"):
        coll.drop()
    assert coll.manifest()["documents"] == {"d": {"source": "/x", "sha256": "0", "chunks": 1}}
    shutil.rmtree(coll.dir)
