"""A LoRA adapter made into something that runs without peft: a merged transformers model, a LoRA GGUF
for llama.cpp, or a standalone GGUF.

    merge(ADAPTER, DIR)                 base + adapter merged (peft's merge_and_unload), saved as a
                                        transformers model directory: hf/DIR
    export(ADAPTER, FILE.gguf)          llama.cpp's convert_lora_to_gguf.py: llamacpp/smollm2+FILE.gguf
    export(ADAPTER, FILE.gguf, merged=True), export(DIR, FILE.gguf)
                                        merged, then llama.cpp's convert_hf_to_gguf.py: llamacpp/FILE.gguf

The base is the one the adapter's ``llmlab_adapter.json`` names, checked as loading it checks it
(``models/adapters.py``). The merged model is saved in float32, the dtype the adapter was trained in
on top of the dequantized GGUF, with the base's tokenizer, chat template and end-of-turn tokens, so
``hf/DIR`` decodes greedily exactly as ``hf/smollm2+ADAPTER`` does. The conversions are llama.cpp's
own scripts (``converter.py`` fetches them), run as subprocesses of this Python; the LoRA GGUF's base
config is written from the transformers-loaded base, never fetched from the hub. Every output gets
its provenance beside it: ``llmlab_merged.json`` in the directory, ``FILE.gguf.json`` beside a GGUF
(for a LoRA GGUF, the base it is checked against when loaded: ``models/llamacpp/lora.py``).

Measured on the colour adapter of the tests (SmolLM2-135M Q4_1 base, rank 4 on q/k/v/o) by
``bench/bench_tune_export.py``: the colour answers are the adapter's in every form. On longer greedy
continuations (12 prompts, 4 chats and 8 raw texts, 48 new tokens; token ids compared with
``hf/smollm2+ADAPTER``):

    merged hf folder                        12 of 12 identical
    merged GGUF, f16 (the default)          12 of 12 identical
    merged GGUF, q8_0                        4 of 12 identical; the others part after 1-25 tokens
    LoRA GGUF on the Q4_1 base               2 of 12 identical; the others part after 2-28 tokens
    (the base alone, llamacpp/ vs hf/)       1 of 12 identical; the others part after 0-26 tokens

The LoRA GGUF parts from transformers as the base itself does: llama.cpp multiplies a Q4_1 layer with
8-bit activations where transformers dequantizes it to float32. A merged f16 GGUF has no Q4_1 layer
left, and its greedy output was transformers' token for token; q8_0 rounds the weights to 8 bits.
``tests/test_tune_export.py`` prints the agreement on every run.

What it gives up: the merged model is five times the Q4_1 base on disk (float32 safetensors, 540 MB;
the f16 GGUF 270 MB, q8_0 145 MB, the LoRA GGUF 2 MB); an
adapter on an hf/ base that is a model directory gets no base check for its LoRA GGUF (its sha256 is of
the directory, not of a GGUF); quantizing below 8 bits is left to llama.cpp's ``llama-quantize``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, ModelLoadError

MERGED_RECORD = "llmlab_merged.json"  # beside a merged model: its base and adapter
OUTTYPES = ("f32", "f16", "q8_0")
DEFAULT_OUTTYPE = {"lora": "f32", "merged": "f16"}  # f16: greedy output as transformers gives it


@dataclass(frozen=True)
class Source:
    """An adapter and the hf/ base it was trained on (checked)."""

    adapter: Path
    base: str           # hf/NAME, as load_model takes it
    base_path: Path     # the base's GGUF file or model directory
    record: dict        # llmlab_adapter.json, or {} for an adapter made elsewhere


def adapter_source(adapter: str | Path, base: str | None = None) -> Source:
    """The adapter in ``adapter`` and its base (``base``, else the one its record names), or a
    one-line error: not an adapter, no base known, or made for another base than ``base``."""
    from ..models.adapters import ADAPTER_RECORD, check_adapter
    from ..models.registry import resolve, split_name

    adapter = Path(adapter).expanduser()
    if not adapter.is_dir():
        raise ModelLoadError(f"adapter directory not found: {adapter}")
    if not (adapter / "adapter_config.json").is_file():
        raise ModelLoadError(f"{adapter} is not a LoRA adapter directory (no adapter_config.json)")
    record = {}
    if (adapter / ADAPTER_RECORD).is_file():
        try:
            record = json.loads((adapter / ADAPTER_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{adapter / ADAPTER_RECORD} cannot be read: {exc}") from exc
    base = base or record.get("base_model")
    if not base:
        raise ConfigError(f"{adapter} does not say which model it was trained on (no {ADAPTER_RECORD}); "
                          "name it with --base, e.g. --base hf/smollm2")
    name = f"hf/{split_name(base)[1]}"  # the adapter is peft's, on the transformers model of that file
    _, _, path = resolve(name)
    check_adapter(adapter, path)
    return Source(adapter.resolve(), name, path, record)


def merge(adapter: str | Path, out: str | Path, *, base: str | None = None, loaded=None) -> Path:
    """Base + adapter merged and saved as a transformers model directory ``out`` (load it as
    ``hf/OUT``). ``loaded``: the base already loaded as an ``hf/`` model, copied rather than reloaded
    (it is left as it was)."""
    src = adapter_source(adapter, base)
    out = _out_dir(out, src)
    start = time.perf_counter()
    model, tokenizer, eog = _merged(src, loaded)
    if eog:  # the ids llama.cpp ends a turn on, which hf/DIR reads from the generation config
        model.generation_config.eos_token_id = sorted(eog)
    try:
        with _quiet():
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write the merged model ({exc.strerror or exc})") from exc
    _write_json(out / MERGED_RECORD, {**_provenance(src), "dtype": str(model.dtype).removeprefix("torch."),
                                      "seconds": round(time.perf_counter() - start, 1)})
    return out


def export(source: str | Path, out: str | Path, *, merged: bool = False, outtype: str | None = None,
           base: str | None = None, loaded=None) -> Path:
    """A GGUF file made by llama.cpp's converter from an adapter directory (a LoRA GGUF, or with
    ``merged`` a standalone model) or from a merged model directory (``merge``'s ``out``)."""
    from .converter import find

    source = Path(source).expanduser()
    out = _out_file(out)
    kind = "merged" if merged or _is_model_dir(source) else "lora"
    outtype = outtype or DEFAULT_OUTTYPE[kind]
    if outtype not in OUTTYPES:
        raise ConfigError(f"--outtype must be one of {', '.join(OUTTYPES)}, got {outtype!r}")
    if _is_model_dir(source):
        src, scripts = None, find()
    else:
        src = adapter_source(source, base)
        scripts = find()  # a missing converter fails before any model loads
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llmlab-export-", dir=out.parent) as tmp:
        tmp = Path(tmp)
        if kind == "lora":
            _base_config(src, loaded).save_pretrained(tmp / "base")
            args = ["convert_lora_to_gguf.py", str(src.adapter), "--base", str(tmp / "base")]
            record = {"kind": "lora", **_provenance(src), "base_name": src.base.removeprefix("hf/")}
            if not src.base_path.is_file():  # a model directory's hash is not a GGUF's
                record["base_sha256"] = None
        else:
            model_dir = source if src is None else merge(source, tmp / "merged", base=base, loaded=loaded)
            args = ["convert_hf_to_gguf.py", str(model_dir)]
            record = {"kind": "merged", **_merged_record(model_dir)}
        _convert(scripts, args + ["--outfile", str(tmp / "out.gguf"), "--outtype", outtype], out)
        os.replace(tmp / "out.gguf", out)
    _write_json(out.with_name(out.name + ".json"),
                {**record, "outtype": outtype, "converter": f"llama.cpp ({scripts})",
                 "seconds": round(time.perf_counter() - start, 1)})
    return out


# --- the parts -----------------------------------------------------------------------------------


def _merged(src: Source, loaded):
    """The merged transformers model (no longer a GGUF-quantized one), its tokenizer and the base's
    end-of-generation ids (None for a model directory, whose generation config has them)."""
    from ..models.adapters import with_adapter
    from ..models.llamacpp.gguf import read_vocab

    m = _base(src, loaded)
    try:
        model = copy.deepcopy(m.model) if loaded is not None else m.model
        with _quiet():
            merged = with_adapter(model, src.adapter).merge_and_unload()
        quantizer = getattr(merged, "hf_quantizer", None)
        if quantizer is not None:  # a GGUF base: transformers dequantized it, so the weights are plain
            if getattr(quantizer, "packed_modules", None):
                raise ModelLoadError(f"{src.base} is loaded with packed GGUF weights, which cannot be "
                                     "merged; uninstall the kernels package to load it dequantized")
            quantizer.remove_quantization_config(merged)
        tokenizer = copy.deepcopy(m.tokenizer)
        if m.info.chat_template:  # the template llmlab renders chats with, the GGUF's own
            tokenizer.chat_template = m.info.chat_template
        eog = read_vocab(src.base_path)[1] if src.base_path.is_file() else None
    finally:
        if loaded is None:
            m.close()
    return merged, tokenizer, eog


def _base(src: Source, loaded):
    from ..models.registry import load_model

    if loaded is None:
        return load_model(src.base, log=False)
    if loaded.backend != "hf" or Path(loaded.info.path) != src.base_path or loaded.info.extra.get("adapter"):
        raise ConfigError(f"the loaded model is not {src.base} without an adapter: {loaded.info.name}")
    return loaded


def _base_config(src: Source, loaded):
    """The base's transformers config as convert_lora_to_gguf.py reads it (``--base``): from the
    loaded model, else read from the GGUF header or the directory (no weights loaded)."""
    if loaded is not None:
        config = copy.deepcopy(_base(src, loaded).model.config)
    else:
        from transformers import AutoConfig

        path = src.base_path
        where, kwargs = (path, {}) if path.is_dir() else (path.parent, {"gguf_file": path.name})
        try:
            config = AutoConfig.from_pretrained(where, local_files_only=True, **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"transformers could not read {path}'s config: {exc}") from exc
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the GGUF's, which the converter does not know
    if not getattr(config, "architectures", None):  # a GGUF header does not name the model class
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        config.architectures = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config.model_type]]
    return config


def _convert(scripts: Path, args: list[str], out: Path) -> None:
    """Run one of llama.cpp's scripts with this Python, offline; its log beside ``out`` if it fails."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("NO_LOCAL_GGUF", None)  # the scripts' own gguf-py, which matches them
    cmd = [sys.executable, str(scripts / args[0]), *args[1:]]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        log = out.with_name(out.name + ".log")
        log.write_text(f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}", encoding="utf-8")
        lines = [x.strip() for x in done.stderr.splitlines() if x.strip()]
        why = next((x for x in reversed(lines) if "ERROR" in x or "Error" in x), lines[-1] if lines else "")
        raise ModelLoadError(f"llama.cpp's {args[0]} failed: {why[:300]} (log: {log})")


def _provenance(src: Source) -> dict:
    from ..models.adapters import adapter_sha256, base_sha256

    record = src.record
    return {"base_model": src.base, "base_path": str(src.base_path),
            "base_sha256": record.get("base_sha256") or base_sha256(src.base_path),
            "adapter": str(src.adapter), "adapter_sha256": adapter_sha256(src.adapter),
            "adapter_run_id": record.get("run_id"), "adapter_fingerprint": record.get("fingerprint")}


def _merged_record(model_dir: Path) -> dict:
    path = model_dir / MERGED_RECORD
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"model": str(model_dir)}
    except (OSError, ValueError):
        return {"model": str(model_dir)}


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file() and not (path / "adapter_config.json").is_file()


def _out_dir(out: str | Path, src: Source) -> Path:
    from ..config import prepare_out

    out = Path(out).expanduser()
    if out.resolve() == src.adapter or (out / "adapter_config.json").is_file():
        raise ConfigError(f"--out {out} holds a LoRA adapter; choose another folder for the merged model")
    return prepare_out(out)


def _out_file(out: str | Path) -> Path:
    from ..config import prepare_out_file

    return prepare_out_file(out, (".gguf",), ".gguf").resolve()


@contextlib.contextmanager
def _quiet():
    """Without the progress bars and deprecation warnings transformers and peft write on stderr."""
    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _write_json(path: Path, data: dict) -> None:
    from .. import __version__

    path.write_text(json.dumps({**data, "llmlab": __version__}, indent=2), encoding="utf-8")

