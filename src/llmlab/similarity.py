"""Embeddings as the course teaches them: cosine similarity between sentences, and a map of a dataset.

``similarity_matrix`` embeds sentences with any embedding model (``load_embedder``) and gives their
cosine matrix (scikit-learn's ``cosine_similarity``). ``embedding_map`` embeds one text column of a
CSV/TSV/JSONL/Parquet file and projects it to two dimensions with PCA or t-SNE (scikit-learn; t-SNE
with a fixed seed, so the same file gives the same map), for a scatter plot coloured or labelled by
other columns (matplotlib).

What it gives up: t-SNE distances between clusters mean little and its layout depends on
``perplexity`` (capped below the number of points); PCA keeps only the two directions of largest
variance. Both are pictures to look at, not measurements.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checks import did_you_mean, whole_number
from .errors import ConfigError, DataError

METHODS = ("pca", "tsne")


def similarity_matrix(texts: list[str], embedder="minilm"):
    """The cosine similarity of every pair of ``texts`` (an (n, n) numpy array)."""
    from sklearn.metrics.pairwise import cosine_similarity

    from .models.embedders import load_embedder

    texts = list(texts)
    if len(texts) < 2:
        raise ConfigError("give at least two texts to compare")
    if any(not t.strip() for t in texts):
        raise ConfigError("a text to compare is empty")
    model = load_embedder(embedder) if isinstance(embedder, str) else embedder
    return cosine_similarity(model.embed(texts))


@dataclass
class EmbeddingMap:
    """Two coordinates per row of a file (``frame`` has the file's columns plus ``x`` and ``y``)."""
    frame: object  # pandas.DataFrame
    method: str
    text_col: str
    embedder: str

    def plot(self, path: Path, color: str | None = None, label: str | None = None) -> Path:
        """A scatter plot: points coloured by the values of ``color``, labelled by ``label``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        frame = self.frame
        for name in (color, label):
            _column(frame, name)
        fig, ax = plt.subplots(figsize=(8, 6))
        if color:
            for value, part in frame.groupby(frame[color].astype(str), sort=True):
                ax.scatter(part["x"], part["y"], s=18, label=value)
            ax.legend(title=color, fontsize="small")
        else:
            ax.scatter(frame["x"], frame["y"], s=18)
        if label:
            for x, y, text in zip(frame["x"], frame["y"], frame[label].astype(str), strict=True):
                ax.annotate(text[:40], (x, y), fontsize=7, alpha=0.8)
        name = "t-SNE" if self.method == "tsne" else "PCA"
        ax.set_title(f"{name} of {self.embedder} embeddings of '{self.text_col}' ({len(frame)} rows)")
        ax.set_xticks([])
        ax.set_yticks([])
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def embedding_map(source, text_col: str = "text", method: str = "pca", embedder="minilm",
                  seed: int = 0, perplexity: float = 30.0, limit: int | None = None) -> EmbeddingMap:
    """Embed ``text_col`` of a file (or DataFrame) and project it to 2-D with PCA or t-SNE."""
    from .evals.data import read_table
    from .models.embedders import load_embedder

    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}{did_you_mean(method, METHODS)}; use pca or tsne")
    whole_number("--seed", seed, least=0)
    frame = read_table(source) if isinstance(source, (str, Path)) else source.copy()
    _column(frame, text_col)
    if limit is not None:
        frame = frame.head(whole_number("--limit", limit))
    frame = frame[frame[text_col].notna() & (frame[text_col].astype(str).str.strip() != "")]
    frame = frame.reset_index(drop=True)
    if len(frame) < 3:
        raise DataError(f"a map needs at least 3 non-empty texts in column {text_col!r}, got {len(frame)}")
    model = load_embedder(embedder) if isinstance(embedder, str) else embedder
    vectors = model.embed(frame[text_col].astype(str).tolist())
    if method == "pca":
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, random_state=seed).fit_transform(vectors)
    else:
        from sklearn.manifold import TSNE

        if not perplexity > 0:
            raise ConfigError(f"--perplexity must be > 0, got {perplexity}")
        # t-SNE needs perplexity < number of points; a small file gets the largest that fits
        xy = TSNE(n_components=2, random_state=seed, init="pca",
                  perplexity=min(perplexity, len(frame) - 1)).fit_transform(vectors)
    frame["x"], frame["y"] = xy[:, 0], xy[:, 1]
    return EmbeddingMap(frame, method, text_col, getattr(model.info, "name", str(embedder)))


def _column(frame, name: str | None) -> None:
    if name is not None and name not in frame.columns:
        cols = [str(c) for c in frame.columns]
        raise DataError(f"no column {name!r}{did_you_mean(name, cols)}; the file has {', '.join(cols)}")
