"""What a sentence-transformers directory says about itself, read from its JSON files and the
safetensors header, without loading torch: for ``llmlab models`` and ``llmlab info minilm``.

What it gives up: a directory with only ``pytorch_model.bin`` weights has no readable header, so its
parameter count is left unknown (None) rather than unpickled.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path


def _json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _parameters(path: Path) -> int | None:
    """Sum of the tensor sizes in a safetensors header (8-byte length, then JSON)."""
    try:
        with path.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error):
        return None
    total = 0
    for key, tensor in header.items():
        if key != "__metadata__":
            n = 1
            for d in tensor.get("shape", []):
                n *= d
            total += n
    return total


def _licence(readme: Path) -> str | None:
    """``license:`` from a model card's YAML front matter."""
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return None
    if not text.startswith("---"):
        return None
    for line in text.split("---", 2)[1].splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "license" and value.strip():
            return value.strip()
    return None


def read_directory(path: str | Path, name: str | None = None) -> dict:
    """The card of a sentence-transformers model directory (every field None where it does not say)."""
    path = Path(path)
    config = _json(path / "config.json")
    modules = _json(path / "modules.json")
    types = [m.get("type", "") for m in modules if isinstance(m, dict)] if isinstance(modules, list) else []
    pooling = next((path / m.get("path", "") for m in modules if isinstance(m, dict)
                    and m.get("type", "").endswith("Pooling")), None) if types else None
    dim = (_json(pooling / "config.json").get("word_embedding_dimension") if pooling else None) \
        or config.get("hidden_size")
    weights = sorted(path.glob("*.safetensors"))
    params = [_parameters(w) for w in weights]
    return {
        "name": name or path.name, "backend": "st", "path": str(path),
        "architecture": config.get("model_type"), "dimension": dim,
        "max_seq_length": _json(path / "sentence_bert_config.json").get("max_seq_length"),
        "trained_context_length": config.get("max_position_embeddings"),
        "parameters": sum(params) if params and None not in params else None,
        "file_size": sum(w.stat().st_size for w in weights) or None,
        "license": _licence(path / "README.md"),
        "normalized": any(t.endswith("Normalize") for t in types) if types else None,
    }
