"""``llmlab similarity`` (a cosine matrix of sentences) and ``llmlab embed-plot`` (a 2-D map of a file).

    llmlab similarity "The cat sat on the mat." "A cat was sitting on a rug." "Stocks fell today."
    llmlab embed-plot reviews.csv --text-column text --color label --method tsne --out map.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .main import app, err

EmbedderOpt = Annotated[str, typer.Option(
    "--embedder", "-e", help="embedding model: minilm, st/<dir>, openai/NAME[@URL], ollama/NAME[@URL]")]


@app.command()
def similarity(
    texts: Annotated[list[str], typer.Argument(help="two or more sentences to compare")],
    embedder: EmbedderOpt = "minilm",
):
    """Cosine similarity between every pair of sentences, as a matrix."""
    from rich.console import Console
    from rich.table import Table

    from ..similarity import similarity_matrix

    matrix = similarity_matrix(texts, embedder)
    table = Table(title=f"cosine similarity ({embedder})", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("text")
    for i in range(len(texts)):
        table.add_column(f"[{i + 1}]", justify="right")
    for i, text in enumerate(texts):
        table.add_row(str(i + 1), text[:60], *(f"{v:.3f}" for v in matrix[i]))
    Console().print(table)


@app.command("embed-plot")
def embed_plot(
    file: Annotated[Path, typer.Argument(help="CSV, TSV, JSONL or Parquet file")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the PNG to write")] = Path("embeddings.png"),
    text_column: Annotated[str, typer.Option("--text-column", "-t", help="the column to embed")] = "text",
    color: Annotated[str | None, typer.Option("--color", "-c", help="colour points by this column")] = None,
    label: Annotated[str | None, typer.Option("--label", help="write this column beside each point")] = None,
    method: Annotated[str, typer.Option("--method", help="pca or tsne")] = "pca",
    seed: Annotated[int, typer.Option("--seed", help="random seed (t-SNE's layout)")] = 0,
    perplexity: Annotated[float, typer.Option("--perplexity", help="t-SNE perplexity")] = 30.0,
    limit: Annotated[int | None, typer.Option("--limit", help="only the first N rows")] = None,
    embedder: EmbedderOpt = "minilm",
):
    """Embed a text column and draw it in two dimensions (PCA, or t-SNE with a fixed seed); the
    coordinates are written beside the PNG as CSV."""
    from ..similarity import embedding_map

    m = embedding_map(file, text_column, method, embedder, seed, perplexity, limit)
    png = m.plot(out, color, label)
    coords = png.with_suffix(".csv")
    m.frame.to_csv(coords, index=False)
    err(f"wrote {png} and {coords} ({len(m.frame)} points, {method})")
