"""``llmlab cost``: the price table runs are costed with, where it lives, and what prices a model.

    llmlab cost                      # the table and its file ($LLMLAB_PRICES, else the data dir's)
    llmlab cost --init               # write a commented example there to edit
    llmlab cost -m openai/gpt-4o     # which entry prices this model, if any
"""

from __future__ import annotations

from typing import Annotated

import typer

from .main import app, err


@app.command()
def cost(
    init: Annotated[bool, typer.Option("--init", help="write a commented example price table")] = False,
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="say which entry prices this model (repeatable)")] = None,
):
    """Show the price table (USD per 1M tokens, or per hour for models run here) and its file."""
    from rich.console import Console

    from ..cost import init_prices, load_prices
    from ..runs import Table

    if init:
        err(f"wrote {init_prices()}; edit it, then `llmlab cost` shows it")
        return
    prices = load_prices()
    console = Console()
    t = Table(["model (or pattern)", "price"], title=f"prices: {prices.where()}", title_justify="left")
    default = prices.per_hour
    t.add_row("(models run here, unless named)",
              "not set: runs here cost $0" if default is None else f"${default:g} per CPU hour")
    for p in prices.entries:
        t.add_row(p.entry, p.describe())
    console.print(t.to_rich())
    for name in model or []:
        from ..models.registry import REMOTE, resolve

        backend, display, _ = resolve(name)
        price = prices.lookup([f"{backend}/{display}", name, display], backend not in REMOTE)
        entry = "the file's per_hour, for models run here" if price and price.entry == "per_hour" else (
            price and f"entry {price.entry}")
        print(f"{name}: " + (f"{price.describe()} ({entry})" if price else f"no price in {prices.where()}"))
