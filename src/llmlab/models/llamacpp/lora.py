"""A LoRA adapter in GGUF form on a GGUF base (``llamacpp/smollm2+ADAPTER.gguf``): which base it was
made for, checked before loading, and its application to every llama.cpp context of the model.

``llmlab tune export`` converts a peft adapter with llama.cpp's own ``convert_lora_to_gguf.py`` and
writes ``ADAPTER.gguf.json`` beside it: the base model the adapter was trained on and that base's
sha256 (the same record ``llmlab_adapter.json`` keeps for the peft directory). Loading checks the
record against the base GGUF, as ``models/adapters.py`` does for ``hf/BASE+ADAPTER_DIR``; llama.cpp
itself only refuses an adapter whose architecture or tensor shapes differ from the base's.

llama.cpp applies an adapter per context, not per model: llama-cpp-python sets it on the context of
its ``Llama``, and the serving engine's own context gets it through ``apply_lora``. When llama.cpp
refuses an adapter (another architecture, other tensor shapes) llama-cpp-python 0.3.36 does not see
it (its check is ``is None`` on a NULL ctypes pointer) and sets the NULL adapter on the context, which
would crash at the first decode; ``check_applied`` closes such a model and says why in one line.

What it gives up: one adapter per model at scale 1.0 (llama.cpp can mix several with weights); a
LoRA GGUF without its ``.json`` record (made by hand with llama.cpp) is loaded on trust.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import ConfigError, ModelLoadError

LORA_RECORD = ".json"  # ADAPTER.gguf -> ADAPTER.gguf.json, written by llmlab tune export


def record_path(lora: Path) -> Path:
    return lora.with_name(lora.name + LORA_RECORD)


def check_lora(lora: Path, base: Path) -> Path:
    """A LoRA GGUF made for this base GGUF (by its record, when it has one), or a one-line error."""
    from ..adapters import base_sha256

    if lora.is_dir():
        raise ConfigError(f"{lora} is a peft adapter directory, which loads on hf/ models; for llama.cpp "
                          f"convert it first: llmlab tune export {lora} --out ADAPTER.gguf")
    if not lora.is_file():
        raise ModelLoadError(f"LoRA file not found: {lora}")
    record = record_path(lora)
    if not record.is_file():
        return lora
    try:
        made_for = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{record} cannot be read: {exc}") from exc
    if made_for.get("kind") == "merged":
        raise ConfigError(f"{lora} is a merged model, not a LoRA adapter: load it alone, as llamacpp/{lora}")
    wanted = made_for.get("base_sha256")
    if wanted is not None and base.is_file() and wanted != base_sha256(base):
        name = made_for.get("base_name") or made_for.get("base_model") or "?"
        raise ModelLoadError(
            f"LoRA {lora} was made for {name} ({Path(made_for.get('base_path') or '?').name}), not for "
            f"{base.name}; load it as llamacpp/{name}+{lora}")
    return lora


def check_applied(llm, lora: Path, base: Path) -> None:
    """Fail in one line, with the model closed, when llama.cpp did not accept the adapter."""
    if getattr(llm, "_lora_adapter", None):  # a NULL pointer is falsy (and not None)
        return
    arch = llm.metadata.get("general.architecture", "?")
    llm.close()
    raise ModelLoadError(f"llama.cpp refused the LoRA {lora} on {base.name} ({arch}): it was made for "
                         "another model (llama.cpp checks the architecture and the tensor shapes)")


def apply_lora(llm, ctx) -> None:
    """Set the ``Llama``'s LoRA adapter, if it has one, on another context made from its weights."""
    adapter = getattr(llm, "_lora_adapter", None)
    if not adapter:
        return
    import ctypes

    import llama_cpp

    adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
    scales = (ctypes.c_float * 1)(llm.lora_scale)
    if llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, scales):
        raise ModelLoadError(f"llama.cpp could not set the LoRA {llm.lora_path} on a new context")
