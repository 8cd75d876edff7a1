"""llmlab tune: the assistant-only mask, reproducible and resumable LoRA runs, adapters in load_model,
bad input in one line, and the CLI end to end. Real SmolLM2 through transformers, loaded once; every
run is a few optimizer steps on a handful of short conversations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("peft")
pytest.importorskip("torch")

from conftest import COLOURS, colour_chats  # noqa: E402
from llmlab.chat import Message  # noqa: E402
from llmlab.errors import ConfigError, DataError, MissingDependencyError, ModelLoadError  # noqa: E402
from llmlab.tune import Settings, tune  # noqa: E402
from llmlab.tune.encode import IGNORE, encode  # noqa: E402

pytestmark = pytest.mark.slow
TINY = dict(rank=4, alpha=8, max_length=96, save_every=1)


@pytest.fixture(scope="module")
def base(hf_smollm2):
    return hf_smollm2


@pytest.fixture(scope="module")
def overfit(colour_adapter):
    return colour_adapter


def chats(tmp_path: Path, pairs=COLOURS, name="colours.jsonl") -> Path:
    return colour_chats(tmp_path / name, pairs)


def film(tmp_path: Path, n: int, lesson_data: Path) -> Path:
    lines = (lesson_data / "sentiment_film_data.tsv").read_text().splitlines()
    rows = [lines[0]] + lines[1::100 // n][:n]
    path = tmp_path / "film.tsv"
    path.write_text("\n".join(rows) + "\n")
    return path


# --- the mask ------------------------------------------------------------------------------------


def test_only_assistant_tokens_carry_loss(base):
    msgs = [Message("user", "Hi"), Message("assistant", "Hello there"), Message("user", "Bye"),
            Message("assistant", "Goodbye")]
    ids, labels = encode(base, msgs)
    assert len(ids) == len(labels)
    trained = [base.token_text(i) for i, y in zip(ids, labels, strict=True) if y != IGNORE]
    assert "".join(trained) == "Hello there<|im_end|>Goodbye<|im_end|>"
    assert all(y in (IGNORE, i) for i, y in zip(ids, labels, strict=True))
    # the prompt is exactly what `llmlab prompt`/`eval` send for the first turn, and carries no loss
    head = base.prompt_ids(msgs[:1])
    assert ids[:len(head)] == head and set(labels[:len(head)]) == {IGNORE}
    # the user's second turn is prompt too
    second = base.token_ids("Bye", special=False)
    at = next(i for i in range(len(ids)) if ids[i:i + len(second)] == second)
    assert set(labels[at:at + len(second)]) == {IGNORE}


def test_labelled_rows_are_the_prompts_eval_sends(base, tmp_path, lesson_data):
    from llmlab.tasks import load_task, messages
    from llmlab.tune.data import read_training_data

    data = read_training_data(film(tmp_path, 6, lesson_data), strategy="few-shot")
    task = load_task("sentiment")
    ex = data.examples[0]
    assert data.format == "labelled" and len(data.examples) == 6
    text = ex.messages[-2].content.split("Text: ", 1)[1]
    assert list(ex.messages[:-1]) == messages(task, task.strategy("few-shot"), text)
    assert ex.messages[-1].content in task.labels
    ids, labels = encode(base, ex.messages, last_only=True)
    trained = "".join(base.token_text(i) for i, y in zip(ids, labels, strict=True) if y != IGNORE)
    assert trained == ex.messages[-1].content + "<|im_end|>"  # the few-shot answers stay prompt


# --- training ------------------------------------------------------------------------------------


def weights(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter_model.safetensors"))


def losses(result) -> list[float]:
    return [x for u in result.units for x in u.get("losses", [])]


def test_same_seed_same_run_and_an_interrupted_run_resumes(base, tmp_path, store):
    import torch

    data = chats(tmp_path)
    s = Settings(epochs=2, batch_size=3, held_out=0.25, seed=3, **TINY)  # 6 rows: 2 steps per epoch
    a = tune(data, "hf/smollm2", tmp_path / "a", settings=s, loaded=base, store=store, progress=False)
    assert len(losses(a)) == 4

    def stop(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(data, "hf/smollm2", tmp_path / "c", settings=s, loaded=base, store=store, progress=False,
             on_step=stop)
    assert (tmp_path / "c" / "checkpoint" / "state.pt").is_file()
    c = tune(data, "hf/smollm2", tmp_path / "c", settings=s, loaded=base, store=store, progress=False)
    assert c.resumed_at == 3  # went on from the checkpoint, not from the start
    # the same seed gives the same run: the first three steps from scratch, the last after resuming
    assert losses(c) == losses(a)
    wa, wc = weights(a.out), weights(c.out)
    assert wa.keys() == wc.keys() and all(torch.equal(wa[k], wc[k]) for k in wa)
    assert not (tmp_path / "c" / "checkpoint").exists()
    assert (tmp_path / "c" / "curve.png").is_file()
    assert len((tmp_path / "c" / "curve.csv").read_text().splitlines()) == 1 + 4
    # a run like any other: listed, re-opened from the store
    from llmlab.runs.reopen import show

    assert [r["kind"] for r in store.runs(kind="tune")] == ["tune"] * 2
    report = show(store, [c.run_id], "markdown")
    assert "held-out loss" in report and "best" in report
    # the same command on a finished run trains nothing
    again = tune(data, "hf/smollm2", tmp_path / "c", settings=s, loaded=base, store=store, progress=False)
    assert again.run_id == c.run_id and losses(again) == losses(c)


def test_loss_goes_down_on_the_training_rows(overfit):
    train = [u["train_loss"] for u in overfit.units]
    assert len(train) == 5
    assert train[-1] < train[0] * 0.7, train


def test_adapter_loads_as_base_plus_dir_and_changes_the_model(base, overfit):
    from llmlab import load_model

    tuned = load_model(f"hf/smollm2+{overfit.out}", log=False)
    try:
        assert tuned.info.name == f"smollm2+{overfit.out}"
        assert tuned.info.extra["adapter_sha256"]
        prompt = [Message("user", "Colour of coal?")]
        before, after = base.score(prompt, ["black"])[0], tuned.score(prompt, ["black"])[0]
        assert after > before + 0.5, (before, after)
        assert tuned.generate(prompt, max_new_tokens=5, temperature=0).text.strip().lower() == "black"
        # the same adapter on a copy of the loaded base's weights: the same model, the base untouched
        copied = load_model(f"hf/smollm2+{overfit.out}", log=False, weights_from=base)
        try:
            assert copied.info.name == tuned.info.name and copied.model is not base.model
            assert copied.info.extra["adapter_sha256"] == tuned.info.extra["adapter_sha256"]
            assert copied.score(prompt, ["black", "white"]) == tuned.score(prompt, ["black", "white"])
            assert base.score(prompt, ["black"])[0] == before and "adapter" not in base.info.extra
        finally:
            copied.close()
        with pytest.raises(ConfigError, match="not one with an adapter"):
            load_model("hf/smollm2", log=False, weights_from=tuned)
        with pytest.raises(ConfigError, match="float32.*bfloat16"):
            load_model("hf/smollm2", log=False, weights_from=base, dtype="bfloat16")
        with pytest.raises(ConfigError, match="open hf/ model"):
            load_model("hf/smollm2", log=False, weights_from="smollm2")
    finally:
        tuned.close()


def test_an_adapter_for_another_base_is_refused(overfit, tmp_path):
    import shutil

    from llmlab import load_model

    other = tmp_path / "other"
    shutil.copytree(overfit.out, other)
    record = json.loads((other / "llmlab_adapter.json").read_text())
    record.update(base_model="hf/gemma3-270m", base_path="/x/gemma-3-270m.gguf", base_sha256="0" * 64)
    (other / "llmlab_adapter.json").write_text(json.dumps(record))
    with pytest.raises(ModelLoadError, match="trained on hf/gemma3-270m") as exc:
        load_model(f"hf/smollm2+{other}", log=False)
    assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match=f"llmlab tune export {overfit.out}"):  # a peft folder: hf/ only
        load_model(f"llamacpp/smollm2+{overfit.out}", log=False)
    with pytest.raises(ModelLoadError, match="adapter directory not found"):
        load_model(f"hf/smollm2+{tmp_path / 'nothing'}", log=False)


def test_missing_tune_extra_names_the_install(monkeypatch):
    from llmlab.tune.trainer import import_peft

    monkeypatch.setitem(sys.modules, "peft", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'llmlab\[tune\]'"):
        import_peft()


# --- bad input -----------------------------------------------------------------------------------


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


def test_a_line_without_messages(base, tmp_path, store):
    path = chats(tmp_path)
    lines = path.read_text().splitlines()
    lines[2] = json.dumps({"prompt": "x", "completion": "y"})
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="line 3 has no 'messages'") as exc:
        tune(path, "hf/smollm2", tmp_path / "a", loaded=base, store=store, progress=False)
    one_line(exc)


def test_a_conversation_longer_than_the_limit(base, tmp_path, store):
    long = COLOURS[:5] + [("a " * 200 + "thing", "grey")]
    with pytest.raises(DataError, match=r"line 6 is \d+ tokens, longer than --max-length 96") as exc:
        tune(chats(tmp_path, long), "hf/smollm2", tmp_path / "a", settings=Settings(**TINY), loaded=base,
             store=store, progress=False)
    one_line(exc)


def test_a_file_too_small_to_split(base, tmp_path, store):
    with pytest.raises(DataError, match="2 examples: too few to split") as exc:
        tune(chats(tmp_path, COLOURS[:2]), "hf/smollm2", tmp_path / "a", loaded=base, store=store,
             progress=False)
    one_line(exc)


def test_running_out_of_memory_names_the_setting(base, tmp_path, store, monkeypatch):
    import torch

    from llmlab.tune.trainer import Trainer

    def fake_oom(self, rows):  # a fake, at unit level: a real OOM would take the machine down
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "loss", fake_oom)
    with pytest.raises(ConfigError, match="ran out of memory.*lower --batch-size") as exc:
        tune(chats(tmp_path), "hf/smollm2", tmp_path / "a", settings=Settings(**TINY), loaded=base,
             store=store, progress=False)
    one_line(exc)
    assert base.model.__class__.__name__ == "LlamaForCausalLM"  # LoRA was taken out again


def test_another_runs_checkpoint_is_not_overwritten(base, tmp_path, store):
    data = chats(tmp_path)
    s = Settings(epochs=1, batch_size=3, **TINY)

    def stop(step, loss):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(data, "hf/smollm2", tmp_path / "a", settings=s, loaded=base, store=store, progress=False,
             on_step=stop)
    other = Settings(epochs=1, batch_size=3, seed=9, **TINY)
    with pytest.raises(ConfigError, match="another training run.*--fresh"):
        tune(data, "hf/smollm2", tmp_path / "a", settings=other, loaded=base, store=store, progress=False)


def test_a_finished_adapter_of_other_settings_is_not_overwritten(base, overfit, tmp_path, store):
    with pytest.raises(ConfigError, match="another training run.*--fresh"):
        tune(chats(tmp_path), "hf/smollm2", overfit.out, loaded=base, store=store, progress=False)


# --- the command ---------------------------------------------------------------------------------


def test_cli_tunes_a_labelled_file_end_to_end(tmp_path, lesson_data):
    data = film(tmp_path, 8, lesson_data)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LLMLAB_HOME": str(tmp_path / "home"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    out = tmp_path / "adapter"
    cmd = [sys.executable, "-m", "llmlab", "tune", str(data), "-m", "hf/smollm2", "--out", str(out),
           "--epochs", "1", "--batch-size", "6", "--rank", "4", "--max-length", "256", "--held-out", "0.25",
           "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "use it as -m hf/smollm2+" in done.stderr
    # then base and tuned on the two held-out rows, with McNemar, and their drift on generic prompts
    assert "before and after tuning" in done.stdout and "McNemar p" in done.stdout, done.stdout
    assert "drift from the base model" in done.stdout and "--forgetting-data" in done.stdout
    record = json.loads((out / "llmlab_adapter.json").read_text())
    assert record["task"]["task"] == "sentiment" and record["train_rows"] == 6
    assert (out / "adapter_model.safetensors").is_file() and (out / "curve.csv").is_file()
    listed = subprocess.run([sys.executable, "-m", "llmlab", "runs"], capture_output=True, text=True, env=env)
    assert "tune" in listed.stdout, listed.stdout + listed.stderr
    bad = subprocess.run(cmd[:4] + [str(tmp_path / "missing.tsv")] + cmd[5:], capture_output=True, text=True,
                         env=env)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "not found" in bad.stderr
