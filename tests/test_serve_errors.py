"""Bad requests, the API key, the bounded queue and dropped connections, against a real ``llmlab serve``
(one request at a time: ``--parallel 1 --queue-size 1``). Every error is a 4xx/5xx in the called API's
own format, and the server keeps serving."""

from __future__ import annotations

import httpx
import pytest

from llmlab.serve.process import ServerProcess, free_port

KEY = "sekrit"
AUTH = {"Authorization": f"Bearer {KEY}"}
HI = [{"role": "user", "content": "Hi"}]
CHAT = {"model": "smollm2", "messages": HI, "max_tokens": 3, "temperature": 0}
OLLAMA_CHAT = {"model": "smollm2", "messages": HI, "stream": False,
               "options": {"num_predict": 3, "temperature": 0}}
COUNTING = {"model": "smollm2", "prompt": "1, 2, 3, 4,", "max_tokens": 400, "temperature": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = tmp_path_factory.mktemp("serve") / "calls.db"
    args = ["--db", str(db), "serve", "-m", "smollm2", "--parallel", "1", "--queue-size", "1",
            "--n-ctx", "1024", "--max-body", "65536", "--api-key", KEY, "-q"]
    with ServerProcess(args, log=db.with_suffix(".log")) as s:
        s.db = db
        s.http = httpx.Client(base_url=s.url, headers=AUTH, timeout=60)
        yield s


def openai_error(r, status: int) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "code"} and "\n" not in err["message"]
    return err["message"]


def ollama_error(r, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and "\n" not in body["error"]
    return body["error"]


def test_api_key_is_required(server):
    assert httpx.get(server.url + "/health").status_code == 200  # health checks need no key
    assert "API key" in openai_error(httpx.post(server.url + "/v1/chat/completions", json=CHAT), 401)
    wrong = {"Authorization": "Bearer nope"}
    r = httpx.post(server.url + "/api/chat", json=OLLAMA_CHAT, headers=wrong)
    assert "API key" in ollama_error(r, 401)
    from openai import AuthenticationError, OpenAI

    with pytest.raises(AuthenticationError):
        OpenAI(base_url=server.url + "/v1", api_key="nope").models.list()
    assert server.http.post("/v1/chat/completions", json=CHAT).status_code == 200


@pytest.mark.parametrize("path, body, status, fragment", [
    ("/v1/chat/completions", b"{not json", 400, "not valid JSON"),
    ("/v1/chat/completions", {"model": "smollm2"}, 400, "messages"),
    ("/v1/chat/completions", {**CHAT, "messages": "hi"}, 400, "messages"),
    ("/v1/chat/completions", {**CHAT, "temperature": "hot"}, 400, "temperature"),
    ("/v1/chat/completions", {**CHAT, "max_tokens": -5}, 400, "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "model": "gpt-9"}, 404, "not served here"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "robot", "content": "x"}]}, 400, "role"),
    ("/v1/completions", {**COUNTING, "max_tokens": -1}, 400, "max_tokens"),
    ("/v1/completions", {**COUNTING, "prompt": ""}, 400, "prompt is empty"),
    ("/v1/embeddings", {"model": "minilm", "input": "x"}, 404, "not served here"),
])
def test_bad_openai_requests(server, path, body, status, fragment):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    assert fragment in openai_error(server.http.post(path, **kwargs), status)


@pytest.mark.parametrize("path, body, status, fragment", [
    ("/api/chat", b"[1, 2", 400, "not valid JSON"),
    ("/api/chat", {"messages": []}, 400, "model"),
    ("/api/chat", {**OLLAMA_CHAT, "options": {"num_predict": -7}}, 400, "num_predict"),
    ("/api/chat", {**OLLAMA_CHAT, "options": {"temperature": -1}}, 400, "temperature"),
    ("/api/chat", {**OLLAMA_CHAT, "model": "llama9"}, 404, "not served here"),
    ("/api/generate", {"model": "smollm2", "prompt": 42}, 400, "prompt"),
    ("/api/show", {"model": "llama9"}, 404, "not served here"),
])
def test_bad_ollama_requests(server, path, body, status, fragment):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    assert fragment in ollama_error(server.http.post(path, **kwargs), status)


def test_oversize_bodies_are_refused_and_the_server_keeps_serving(server):
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 70000}]}
    assert "larger than" in openai_error(server.http.post("/v1/chat/completions", json=big), 413)

    def chunked():  # no Content-Length: the guard counts while reading
        yield b'{"model": "smollm2", "prompt": "'
        for _ in range(100):
            yield b"y" * 1000
        yield b'"}'

    assert "larger than" in ollama_error(server.http.post("/api/generate", content=chunked()), 413)
    assert server.http.post("/api/chat", json=OLLAMA_CHAT).json()["done"] is True


def test_unknown_model_through_the_clients(server):
    import ollama
    from openai import NotFoundError, OpenAI

    with pytest.raises(NotFoundError, match="not served here"):
        OpenAI(base_url=server.url + "/v1", api_key=KEY).chat.completions.create(
            model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(ollama.ResponseError) as info:
        ollama.Client(host=server.url, headers=AUTH).chat(model="llama9", messages=HI)
    assert info.value.status_code == 404


def test_full_queue_answers_503_with_retry_after(server):
    import asyncio

    # at most one runs and one waits in the queue (one, if all arrive before the first is taken off
    # the queue); the rest are turned away at once
    async def burst():
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=120) as client:
            return await asyncio.gather(*[client.post("/v1/completions", json={**COUNTING, "max_tokens": 60})
                                          for _ in range(6)])

    replies = asyncio.run(burst())
    statuses = sorted(r.status_code for r in replies)
    assert set(statuses) == {200, 503} and 1 <= statuses.count(200) <= 2, statuses
    busy = next(r for r in replies if r.status_code == 503)
    assert "queue" in openai_error(busy, 503) and busy.headers["retry-after"] == "1"


def test_client_that_leaves_mid_stream_frees_the_model_at_once(server):
    from llmlab.store import Store

    with server.http.stream("POST", "/api/generate", json={
            "model": "smollm2", "prompt": "1, 2, 3, 4,", "raw": True,
            "options": {"num_predict": 1000, "temperature": 0}}) as r:
        lines = r.iter_lines()
        for _ in range(3):
            next(lines)
    # with one worker, this can only run once the abandoned generation has stopped
    reply = server.http.post("/api/chat", json=OLLAMA_CHAT)
    assert reply.status_code == 200 and reply.json()["eval_count"] == 3
    calls = Store.open(server.db).calls(limit=5)
    cut = next(c for c in calls if c["prompt"] == "1, 2, 3, 4,")
    assert cut["finish_reason"] == "interrupted" or cut["interrupted"]
    assert cut["completion_tokens"] < 200, "the abandoned generation went on"


@pytest.mark.parametrize("args, message", [
    (["-m", "nope"], "unknown model 'nope'"),
    (["-m", "=smollm2"], "cannot read model spec"),
    (["--parallel", "0"], "--parallel must be >= 1"),
    (["--port", "BUSY"], "cannot listen on 127.0.0.1"),
])
def test_serve_command_bad_input_is_one_line(args, message):
    import socket
    import subprocess
    import sys

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = [str(busy.getsockname()[1]) if a == "BUSY" else a for a in args]
        if "--port" not in args:
            args += ["--port", str(free_port())]
        r = subprocess.run([sys.executable, "-m", "llmlab", "serve", *args], capture_output=True, text=True,
                           timeout=120)
    assert r.returncode == 1 and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
