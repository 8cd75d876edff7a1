"""llmlab tune merge and export: the colour adapter merged into a transformers folder, converted by
llama.cpp's own converter into a LoRA GGUF and a merged GGUF, each run where it belongs (hf/, the
default llama.cpp backend, llmlab serve with the official openai client), and bad input in one line.

The session's colour adapter and hf/smollm2 are shared with test_tune.py; the exports are made once
for the module. What is compared is greedy token ids: the colour answers must be the adapter's on
every form; on a longer continuation the merged transformers folder must agree token for token, and
the GGUFs' agreement is printed (-s shows it). Measured on the development machine, first differing
token of 48 (see tune/export.py): the merged f16 GGUF agreed on every token, the LoRA GGUF on the Q4_1
base parted from transformers after 11 tokens of the sea sentence, as the Q4_1 base itself does
(llama.cpp computes a Q4_1 layer with 8-bit activations, transformers in float32).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import COLOURS
from llmlab.errors import ConfigError, LlmlabError, ModelLoadError

COLOUR_PROMPTS = [(f"Colour of {thing}?", colour) for thing, colour in COLOURS[:4]]  # what it was trained on
LONG = "Write a sentence about the sea."  # 17 tokens from the adapter: room to part ways
SRC = str(Path(__file__).resolve().parents[1] / "src")


def greedy_ids(model, prompt: str, n: int = 48) -> list[int]:
    from llmlab.chat import Message
    from llmlab.config import GenerationConfig

    config = GenerationConfig(max_new_tokens=n, temperature=0, logprobs=0)  # logprobs: the token ids
    r = model.generate([Message("user", prompt)], config)
    return [t.id for t in r.logprobs]


def answers(model) -> dict[str, list[int]]:
    return {p: greedy_ids(model, p, 8) for p, _ in COLOUR_PROMPTS} | {LONG: greedy_ids(model, LONG)}


def agreement(a: list[int], b: list[int]) -> int:
    """How many tokens from the start are equal."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text, text
    return text


def cli(*args, env_extra=None, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": SRC, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "llmlab", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="module")
def reference(hf_smollm2, colour_adapter):
    """The adapter's greedy answers, as hf/smollm2+ADAPTER gives them: peft's wrapping (the one the hf
    backend applies) on a copy of the session's base, rather than reading the GGUF once more (~25 s)."""
    from llmlab.models.adapters import with_adapter

    tuned = copy.copy(hf_smollm2)
    tuned.model = with_adapter(copy.deepcopy(hf_smollm2.model), colour_adapter.out)
    return answers(tuned)


@pytest.fixture(scope="module")
def exported(hf_smollm2, colour_adapter, tmp_path_factory):
    """The merged folder and the merged GGUF (through the Python API, on the loaded base) and the LoRA
    GGUF (through the command line, which reads the base's config from the GGUF itself)."""
    from llmlab.tune.converter import find
    from llmlab.tune.export import export, merge

    find()  # setup.sh fetched it: fail here with the command to run otherwise
    tmp = tmp_path_factory.mktemp("exported")
    merged = merge(colour_adapter.out, tmp / "merged", loaded=hf_smollm2)
    merged_gguf = export(merged, tmp / "colour-f16.gguf")
    lora = tmp / "colour-lora.gguf"
    done = cli("tune", "export", colour_adapter.out, "--out", lora, env_extra={"LLMLAB_HOME": str(tmp / "h")})
    assert done.returncode == 0, done.stderr
    assert f"use it as -m llamacpp/smollm2+{lora}" in done.stderr
    return SimpleNamespace(merged=merged, merged_gguf=merged_gguf, lora=lora)


@pytest.mark.slow
def test_the_merged_folder_is_a_standalone_model_that_answers_as_the_adapter(exported, reference,
                                                                               colour_adapter):
    from llmlab import load_model
    from llmlab.models.adapters import adapter_sha256

    files = {p.name for p in exported.merged.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "llmlab_merged.json"} <= files
    record = json.loads((exported.merged / "llmlab_merged.json").read_text())
    assert record["base_model"] == "hf/smollm2" and record["dtype"] == "float32"
    assert record["adapter_sha256"] == adapter_sha256(colour_adapter.out)
    model = load_model(f"hf/{exported.merged}", log=False)
    try:
        assert model.info.chat_template and "<|im_start|>" in model.info.chat_template
        got = answers(model)
    finally:
        model.close()
    assert got == reference  # every token, the longer continuation too
    print(f"\nmerged hf folder: all {len(got[LONG])} tokens of {LONG!r} as the adapter's")


@pytest.mark.slow
@pytest.mark.parametrize("form", ["lora", "merged_gguf"])
def test_the_ggufs_answer_as_the_adapter_on_llama_cpp(exported, reference, form):
    from llmlab import load_model
    from llmlab.models.registry import resolve

    path = getattr(exported, form)
    name = f"llamacpp/smollm2+{path}" if form == "lora" else f"llamacpp/{path}"
    assert resolve(name)[0] == "llamacpp"
    model = load_model(name, log=False, n_ctx=512)
    try:
        got = answers(model)
    finally:
        model.close()
    for prompt, colour in COLOUR_PROMPTS:
        assert got[prompt] == reference[prompt], (prompt, colour)
    same = agreement(got[LONG], reference[LONG])
    print(f"\n{form}: the first {same} of {len(reference[LONG])} tokens of {LONG!r} as the adapter's (hf)")
    assert same >= 1
    record = json.loads(path.with_name(path.name + ".json").read_text())
    assert record["kind"] == ("lora" if form == "lora" else "merged") and record["base_model"] == "hf/smollm2"


@pytest.mark.slow
def test_serve_runs_the_lora_gguf_for_the_openai_client(exported, tmp_path):
    from openai import OpenAI

    from llmlab.serve.process import ServerProcess

    args = ["--db", str(tmp_path / "calls.db"), "serve", "-m", f"colour=llamacpp/smollm2+{exported.lora}",
            "--n-ctx", "512", "--parallel", "2", "-q"]
    with ServerProcess(args, env={"PYTHONPATH": SRC}, log=tmp_path / "serve.log") as server:
        client = OpenAI(base_url=server.url + "/v1", api_key="unused")
        for prompt, colour in COLOUR_PROMPTS[:2]:
            out = client.chat.completions.create(
                model="colour", messages=[{"role": "user", "content": prompt}], max_tokens=8, temperature=0)
            assert out.choices[0].message.content.strip() == colour  # the adapter, in the engine's context


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_not_an_adapter_or_not_for_this_base_is_refused_in_one_line(exported, colour_adapter, tmp_path):
    from llmlab import load_model
    from llmlab.tune.export import export, merge

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("not an adapter")
    with pytest.raises(ModelLoadError, match="not a LoRA adapter directory") as exc:
        export(plain, tmp_path / "x.gguf")
    one_line(exc)
    with pytest.raises(ModelLoadError, match="adapter directory not found"):
        merge(tmp_path / "nothing", tmp_path / "m")
    with pytest.raises(ModelLoadError, match="trained on hf/smollm2") as exc:
        export(colour_adapter.out, tmp_path / "x.gguf", base="hf/gemma3-270m")
    one_line(exc)
    with pytest.raises(ConfigError, match="name a .gguf file"):
        export(colour_adapter.out, tmp_path / "x.bin")
    with pytest.raises(ConfigError, match="holds a LoRA adapter"):
        merge(colour_adapter.out, colour_adapter.out)
    assert not (tmp_path / "x.gguf").exists()
    # the LoRA GGUF on another base: refused by its record, and by llama.cpp itself without one
    with pytest.raises(ModelLoadError, match="made for smollm2") as exc:
        load_model(f"llamacpp/gemma3-270m+{exported.lora}", log=False, n_ctx=256)
    assert f"llamacpp/smollm2+{exported.lora}" in one_line(exc)
    bare = tmp_path / "bare.gguf"
    bare.write_bytes(exported.lora.read_bytes())
    with pytest.raises(ModelLoadError, match="llama.cpp refused the LoRA") as exc:
        load_model(f"llamacpp/gemma3-270m+{bare}", log=False, n_ctx=256)
    one_line(exc)
    # a peft folder on llama.cpp, a merged GGUF as an adapter, a LoRA GGUF on hf/
    with pytest.raises(ConfigError, match=f"llmlab tune export {colour_adapter.out}"):
        load_model(f"llamacpp/smollm2+{colour_adapter.out}", log=False)
    with pytest.raises(ConfigError, match="merged model, not a LoRA adapter"):
        load_model(f"llamacpp/smollm2+{exported.merged_gguf}", log=False)
    with pytest.raises(ConfigError, match="loads on llamacpp/"):
        load_model(f"hf/smollm2+{exported.lora}", log=False)


@pytest.mark.slow
def test_a_missing_converter_names_the_fetch_command(colour_adapter, tmp_path, monkeypatch):
    from llmlab.tune import converter
    from llmlab.tune.export import export

    monkeypatch.delenv("LLMLAB_LLAMA_CPP", raising=False)
    monkeypatch.setattr(converter, "_roots", lambda version: [tmp_path / "none"])
    with pytest.raises(LlmlabError, match="run once: python -m llmlab.tune.converter") as exc:
        export(colour_adapter.out, tmp_path / "x.gguf")
    one_line(exc)
    monkeypatch.setenv("LLMLAB_LLAMA_CPP", str(tmp_path))
    with pytest.raises(LlmlabError, match="LLMLAB_LLAMA_CPP") as exc:
        converter.find()
    one_line(exc)


def test_cli_errors_are_one_line(tmp_path):
    done = cli("tune", "merge", tmp_path, "--out", tmp_path / "m", env_extra={"LLMLAB_HOME": str(tmp_path)})
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "not a LoRA adapter directory" in done.stderr
    done = cli("tune", "export", tmp_path, "--out", tmp_path / "x.gguf", "--outtype", "q4_0",
               env_extra={"LLMLAB_HOME": str(tmp_path)})
    assert done.returncode == 1 and "--outtype must be one of f32, f16, q8_0" in done.stderr


def test_the_converter_keeps_only_its_own_files_from_the_sdist(tmp_path):
    """A small stand-in sdist (the real one is 76 MB): only the converter's regular files come out,
    nothing outside the folder, no links."""
    import io

    from llmlab.tune.converter import _complete, _extract

    archive = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    top = "llama_cpp_python-9.9.9/vendor/llama.cpp/"
    kept = ["convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/__init__.py",
            "gguf-py/gguf/__init__.py", "LICENSE"]
    files = {top + name: b"#" for name in kept} | {
        top + "src/llama.cpp": b"//", "llama_cpp_python-9.9.9/setup.py": b"", top + "../../../evil.py": b"x"}
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(top + "conversion/link.py")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    dest = tmp_path / "out"
    dest.mkdir()
    _extract(archive, dest)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == sorted(kept)
    assert _complete(dest) and not (tmp_path / "evil.py").exists()
