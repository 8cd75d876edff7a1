"""A LoRA adapter's identity: which base model it was made for, checked before it is loaded.

``llmlab tune`` writes ``llmlab_adapter.json`` beside peft's files, recording the base model's name
and ``base_sha256`` (a GGUF file's sha256; for a model directory, its config and its weight files'
names and sizes). Loading ``hf/BASE+ADAPTER_DIR`` checks that record against the base being loaded,
so an adapter is never silently applied to another model, then wraps the model in peft's
``PeftModel`` (unmerged, so the weights are exactly those trained). The trainer writes the record,
the hf backend reads it; both import it from here.

What it gives up: an adapter without the record (made by peft elsewhere) is loaded on trust, and
peft's own shape check is the only guard.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import MissingDependencyError, ModelLoadError

ADAPTER_RECORD = "llmlab_adapter.json"  # written by llmlab tune: the base model the adapter was made for


def base_sha256(path: str | Path) -> str:
    """What an adapter records of its base: a GGUF file's sha256, or a model directory's config and
    weight files' names and sizes (hashing gigabytes of safetensors at every load would be slow)."""
    path = Path(path)
    if path.is_file():
        return _sha256(path)
    h = hashlib.sha256((path / "config.json").read_bytes())
    for f in sorted(path.iterdir()):
        if f.suffix in (".safetensors", ".bin"):
            h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()


def adapter_sha256(adapter: Path) -> str | None:
    """The adapter's weights' sha256: a run's identity changes when the adapter is retrained."""
    return _sha256(adapter / "adapter_model.safetensors")


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_adapter(adapter: Path, base: Path) -> Path:
    """A LoRA adapter directory made for this base model, or a one-line ModelLoadError."""
    if not adapter.is_dir():
        raise ModelLoadError(f"adapter directory not found: {adapter}")
    if not (adapter / "adapter_config.json").is_file():
        raise ModelLoadError(f"{adapter} is not a LoRA adapter directory (no adapter_config.json)")
    record = adapter / ADAPTER_RECORD
    if record.is_file():
        try:
            made_for = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{record} cannot be read: {exc}") from exc
        if made_for.get("base_sha256") not in (None, base_sha256(base)):
            raise ModelLoadError(
                f"adapter {adapter} was trained on {made_for.get('base_model')} "
                f"({Path(made_for.get('base_path') or '?').name}), not on {base.name}; load it as "
                f"{made_for.get('base_model')}+{adapter}")
    return adapter


def with_adapter(model, adapter: Path):
    """``model`` (a transformers model) with the adapter on top, unmerged: the weights as trained."""
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise MissingDependencyError("peft", "tune") from exc
    import warnings

    try:
        with warnings.catch_warnings():  # transformers' deprecation of a name peft calls: not the user's
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            return PeftModel.from_pretrained(model, str(adapter)).eval()
    # another base model's shapes, a damaged file
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"the adapter {adapter} does not fit this model: {first}") from exc
