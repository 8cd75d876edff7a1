"""``llmlab serve -m rag/COLLECTION@MODEL``: answers grounded in a collection, with their sources, through
the official openai and ollama clients and LangChain, unchanged. One real server (bundled SmolLM2,
one llama.cpp thread) over a real collection: the first ~30,000 characters of Frankenstein (Walton's
letters to his sister, Mrs. Saville), ingested once with the bundled MiniLM into a temporary store."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from conftest import SHARED_DATA
from llmlab.rag.answer import parse_citations
from llmlab.serve.process import ServerProcess, free_port

NAME = "letters"
RAG = f"rag/{NAME}@smollm2"
QUESTION = "To whom does Walton write his letters?"
EVIDENCE = "Saville"
CHARS = 30_000
ASK = {"temperature": 0, "max_tokens": 40}


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """(store directory, the ingested file's text)."""
    source = SHARED_DATA / "corpus" / "frankenstein.txt"
    if not source.is_file():
        pytest.skip(f"shared novel not found at {source}")
    from llmlab.rag.ingestion import ingest

    root = tmp_path_factory.mktemp("ragserve")
    text = source.read_text()
    text = text[:text.rfind(". ", 0, CHARS) + 1]  # cut at a sentence
    (root / "docs").mkdir()
    (root / "docs" / "frankenstein.txt").write_text(text)
    report = ingest([root / "docs"], NAME, store=root / "store")
    assert report.chunks_total > 10 and not report.failed
    return root / "store", text


@pytest.fixture(scope="module")
def server(collection, tmp_path_factory):
    store, text = collection
    db = tmp_path_factory.mktemp("serve") / "calls.db"
    args = ["--db", str(db), "serve", "-m", "smollm2", "-m", RAG, "--store", str(store), "--rag-k", "3",
            "--threads", "1", "--parallel", "2", "--n-ctx", "1024", "-q"]
    with ServerProcess(args, log=db.with_suffix(".log")) as s:
        s.db, s.text = db, text
        yield s


def check_sources(fields: dict, text: str) -> list[dict]:
    """The sources a rag answer carries: numbered from 1, each the very text at its offsets."""
    sources = fields["sources"]
    assert [s["n"] for s in sources] == list(range(1, len(sources) + 1)) and len(sources) <= 3
    for s in sources:
        assert s["source"] == "frankenstein.txt" and s["page"] is None
        assert text[s["start"]:s["end"]] == s["text"]
        assert s["cited"] == (s["n"] in fields["citations"])
    assert any(EVIDENCE in s["text"] for s in sources)
    assert isinstance(fields["dropped"], int) and isinstance(fields["invalid_citations"], list)
    return sources


def test_openai_client_answer_and_stream_carry_the_sources(server):
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused")
    listed = {m.id: m for m in client.models.list()}
    assert {"smollm2", RAG} <= set(listed)
    assert listed[RAG].model_extra["rag"] == {"collection": NAME, "model": "smollm2", "k": 3,
                                              "retriever": "hybrid"}
    asked = [{"role": "system", "content": "Give short answers."}, {"role": "user", "content": QUESTION}]
    out = client.chat.completions.create(model=RAG, messages=asked, **ASK)
    answer = out.choices[0].message.content
    assert answer.strip() and out.usage.completion_tokens <= 40
    sources = check_sources(out.model_extra, server.text)
    assert out.model_extra["citations"] == parse_citations(answer, len(sources))[0]
    chunks = list(client.chat.completions.create(model=RAG, messages=asked, stream=True,
                                                 stream_options={"include_usage": True}, **ASK))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    last = chunks[-1]  # the one before [DONE]: the usage chunk here, and the sources ride on it
    assert streamed.strip() and last.usage.completion_tokens <= 40
    assert check_sources(last.model_extra, server.text) == sources  # retrieval is deterministic
    assert last.model_extra["citations"] == parse_citations(streamed, len(sources))[0]
    assert not any("sources" in (c.model_extra or {}) for c in chunks[:-1])


def test_ollama_client_and_api_chat_carry_the_sources(server):
    import ollama

    client = ollama.Client(host=server.url)
    assert RAG in [m.model for m in client.list().models]
    options = {"temperature": 0, "num_predict": 40}
    asked = [{"role": "user", "content": QUESTION}]
    reply = client.chat(model=RAG, messages=asked, options=options)
    assert reply.done and reply.message.content.strip() and reply.eval_count <= 40
    # the ollama client's response types drop fields they do not know; the JSON has them
    body = httpx.post(server.url + "/api/chat", json={"model": RAG, "messages": asked, "options": options,
                                                       "stream": False}, timeout=300).json()
    sources = check_sources(body, server.text)
    assert body["citations"] == parse_citations(body["message"]["content"], len(sources))[0]
    with httpx.stream("POST", server.url + "/api/chat", timeout=300,
                      json={"model": RAG, "messages": asked, "options": options}) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[-1]["done"] and check_sources(lines[-1], server.text) == sources
    streamed = "".join(x["message"]["content"] for x in lines)
    assert lines[-1]["citations"] == parse_citations(streamed, len(sources))[0]
    assert not any("sources" in x for x in lines[:-1])
    generated = client.generate(model=RAG, prompt=QUESTION, options=options)  # the prompt is the question
    assert generated.done and generated.response.strip()


def test_langchain_runs_unchanged_against_a_rag_model(server):
    from langchain_ollama import ChatOllama
    from langchain_openai import ChatOpenAI

    messages = [("system", "You are a helpful assistant. Give short straight answers"), ("human", QUESTION)]
    llm = ChatOpenAI(model=RAG, base_url=server.url + "/v1", api_key="unused", temperature=0, max_tokens=40)
    reply = llm.invoke(messages)
    assert isinstance(reply.content, str) and reply.content.strip()
    assert reply.usage_metadata["output_tokens"] <= 40
    local = ChatOllama(model=RAG, base_url=server.url, temperature=0, num_predict=40)
    assert local.invoke(messages).content.strip()


def test_rag_errors_are_400s_in_each_api_format(server):
    # room for the question (about 100 tokens of 1024) but not for the best excerpt beside it
    too_long = {"model": RAG, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 880}
    r = httpx.post(server.url + "/v1/chat/completions", json=too_long, timeout=60)
    assert r.status_code == 400 and "not even the best excerpt fits" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/api/chat", timeout=60, json={
        "model": RAG, "messages": too_long["messages"], "options": {"num_predict": 880}})
    assert r.status_code == 400 and "max_tokens" in r.json()["error"]
    r = httpx.post(server.url + "/v1/completions", json={"model": RAG, "prompt": QUESTION}, timeout=60)
    assert r.status_code == 400 and "chat requests" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/api/generate", timeout=60,
                   json={"model": RAG, "prompt": QUESTION, "raw": True, "stream": False})
    assert r.status_code == 400 and "chat requests" in r.json()["error"]
    r = httpx.post(server.url + "/v1/chat/completions", timeout=60,
                   json={"model": RAG, "messages": [{"role": "system", "content": "Hi"}]})
    assert r.status_code == 400 and "last user message" in r.json()["error"]["message"]


def test_grounded_generations_are_in_the_call_log(server):
    httpx.post(server.url + "/v1/chat/completions", timeout=300, json={
        "model": RAG, "messages": [{"role": "user", "content": QUESTION}], **ASK})
    from llmlab.rag.answer import SYSTEM
    from llmlab.store import Store

    calls = Store.open(server.db).calls(limit=200)
    grounded = [c for c in calls if c["messages"] and c["messages"][0]["content"] == SYSTEM]
    assert grounded and all(c["model"] == "smollm2" and c["backend"] == "llamacpp" for c in grounded)
    assert all(f"Question: {QUESTION}" in c["messages"][-1]["content"] for c in grounded)
    assert any(EVIDENCE in c["messages"][-1]["content"] for c in grounded)


def test_unknown_collection_is_one_line_before_any_model_loads(collection):
    store, _ = collection
    r = subprocess.run([sys.executable, "-m", "llmlab", "serve", "-m", "smollm2", "-m", "rag/leters@smollm2",
                        "--store", str(store), "--port", str(free_port())],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "no collection named 'leters'" in r.stderr and "'letters'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "llmlab", "serve", "-m", "rag/letters",
                        "--port", str(free_port())], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "rag/COLLECTION@MODEL" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_rag_model_alone_serves_its_model_only_through_retrieval():
    """``-m rag/NAME@smollm2`` without ``-m smollm2``: the loaded smollm2 answers to the rag name only,
    and a caller that does not ground its prompt is refused (the workers here get no work)."""
    from llmlab.errors import ModelNotFoundError, NotSupportedError
    from llmlab.serve.models import Served, ServedModels
    from llmlab.serve.rag import RagModel

    models, served = ServedModels(), Served("smollm2", object())
    try:
        models.add_rag(RagModel.parse(RAG), served, "bot")
        assert list(models.by_name) == [RAG, "bot"] and served.names == [RAG, "bot"]
        assert models.get("bot", rag=True) is served and models.get(None, rag=True) is served
        with pytest.raises(NotSupportedError, match="chat requests"):
            models.get(RAG)
        with pytest.raises(ModelNotFoundError):
            models.get("smollm2", rag=True)
    finally:
        served.stop(1)
