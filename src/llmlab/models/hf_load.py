"""Where an ``hf/`` model's weights, tokenizer and card come from, for ``hf.HFModel``.

Three sources:

- a GGUF file: the card and end-of-generation tokens are read through llama.cpp, exactly as the
  llamacpp backend reads them; transformers dequantizes the weights (reading the file's header three
  times: tokenizer, config, weights);
- a transformers model directory: the card comes from its config and tokenizer;
- ``weights_from``, an ``HFModel`` already loaded from the same file at the same dtype: its weights
  are copied and its tokenizer and card shared, so a second model of one base (the base and a tuned
  one side by side) costs no second conversion. SmolLM2 on 2 AMD EPYC cores: 25 s from the file,
  most of it transformers reading the GGUF header; 0.4 s as a copy.

Torch and transformers are imported only when a model loads.
"""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

from ..errors import ConfigError, MissingDependencyError, ModelLoadError
from .base import ModelInfo
from .llamacpp.gguf import check_gguf, read_vocab  # a GGUF card is read by llama.cpp, as there

_LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError)


def import_torch():
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError("transformers", "hf") from exc
    return torch, transformers


def load_card(path: Path, name: str, dtype: str, weights_from=None) -> tuple[ModelInfo | None, set | None]:
    """What can be known before the weights load, failing fast on a bad source: (card, end-of-generation
    ids). Both are None for a model directory, whose card needs the loaded tokenizer."""
    if weights_from is not None:
        _check_copy_of(weights_from, path, dtype)
        card = copy.deepcopy(weights_from.info)
        card.name = name
        return card, set(weights_from._eog)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a Hugging Face model directory (no config.json)")
        return None, None
    check_gguf(path)
    return read_vocab(path, name, "hf")


def load_weights(path: Path, name: str, dtype, card: ModelInfo | None, verbose: bool, options: dict,
                 weights_from=None) -> tuple:
    """(tokenizer, model in eval mode, card): copied from ``weights_from`` or read by transformers."""
    if weights_from is not None:
        return weights_from.tokenizer, copy.deepcopy(weights_from.model), card
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, kwargs = (path, {}) if path.is_dir() else (path.parent, {"gguf_file": path.name})
    # the GGUF conversion draws progress bars on stderr that a library should not show
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stderr(io.StringIO())
    try:
        with quiet:
            tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(where, local_files_only=True, dtype=dtype,
                                                         **kwargs, **options)
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "transformers", "hf") from exc
    except _LOAD_ERRORS as exc:
        raise ModelLoadError(f"transformers could not load {path}: {exc}") from exc
    model.eval()
    return tokenizer, model, card or _describe_dir(path, name, model, tokenizer)


def _check_copy_of(base, path: Path, dtype: str) -> None:
    """``weights_from`` must be a loaded, plain ``hf/`` model of the same file and dtype."""
    if getattr(base, "backend", None) != "hf" or getattr(base, "model", None) is None:
        raise ConfigError("weights_from must be an open hf/ model")
    if Path(base.info.path).resolve() != path.resolve() or base.runtime.get("dtype") != str(dtype):
        raise ConfigError(f"weights_from is {base.info.path} ({base.runtime.get('dtype')}), "
                          f"not {path} ({dtype})")
    if "adapter" in base.info.extra:
        raise ConfigError("weights_from must be the base model, not one with an adapter on it")


def _describe_dir(path: Path, name: str, model, tokenizer) -> ModelInfo:
    """A model card from a model directory's config and tokenizer."""
    from .base import is_instruct

    cfg = model.config.get_text_config()
    template = tokenizer.chat_template
    if isinstance(template, dict):  # several named templates: the default one renders chats
        template = template.get("default")
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    bos_id = tokenizer.bos_token_id
    trained = getattr(cfg, "max_position_embeddings", None)
    return ModelInfo(
        name=name, backend="hf", path=str(path),
        architecture=getattr(cfg, "model_type", None),
        parameters=sum(p.numel() for p in model.parameters()),
        trained_context_length=trained,
        license=None,
        instruct=is_instruct({"general.name": model.config.name_or_path}, path, template),
        file_size=sum(f.stat().st_size for f in path.iterdir() if f.suffix in (".safetensors", ".bin")),
        chat_template=template or None,
        bos_token=tokenizer.bos_token or "", eos_token=tokenizer.eos_token or "",
        extra={
            "add_bos_token": bos_id is not None and full[:1] == [bos_id] and plain[:1] != [bos_id],
            "vocab_size": getattr(cfg, "vocab_size", None),
            "layers": getattr(cfg, "num_hidden_layers", None),
            "embedding_length": getattr(cfg, "hidden_size", None),
            "dtype": str(model.dtype).removeprefix("torch."),
        },
    )
