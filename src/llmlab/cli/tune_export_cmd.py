"""``llmlab tune merge`` and ``llmlab tune export``: a LoRA adapter as a standalone model or a GGUF.

    llmlab tune merge adapters/film --out merged/film            # then -m hf/merged/film
    llmlab tune export adapters/film --out film-lora.gguf         # then -m llamacpp/smollm2+film-lora.gguf
    llmlab tune export adapters/film --out film.gguf --merged     # then -m film.gguf (f16; --outtype q8_0)
    llmlab tune export merged/film --out film.gguf                # a merged folder, converted

The GGUFs are made by llama.cpp's own converter, fetched once (``python -m llmlab.tune.converter``;
``setup.sh`` does it). torch and transformers are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .main import err
from .tune_cmd import tune_app

BaseOpt = Annotated[str | None, typer.Option(
    "--base", help="the hf/ model the adapter was trained on (default: its llmlab_adapter.json's)")]


@tune_app.command("merge")
def merge_command(
    adapter: Annotated[Path, typer.Argument(help="the adapter folder (llmlab tune's --out)",
                                            show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="the merged model's folder (made if missing)")],
    base: BaseOpt = None,
):
    """Merge an adapter into its base model: a transformers model folder, loadable as hf/OUT."""
    from ..tune.export import merge

    path = merge(adapter, out, base=base)
    err(f"merged model in {path} (float32 safetensors, tokenizer, chat template; provenance in "
        f"llmlab_merged.json); use it as -m hf/{path}")


@tune_app.command("export")
def export_command(
    source: Annotated[Path, typer.Argument(
        help="the adapter folder, or a merged model folder from llmlab tune merge", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="the .gguf file to write")],
    merged: Annotated[bool, typer.Option(
        "--merged", help="a standalone GGUF of base + adapter, instead of a LoRA GGUF for the base")] = False,
    outtype: Annotated[str | None, typer.Option(
        "--outtype", help="f32, f16 or q8_0 (default: f32 for a LoRA GGUF, f16 for a merged one)")] = None,
    base: BaseOpt = None,
):
    """Convert an adapter to GGUF with llama.cpp's converter, to run on the default llama.cpp backend."""
    import json

    from ..tune.export import export

    path = export(source, out, merged=merged, outtype=outtype, base=base)
    record = json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8"))
    if record["kind"] == "lora":
        use = f"llamacpp/{record['base_name']}+{path}"
    else:
        use = str(path)  # a path ending in .gguf: the llama.cpp backend
    size = path.stat().st_size / 1e6
    err(f"{record['kind']} GGUF ({record['outtype']}, {size:.1f} MB) in {path}; use it as -m {use}")
