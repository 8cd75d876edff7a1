"""Did tuning help? Stratified splits and folds, base against tuned on held-out rows and a second task
(McNemar), drift measured as KL divergence (equal to scipy's), and k-fold cross-validation that tests
every row once and resumes. Real SmolLM2 through transformers, shared with test_tune.py."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("peft")
pytest.importorskip("torch")

from conftest import SHARED_DATA, colour_chats  # noqa: E402
from llmlab.errors import ConfigError, DataError  # noqa: E402
from llmlab.tune import Settings, tune  # noqa: E402
from llmlab.tune.data import folds, split  # noqa: E402

pytestmark = pytest.mark.slow
TOPICS = SHARED_DATA / "lesson" / "topic_classification_dataset.csv"
SMALL = dict(epochs=1, batch_size=8, rank=4, alpha=8, max_length=256, save_every=100)


def film_rows(tmp_path: Path, lesson_data: Path, every: int, name: str = "film.tsv") -> Path:
    lines = (lesson_data / "sentiment_film_data.tsv").read_text().splitlines()
    path = tmp_path / name
    path.write_text("\n".join([lines[0]] + lines[1::every]) + "\n")
    return path


# --- splits ------------------------------------------------------------------------------------------


def test_held_out_split_and_folds_keep_the_label_mix():
    gold = ["pos"] * 12 + ["neg"] * 6 + ["neu"] * 2
    train, val = split(list(range(20)), 0.5, seed=3, strata=gold)
    assert Counter(gold[i] for i in val) == Counter({"pos": 6, "neg": 3, "neu": 1})
    assert sorted(train + val) == list(range(20))
    assert split(list(range(20)), 0.5, seed=3, strata=gold) == (train, val)  # seeded
    pairs = folds(gold, 2, seed=0)
    tested = sorted(i for _, test in pairs for i in test)
    assert tested == list(range(20))  # every row tested exactly once
    for train_pos, test_pos in pairs:
        assert not set(train_pos) & set(test_pos)
        assert Counter(gold[i] for i in test_pos) == Counter({"pos": 6, "neg": 3, "neu": 1})
    with pytest.raises(DataError, match="too few for 5 folds"):
        folds(gold[:6], 5, seed=0)
    with pytest.raises(DataError, match="at least 2"):
        folds(gold, 1, seed=0)


# --- drift -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def colour_tuned(colour_adapter):
    from llmlab import load_model

    model = load_model(f"hf/smollm2+{colour_adapter.out}", log=False)
    yield model
    model.close()


def test_drift_is_zero_against_itself_and_equals_scipys_kl(hf_smollm2, colour_tuned):
    import torch
    from scipy.stats import entropy

    from llmlab.chat import Message
    from llmlab.tune.proof import _greedy, drift

    same = drift(hf_smollm2, hf_smollm2, ["Name a fruit."], max_tokens=6)
    assert same[0]["kl"] == pytest.approx(0, abs=1e-6) and same[0]["agree"] == same[0]["tokens"]
    got = drift(hf_smollm2, colour_tuned, ["Colour of coal?"], max_tokens=6)[0]
    ids = hf_smollm2.prompt_ids([Message("user", "Colour of coal?")])
    seq = _greedy(hf_smollm2, ids, 6)
    with torch.no_grad():
        x = torch.tensor([seq])
        p = torch.softmax(hf_smollm2.model(x).logits[0].double(), -1).numpy()
        q = torch.softmax(colour_tuned.model(x).logits[0].double(), -1).numpy()
    steps = range(len(ids) - 1, len(seq) - 1)
    reference = sum(entropy(p[i], q[i]) for i in steps) / len(steps)
    assert got["tokens"] == len(steps)
    assert got["kl"] == pytest.approx(reference, rel=1e-3)
    assert got["kl"] > 0.05  # the adapter learnt to answer this very prompt otherwise


# --- before and after --------------------------------------------------------------------------------


def test_prove_compares_base_and_tuned_on_held_out_rows_and_a_second_task(hf_smollm2, tmp_path, store,
                                                                          lesson_data):
    from llmlab.tune.proof import prove

    data = film_rows(tmp_path, lesson_data, 6)  # 17 rows: 7 positive, 7 neutral, 3 negative
    result = tune(data, "hf/smollm2", tmp_path / "adapter", settings=Settings(held_out=0.3, **SMALL),
                  loaded=hf_smollm2, store=store, progress=False)
    assert len(result.held_out) == 5
    topics = tmp_path / "topics.csv"  # two sentences of each of the five topics
    lines = TOPICS.read_text().splitlines()
    topics.write_text("\n".join([lines[0]] + [ln for i, ln in enumerate(lines[1:]) if i % 4 < 2]) + "\n")
    proof = prove(result, base=hf_smollm2, store=store, prompts=["Name a fruit."], max_tokens=6,
                  forgetting={"data": topics, "task": "topic"})
    summary = proof.summary()
    assert summary["held-out"]["n"] == 5 and summary["held-out"]["task"] == "sentiment"
    assert summary["forgetting"]["n"] == 10 and summary["forgetting"]["task"] == "topic"
    for check, result_ in proof.checks():
        base, tuned = (result_.correct[r.system.name] for r in result_.runs)
        assert summary[check]["only_base"] == sum(b and not t for b, t in zip(base, tuned, strict=True))
        assert summary[check]["only_tuned"] == sum(t and not b for b, t in zip(base, tuned, strict=True))
        assert 0 <= summary[check]["mcnemar_p"] <= 1
        assert [r.system.model for r in result_.runs] == ["hf/smollm2", f"hf/smollm2+{result.out}"]
    # the held-out rows are exactly the ones kept back from training, with their gold labels
    frame = proof.held_out.dataset.frame
    rows = [ex.where for i, ex in enumerate(result.data.examples) if i in result.held_out]
    assert [f"row {i}" for i in frame["id"]] == rows
    assert summary["drift"]["prompts"] == 1 and summary["drift"]["kl_per_token"] >= 0
    assert len(store.runs(kind="eval")) == 4  # both checks stored as ordinary evaluations
    text = "\n".join(t.to_markdown() for t in proof.tables())
    assert "McNemar p" in text and "forgetting" in text and "KL" in text


def test_prove_on_chats_says_there_is_no_accuracy_to_check(hf_smollm2, colour_adapter, colour_tuned, store):
    from llmlab.tune.proof import prove

    proof = prove(colour_adapter, base=hf_smollm2, tuned=colour_tuned, store=store,
                  prompts=["Colour of snow?"], max_tokens=4)
    assert proof.held_out is None and proof.forgetting is None
    assert any("not labelled" in n for n in proof.notes)
    assert any("--forgetting-data" in n for n in proof.notes)
    with pytest.raises(ConfigError, match="--forgetting-data"):
        prove(colour_adapter, base=hf_smollm2, tuned=colour_tuned, store=store, prompts=(),
              forgetting={"task": "topic"})


# --- k-fold ------------------------------------------------------------------------------------------


def test_kfold_tests_every_row_once_and_resumes(hf_smollm2, tmp_path, store, lesson_data):
    from llmlab.tune.kfold import kfold

    data = film_rows(tmp_path, lesson_data, 17)  # 6 rows
    s = Settings(held_out=0.25, **SMALL)
    cv = kfold(data, "hf/smollm2", tmp_path / "cv", 2, settings=s, store=store, loaded=hf_smollm2,
               progress=False)
    gold = cv.gold
    assert len(gold) == 6 and None not in cv.tuned and len(cv.base) == 6
    assert sum(f["test_rows"] for f in cv.folds) == 6
    for f in cv.folds:
        assert (Path(f["adapter"]) / "adapter_model.safetensors").is_file()
    summary = cv.summary()
    assert summary["tuned"]["accuracy"] == pytest.approx(
        sum(p == g for p, g in zip(cv.tuned, gold, strict=True)) / 6)
    saved = json.loads((tmp_path / "cv" / "kfold.json").read_text())
    assert saved["n"] == 6 and saved["k"] == 2 and len(saved["folds"]) == 2
    tune_runs = [r["id"] for r in store.runs(kind="tune")]
    again = kfold(data, "hf/smollm2", tmp_path / "cv", 2, settings=s, store=store, loaded=hf_smollm2,
                  progress=False)
    assert again.tuned == cv.tuned and [f["run_id"] for f in again.folds] == [f["run_id"] for f in cv.folds]
    assert [r["id"] for r in store.runs(kind="tune")] == tune_runs  # nothing retrained
    with pytest.raises(ConfigError, match="labelled file"):
        kfold(colour_chats(tmp_path / "colours.jsonl"), "hf/smollm2", tmp_path / "c2", 2, store=store,
              loaded=hf_smollm2, progress=False)
