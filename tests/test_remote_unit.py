"""Unit level: the HTTP backends' retries, error mapping, protocol parsing and settings, against a
fake server (an ``httpx.MockTransport``, named as the fake it is). The real servers are in
``test_remote_servers.py`` and ``test_serve_clients.py``."""

from __future__ import annotations

import json

import httpx
import pytest

from llmlab import GenerationConfig
from llmlab.errors import (
    AuthenticationError,
    NotSupportedError,
    RemoteModelNotFoundError,
    ServerBusyError,
    ServerUnreachableError,
)
from llmlab.models.ollama import OllamaModel, normalize_host, ollama_options
from llmlab.models.openai import OpenAIModel, normalize_base_url
from llmlab.models.remote import split_url


class FakeServer:
    """Answers from a script of (status, body, headers) per call; records every request."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body, headers = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(body, Exception):
            raise body
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, content=content, headers=headers or {})


def fake_openai(*answers, **kw) -> tuple[OpenAIModel, FakeServer]:
    fake = FakeServer(*answers)
    model = OpenAIModel("m", base_url="http://fake/v1", check=False, backoff=0.001,
                        transport=httpx.MockTransport(fake), **kw)
    return model, fake


def sse(*events) -> bytes:
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


def test_retries_429_and_5xx_then_succeeds():
    done = {"choices": [{"text": "ok", "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1}}
    model, fake = fake_openai((429, {"error": "slow down"}, {"Retry-After": "0"}),
                              (503, {"error": {"message": "overloaded"}}, None), (200, sse(done), None))
    r = model.generate("Hi", max_new_tokens=3)
    assert r.text == "ok" and r.usage.prompt_tokens == 2 and len(fake.requests) == 3


def test_gives_up_with_one_clear_error():
    model, _ = fake_openai((503, {"error": {"message": "overloaded"}}, None), retries=2)
    with pytest.raises(ServerBusyError, match="after 2 retries.*overloaded"):
        model.generate("Hi")
    model, fake = fake_openai((0, httpx.ConnectError("refused"), None), retries=1)
    with pytest.raises(ServerUnreachableError, match="http://fake/v1 could not be reached"):
        model.generate("Hi")
    assert len(fake.requests) == 2



def test_a_closed_kept_alive_connection_is_sent_again_at_once_and_not_held_against_the_server():
    """llama-server closes a kept-alive connection after a few requests; the next request on it fails
    before any answer. It is sent again at once, twice at most, and the server is not set aside."""
    done = {"choices": [{"text": "ok", "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1}}
    closed = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    model, fake = fake_openai((0, closed, None), (0, httpx.ReadError("reset"), None), (200, sse(done), None),
                              retries=0)  # no retry left after a failure: only the resend can succeed
    assert model.generate("Hi", max_new_tokens=3).text == "ok" and len(fake.requests) == 3
    server = model.pool.servers[0]
    assert server.failures == 0 and server.down_until == 0 and server.busy == 0
    model, fake = fake_openai((0, closed, None), retries=0)  # a third time is the server's failure
    with pytest.raises(ServerUnreachableError, match="RemoteProtocolError"):
        model.generate("Hi")
    assert len(fake.requests) == 3 and model.pool.servers[0].failures == 1

def test_401_and_unknown_model():
    model, _ = fake_openai((401, {"error": {"message": "Incorrect API key provided"}}, None))
    with pytest.raises(AuthenticationError, match="HTTP 401: Incorrect API key.*OPENAI_API_KEY"):
        model.generate("Hi")
    fake = FakeServer((200, {"data": [{"id": "a"}, {"id": "b"}]}, None))
    with pytest.raises(RemoteModelNotFoundError, match="no model 'm'; it has: a, b"):
        OpenAIModel("m", base_url="http://fake", transport=httpx.MockTransport(fake))


def test_openai_stream_maps_settings_and_counts_a_cut_stream():
    events = [{"choices": [{"delta": {"content": w}, "finish_reason": None}]} for w in ("A", "B", "C")]
    model, fake = fake_openai((200, sse(*events), None))
    response = model.prompt([("user", "Hi")], temperature=0, max_new_tokens=7, seed=3, stop=["\n"])
    pieces = iter(response)
    assert next(pieces) == "A"
    pieces.close()  # the caller stops reading: the partial answer is counted without a tokenizer
    assert response.interrupted and response.usage.completion_tokens == 1
    sent = json.loads(fake.requests[0].content)
    assert sent["temperature"] == 0 and sent["max_tokens"] == 7 and sent["seed"] == 3
    assert sent["stop"] == ["\n"] and sent["stream"] and sent["top_k"] == 40  # not api.openai.com


def test_openai_proper_gets_no_llamacpp_only_fields():
    model = OpenAIModel("gpt-4o-mini", api_key="x", check=False)
    assert model.base_url == "https://api.openai.com/v1"
    assert "top_k" not in model._params(GenerationConfig())


def test_score_reads_echoed_logprobs_of_the_continuation_only():
    lp = {"tokens": ["The", " sky", " is", " blue", "."], "token_logprobs": [None, -5.0, -1.0, -0.5, -9.0],
          "text_offset": [0, 3, 7, 10, 15]}
    model, fake = fake_openai((200, {"choices": [{"text": "", "logprobs": lp}]}, None))
    model._tokenizer_kind = None  # the fake has no tokenizer endpoint
    assert model.score("The sky is", [" blue"]) == [-0.5]
    sent = json.loads(fake.requests[0].content)
    assert sent["echo"] is True and sent["logprobs"] == 1 and sent["prompt"] == "The sky is blue"
    model, _ = fake_openai((200, {"choices": [{"text": "", "logprobs": None}]}, None))
    model._tokenizer_kind = None
    with pytest.raises(NotSupportedError, match="no prompt log-probabilities"):
        model.score("The sky is", [" blue"])


def test_ollama_ndjson_stream_and_options():
    lines = [{"message": {"content": "Hel"}, "done": False}, {"message": {"content": "lo"}, "done": False},
             {"message": {"content": ""}, "done": True, "done_reason": "length",
              "prompt_eval_count": 9, "eval_count": 2}]
    fake = FakeServer((200, b"\n".join(json.dumps(x).encode() for x in lines), None))
    model = OllamaModel("llama3.2:1b", base_url="127.0.0.1:11434", check=False,
                        transport=httpx.MockTransport(fake))
    r = model.generate([("user", "Hi")], temperature=0, max_new_tokens=2, top_k=1)
    assert r.text == "Hello" and r.finish_reason == "length" and r.usage.prompt_tokens == 9
    sent = json.loads(fake.requests[0].content)
    assert fake.requests[0].url.path == "/api/chat"
    assert sent["options"] == {"num_predict": 2, "temperature": 0.0, "top_k": 1, "top_p": 0.95,
                               "repeat_penalty": 1.0}
    with pytest.raises(NotSupportedError, match="no tokenizer"):
        model.tokenize("Hi")
    with pytest.raises(NotSupportedError, match="log-probabilities"):
        model.score("a", ["b"])


def test_ollama_error_line_mid_stream():
    fake = FakeServer((200, b'{"error": "model crashed"}\n', None))
    model = OllamaModel("x", check=False, transport=httpx.MockTransport(fake))
    with pytest.raises(Exception, match="model crashed"):
        model.generate("Hi")


def test_urls_names_and_environment(monkeypatch):
    assert normalize_host("0.0.0.0") == "http://127.0.0.1:11434"
    assert normalize_host("example.org:8080") == "http://example.org:8080"
    assert normalize_host("https://ollama.example") == "https://ollama.example:443"
    assert normalize_base_url("127.0.0.1:8000") == "http://127.0.0.1:8000/v1"
    assert normalize_base_url("http://h:1/api/v1/") == "http://h:1/api/v1"
    assert split_url("llama3.2:1b@http://h:11434") == ("llama3.2:1b", "http://h:11434")
    assert split_url("a@b") == ("a@b", None)
    monkeypatch.setenv("OLLAMA_HOST", "10.0.0.9:1234")
    assert OllamaModel("x", check=False).base_url == "http://10.0.0.9:1234"
    monkeypatch.setenv("LLMLAB_OLLAMA_HOST", "127.0.0.1:5")
    assert OllamaModel("x", check=False).base_url == "http://127.0.0.1:5"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "k1")
    model = OpenAIModel("x", check=False)
    assert model.base_url == "http://127.0.0.1:9/v1" and model.http.headers["authorization"] == "Bearer k1"


def test_options_mapping_greedy():
    opts = ollama_options(GenerationConfig(do_sample=False, temperature=0.7, stop=("x",), seed=1))
    assert opts["temperature"] == 0.0 and opts["stop"] == ["x"] and opts["seed"] == 1
