"""llmlab's ``openai/`` backend against a third-party server: llama-cpp-python's own OpenAI-compatible
server (``python -m llama_cpp.server``, under llmlab's safe weight layout) on the bundled SmolLM2,
started once with an API key; and clear errors for an unreachable server."""

from __future__ import annotations

import sys
from contextlib import contextmanager

import pytest

from llmlab import load_model
from llmlab.errors import (
    AuthenticationError,
    NotSupportedError,
    RemoteModelNotFoundError,
    ServerUnreachableError,
)
from llmlab.models.registry import BUNDLED
from llmlab.serve.process import ServerProcess, free_port

KEY = "third-party-key"
# llama-cpp-python's server has no option to turn off weight repacking (llama.cpp's own llama-server
# has --no-repack), so it runs under llmlab's load-time setting: on a CPU with AMX it would segfault.
# The server's code is untouched; only llama_model_default_params() is wrapped while it runs.
SAFE_SERVER = ("import runpy\nfrom llmlab.models.llamacpp.cpu import llama_params\nwith llama_params():\n"
               "    runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)")
QUESTION = "Where is Groningen located?"


@contextmanager
def llama_cpp_server_process(tmp_path_factory, *extra: str):
    """llama-cpp-python's server on the bundled SmolLM2, with an API key and ``extra`` options."""
    port = free_port()
    command = [sys.executable, "-c", SAFE_SERVER, "--model", str(BUNDLED["smollm2"].path()),
               "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024",
               "--api_key", KEY, "--verbose", "false", *extra]
    log = tmp_path_factory.mktemp("llama_cpp_server") / "server.log"
    with ServerProcess(command=command, port=port, ready_path="/docs", log=log) as server:
        yield server.url


@pytest.fixture(scope="module")
def llama_cpp_server(tmp_path_factory):
    with llama_cpp_server_process(tmp_path_factory) as url:
        yield url


@pytest.fixture
def remote(llama_cpp_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    model = load_model(f"openai/smollm2@{llama_cpp_server}", log=True)
    yield model
    model.close()


def test_chat_and_raw_completion_match_the_local_backend(remote, smollm2):
    reply = remote.generate([("user", QUESTION)], temperature=0, max_new_tokens=12)
    assert reply.text == smollm2.generate([("user", QUESTION)], temperature=0, max_new_tokens=12).text
    assert reply.usage.completion_tokens == 12 and reply.finish_reason == "length"
    assert reply.timings.ttft_s is not None and reply.timings.ttft_s > 0
    raw = remote.generate("One, two, three,", temperature=0, max_new_tokens=5)
    assert raw.text == smollm2.generate("One, two, three,", temperature=0, max_new_tokens=5).text
    seeded = [remote.generate("Once upon a time", temperature=0.9, seed=7, max_new_tokens=8).text
              for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_stream_and_stop_strings(remote):
    pieces = list(remote.prompt("1, 2, 3,", temperature=0, max_new_tokens=20, stop=[" 6"]))
    assert len(pieces) > 1 and "".join(pieces).strip().startswith("4") and " 6" not in "".join(pieces)


def test_tokens_through_extras_tokenize(remote, smollm2):
    assert remote.has_tokenizer
    assert [t.id for t in remote.tokenize("Hello world")] == [t.id for t in smollm2.tokenize("Hello world")]
    assert "".join(t.text for t in remote.tokenize("Hello world")) == "Hello world"


def test_score_refuses_a_server_with_shifted_echo_logprobs(remote):
    with pytest.raises(NotSupportedError, match="shifted by one token"):
        remote.score("The capital of France is", [" Paris"])


def test_clear_errors_for_key_model_and_server(llama_cpp_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("LLMLAB_OPENAI_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="HTTP 401"):
        load_model(f"openai/smollm2@{llama_cpp_server}", log=False).generate("Hi", max_new_tokens=2)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with pytest.raises(RemoteModelNotFoundError, match="no model 'gpt-9'; it has: smollm2"):
        load_model(f"openai/gpt-9@{llama_cpp_server}", log=False)
    with pytest.raises(ServerUnreachableError, match="could not be reached"):
        load_model(f"openai/x@http://127.0.0.1:{free_port()}", log=False, retries=1, backoff=0.01)
    with pytest.raises(ServerUnreachableError, match="could not be reached"):
        load_model(f"ollama/x@http://127.0.0.1:{free_port()}", log=False, retries=0)


def test_calls_over_http_are_logged(remote, isolated_home):
    remote.generate("Hi", max_new_tokens=2, temperature=0)
    from llmlab.store import Store

    last = Store.open().calls(limit=1)[0]
    assert last["backend"] == "openai" and last["model"] == "smollm2" and last["completion_tokens"] == 2


def test_cli_takes_the_server_and_key_from_flags(llama_cpp_server, smollm2, tmp_path):
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if "OPENAI" not in k}

    def llmlab(*args):
        return subprocess.run([sys.executable, "-m", "llmlab", "--db", str(tmp_path / "calls.db"), *args],
                              capture_output=True, text=True, env=env, timeout=300)

    args = ["prompt", QUESTION, "-m", "openai/smollm2", "-t", "0", "-n", "12", "--no-stats"]
    result = llmlab(*args, "--base-url", llama_cpp_server, "--api-key", KEY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == smollm2.generate([("user", QUESTION)], temperature=0,
                                                     max_new_tokens=12).text.strip()
    no_key = llmlab(*args, "--base-url", llama_cpp_server)
    assert no_key.returncode != 0 and "401" in no_key.stderr and len(no_key.stderr.splitlines()) == 1
    local = llmlab("prompt", "Hi", "-m", "smollm2", "--base-url", llama_cpp_server)
    assert local.returncode != 0 and "--base-url (base_url) does not apply to llamacpp/" in local.stderr
