"""``llmlab models`` and ``llmlab info``: what a model is, from its own metadata, before loading it.

Embedding models (``minilm``, ``st/<dir>``) are listed and described the same way, from their
directory's JSON files (``models/embed_meta.py``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .foundation import _load
from .main import app


def _human_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return "?"


def _human_count(n: int | None) -> str:
    if not n:
        return "?"
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def _kind(instruct: bool | None) -> str:
    return {True: "instruct", False: "base", None: "?"}[instruct]


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json")] = False):
    """List the bundled models, read from their GGUF metadata."""
    from rich.console import Console

    from ..models.embed_meta import read_directory
    from ..models.embedders import BUNDLED_EMBEDDERS
    from ..models.llamacpp.gguf import read_gguf
    from ..models.registry import BACKENDS, BUNDLED

    rows = []
    for alias, bundled in BUNDLED.items():
        if not bundled.installed():
            rows.append({"name": alias, "installed": False, "package": bundled.package})
            continue
        info = read_gguf(bundled.path(), alias)
        rows.append({"name": alias, "installed": True, "backends": list(BACKENDS),
                     "file_size": info.file_size, "parameters": info.parameters,
                     "context_length": info.trained_context_length, "quantization": info.quantization,
                     "license": info.license, "instruct": info.instruct, "path": info.path})
    embedders = []
    for alias, bundled in BUNDLED_EMBEDDERS.items():
        row = {"name": alias, "kind": "embedding", "installed": bundled.installed(),
               "package": bundled.package, "aliases": list(bundled.aliases)}
        if row["installed"]:
            row.update({k: v for k, v in read_directory(bundled.path(), alias).items() if k != "name"})
        embedders.append(row)
    if as_json:
        print(json.dumps(rows + embedders, indent=2))
        return
    console = Console()
    console.print(_bundled_table(
        "bundled models (default backend: llamacpp)",
        ("name", "backends", "file", "params", "context", "quant", "licence", "type"), rows,
        lambda r: (", ".join(r["backends"]), _human_bytes(r["file_size"]), _human_count(r["parameters"]),
                   str(r["context_length"]), r["quantization"] or "?", r["license"] or "?",
                   _kind(r["instruct"]))))
    console.print(_bundled_table(
        "bundled embedding models (load_embedder, llmlab serve -e)",
        ("name", "also", "file", "params", "dimension", "max tokens", "licence"), embedders,
        lambda r: (", ".join(r["aliases"]), _human_bytes(r["file_size"]), _human_count(r["parameters"]),
                   str(r["dimension"]), str(r["max_seq_length"]), r["license"] or "?")))


def _bundled_table(title: str, columns: tuple[str, ...], rows: list[dict], cells):
    """One bundled-model table: a row per model, or the pip command for one not installed."""
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for r in rows:
        if r["installed"]:
            table.add_row(r["name"], *cells(r))
        else:
            table.add_row(r["name"], f"not installed: pip install {r['package']}", *[""] * (len(columns) - 2))
    return table


# Openness by licence id (GGUF ``general.license``, lower case). Open-source licences approved by the
# OSI allow any use; the model families' own licences publish the weights with use restrictions.
OSI_LICENCES = {"apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "gpl-2.0", "gpl-3.0", "lgpl-3.0",
                "mpl-2.0", "agpl-3.0", "isc", "unlicense", "cc0-1.0", "artistic-2.0", "epl-2.0"}
OPEN_DATA_LICENCES = {"cc-by-4.0", "cc-by-sa-4.0", "odc-by", "odbl"}
RESTRICTED_FAMILIES = ("gemma", "llama", "qwen", "openrail", "deepseek", "falcon", "cc-by-nc", "mistral-ai")


def openness(licence: str | None) -> str:
    """A short answer to "may I use it?" from the licence id; the licence text is what binds."""
    lic = (licence or "").strip().lower()
    if not lic:
        return "unknown: the model names no licence; do not assume you may use it"
    if lic in OSI_LICENCES:
        return "open weights, open-source licence (OSI-approved): use, change and share freely"
    if lic in OPEN_DATA_LICENCES:
        return "open weights under an open content licence (attribution)"
    if lic.startswith(RESTRICTED_FAMILIES):
        return "open weights under the model maker's own licence, with use restrictions: read it"
    return "open weights under a licence llmlab does not know: read it"


def model_card(name: str) -> dict:
    """The selection criteria for a model, from its own metadata, without loading the weights."""
    from ..models.embedders import EMBEDDING_ALIASES
    from ..models.llamacpp.gguf import read_gguf
    from ..models.registry import resolve

    if name in EMBEDDING_ALIASES or name.startswith("st/"):
        return embedder_card(name)
    backend, display, path = resolve(name)
    if path is not None and path.suffix == ".gguf" or (path is not None and path.is_file()):
        info = read_gguf(path, display, backend)
    else:
        info = _load(name, log=False).info
    card = info.to_dict()
    params = info.parameters or 0
    card["memory_bytes"] = {k: int(params * b) for k, b in
                            (("fp32", 4), ("fp16", 2), ("int8", 1), ("int4", 0.5))}
    card["has_chat_template"] = bool(info.chat_template)
    card["openness"] = openness(info.license)
    if backend == "llamacpp":
        from ..models.llamacpp.cpu import cpu_path, describe

        card["cpu_path"] = {**cpu_path().to_dict(), "summary": describe()}
    return card


def embedder_card(name: str) -> dict:
    """An embedding model's card from its directory, without loading it."""
    from ..models.embed_meta import read_directory
    from ..models.embedders import resolve_embedder

    _, display, path = resolve_embedder(name)
    card = {"kind": "embedding", **read_directory(path, display)}
    params = card["parameters"] or 0
    card["memory_bytes"] = {k: int(params * b) for k, b in (("fp32", 4), ("fp16", 2))}
    card["openness"] = openness(card["license"])
    return card


@app.command()
def info(model: Annotated[str, typer.Argument(help="backend/name, alias or path")] = "smollm2",
         as_json: Annotated[bool, typer.Option("--json")] = False,
         template: Annotated[bool, typer.Option("--template", help="print the chat template")] = False):
    """The model card: size, context, quantization, licence, base or instruct, memory needed."""
    from rich.console import Console

    card = model_card(model)
    if as_json:
        print(json.dumps(card, indent=2, default=str))
        return
    if card.get("kind") == "embedding":
        Console().print(_embedding_table(card))
        return
    rows = [("file", f"{card['path']} ({_human_bytes(card['file_size'])})"),
            ("architecture", str(card["architecture"])),
            ("parameters", f"{card['parameters']:,}" if card["parameters"] else "?"),
            ("context length", f"{card['trained_context_length']} trained"),
            ("quantization", str(card["quantization"])), ("licence", str(card["license"])),
            ("openness", card["openness"]), ("type", _kind(card["instruct"])),
            ("chat template", "yes" if card["has_chat_template"] else "no (use plain prompts)")]
    rows += [(f"weights at {k}", _human_bytes(v)) for k, v in card["memory_bytes"].items()]
    if "cpu_path" in card:
        rows.append(("CPU path", card["cpu_path"]["summary"]))
    Console().print(_card_table(f"{card['backend']}/{card['name']}", rows))
    if template and card["chat_template"]:
        print(card["chat_template"])


def _embedding_table(card: dict):
    rows = [("directory", f"{card['path']} ({_human_bytes(card['file_size'])})"),
            ("architecture", str(card["architecture"])),
            ("parameters", f"{card['parameters']:,}" if card["parameters"] else "?"),
            ("dimension", str(card["dimension"])),
            ("max tokens", f"{card['max_seq_length']} per text (the rest is cut); "
                           f"{card['trained_context_length']} positions trained"),
            ("normalised", {True: "yes (length 1)", False: "no", None: "?"}[card["normalized"]]),
            ("licence", str(card["license"])), ("openness", card["openness"])]
    rows += [(f"weights at {k}", _human_bytes(v)) for k, v in card["memory_bytes"].items()]
    return _card_table(f"{card['backend']}/{card['name']} (embedding model)", rows)


def _card_table(title: str, rows: list[tuple[str, str]]):
    """A model card as a two-column table: the field in bold, its value."""
    from rich.table import Table

    t = Table(show_header=False, title=title)
    t.add_column(style="bold")
    t.add_column()
    for row in rows:
        t.add_row(*row)
    return t
