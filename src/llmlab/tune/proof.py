"""Did the tuning help, and what did it cost? The base and the tuned model side by side.

    >>> from llmlab.tune import tune
    >>> from llmlab.tune.proof import prove
    >>> result = tune("film.tsv", "hf/smollm2", "adapters/film")              # doctest: +SKIP
    >>> proof = prove(result, forgetting={"data": "topics.csv", "task": "topic"})  # doctest: +SKIP
    >>> proof.print()

Three checks, each base against tuned with the same task, strategy and method:

- **held-out**: ``llmlab eval`` on the training file's held-out rows (a labelled file): accuracy and
  macro-F1 with 95% intervals, and the exact McNemar test on the items one model gets right and the
  other wrong. Both runs are stored like any evaluation (``llmlab runs``).
- **forgetting**: the same on a second labelled file and task the adapter was not trained on (topic
  classification after tuning sentiment, say): a drop there is what catastrophic forgetting looks like.
- **drift**: on a few generic prompts, the base model's greedy reply is read by both models; the mean
  KL divergence KL(base ‖ tuned) of their next-token distributions along it (nats per token, from
  full-vocabulary log-softmaxes in torch) and how often the tuned model's top token is the base's.
  0 means the adapter left general behaviour alone.

What it gives up: the held-out rows are also the ones early stopping watched (their loss, not their
accuracy), so the held-out accuracy is mildly optimistic; ``--kfold`` (``tune.kfold``) tests every row
on an adapter that never saw it. Drift is measured along the base model's reply only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..chat import Message
from ..errors import ConfigError
from ..runs.table import Column, Table, print_tables

GENERIC_PROMPTS = (
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "Give me a tip for sleeping well.",
    "Explain what a verb is.",
    "How many days are there in a week?",
)


@dataclass
class Proof:
    held_out: object = None     # evals EvalResult: base and tuned on the held-out rows
    forgetting: object = None   # evals EvalResult: base and tuned on the second task
    drift: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def checks(self) -> list[tuple[str, object]]:
        return [(c, r) for c, r in (("held-out", self.held_out), ("forgetting", self.forgetting)) if r]

    def summary(self) -> dict:
        out = {}
        for check, result in self.checks():
            base, tuned = (result.metrics[r.system.name] for r in result.runs)
            test = [c for c in result.comparisons.to_dict("records")][0]
            out[check] = {"n": base["n"], "task": result.task.name,
                          "base": {"accuracy": base["accuracy"], "ci": list(base["accuracy_ci"])},
                          "tuned": {"accuracy": tuned["accuracy"], "ci": list(tuned["accuracy_ci"])},
                          "mcnemar_p": test["p_value"], "only_base": test["only_a"],
                          "only_tuned": test["only_b"]}
        if self.drift:
            out["drift"] = {"kl_per_token": sum(d["kl"] * d["tokens"] for d in self.drift)
                            / max(1, sum(d["tokens"] for d in self.drift)),
                            "top1_agreement": sum(d["agree"] for d in self.drift)
                            / max(1, sum(d["tokens"] for d in self.drift)),
                            "prompts": len(self.drift)}
        return out

    def tables(self) -> list[Table]:
        tables = []
        if self.checks():
            t = Table(["check", "task", "model", Column("n", justify="right"),
                       Column("accuracy", justify="right"), Column("95% CI", justify="right"),
                       Column("macro-F1", justify="right"), Column("unparsed", justify="right")],
                      title="before and after tuning", title_justify="left")
            for check, result in self.checks():
                for label, run in zip(("base", "tuned"), result.runs, strict=True):
                    m = result.metrics[run.system.name]
                    lo, hi = m["accuracy_ci"]
                    t.add_row(check, result.task.name, label, str(m["n"]), f"{m['accuracy']:.3f}",
                              f"{lo:.2f}–{hi:.2f}", f"{m['macro_f1']:.3f}", str(m["unparsed"]))
            tables.append(t)
            c = Table(["check", Column("tuned - base", justify="right"),
                       Column("only base right", justify="right"),
                       Column("only tuned right", justify="right"),
                       Column("McNemar p", justify="right")], title="is the difference real?",
                      title_justify="left")
            for check, s in self.summary().items():
                if check != "drift":
                    c.add_row(check, f"{s['tuned']['accuracy'] - s['base']['accuracy']:+.3f}",
                              str(s["only_base"]), str(s["only_tuned"]), f"{s['mcnemar_p']:.3g}")
            tables.append(c)
        if self.drift:
            d = Table(["generic prompt", Column("tokens", justify="right"),
                       Column("KL(base‖tuned) per token", justify="right"),
                       Column("same top token", justify="right")],
                      title="drift from the base model", title_justify="left")
            for row in self.drift:
                d.add_row(row["prompt"], str(row["tokens"]), f"{row['kl']:.4f}",
                          f"{row['agree']}/{row['tokens']}")
            s = self.summary()["drift"]
            d.add_row("all", str(sum(r["tokens"] for r in self.drift)), f"{s['kl_per_token']:.4f}",
                      f"{s['top1_agreement']:.0%}")
            tables.append(d)
        return tables

    def print(self, console=None) -> None:
        print_tables(self.tables(), self.notes, console)


def prove(result, *, base=None, tuned=None, method: str = "generate", forgetting: dict | None = None,
          prompts=GENERIC_PROMPTS, max_tokens: int = 24, store="default", progress=False,
          model_options: dict | None = None) -> Proof:
    """Base against tuned for a ``TuneResult``: held-out rows, a second task, drift on generic prompts.

    ``base`` is the loaded base model and ``tuned`` the loaded ``BASE+ADAPTER`` (each loaded here
    otherwise, and closed after); ``forgetting`` is ``{"data": FILE,
    "task": TASK}`` with eval's ``labels``, ``columns`` and ``label_map`` if needed.
    """
    from ..models.registry import load_model

    owned = []
    if base is None:
        base = load_model(result.model, log=False, **(model_options or {}))
        owned.append(base)
    try:
        if tuned is None:
            tuned = load_model(f"{result.model}+{result.out}", log=False, weights_from=base,
                               **(model_options or {}))
            owned.append(tuned)
        proof = Proof()
        db = _store(store)
        try:
            rows = held_out_rows(result)
            if rows is not None and len(rows):
                task = result.data.task
                proof.held_out = _evaluate(rows, task_ref(task), [base, tuned], method, db, progress,
                                           labels=task["labels"], strategy=task["strategy"],
                                           columns={"text": "text", "label": "gold", "id": "id"})
            elif result.data is not None and result.data.task is None:
                proof.notes.append("no accuracy check: the training file is not labelled (chats or "
                                   "prompt/completion pairs); the held-out loss is in the epochs table")
            else:
                proof.notes.append("no held-out rows to test on (--held-out 0)")
            if forgetting:
                f = dict(forgetting)
                if not f.get("data"):
                    raise ConfigError("the forgetting check needs a labelled file (--forgetting-data)")
                proof.forgetting = _evaluate(f["data"], f.get("task") or "classify", [base, tuned], method,
                                             db, progress, labels=f.get("labels"), columns=f.get("columns"),
                                             label_map=f.get("label_map"))
            else:
                proof.notes.append("no forgetting check on a second task (give --forgetting-data FILE "
                                   "--forgetting-task TASK)")
        finally:
            if db is not store:
                db.close()
        if prompts:
            proof.drift = drift(base, tuned, prompts, max_tokens)
        return proof
    finally:
        for m in owned:
            m.close()


def held_out_rows(result):
    """The held-out rows of a labelled training file as an id/text/gold DataFrame, else None."""
    data = getattr(result, "data", None)
    if data is None or data.dataset is None:
        return None
    return data.dataset.frame.iloc[result.held_out][["id", "text", "gold"]].reset_index(drop=True)


def task_ref(task: dict) -> str:
    """What ``load_task`` takes for a training file's task record: a built-in name or the YAML's path."""
    return task["task"] if task.get("source") in (None, "built-in") else task["source"]


def _evaluate(data, task: str, models: list, method: str, store, progress, *, strategy=None, **read):
    from ..evals.api import evaluate

    return evaluate(data, task, models=models, methods=[method], strategies=[strategy] if strategy else None,
                    db=store, progress=progress, **{k: v for k, v in read.items() if v is not None})


def _store(store):
    from ..store import Store

    if isinstance(store, Store):
        return store
    return Store.open(None if store in ("default", None) else store)


def drift(base, tuned, prompts, max_tokens: int = 24) -> list[dict]:
    """Per prompt: the base model's greedy reply (up to ``max_tokens``), the mean KL(base ‖ tuned) of
    the next-token distributions along it, and at how many of its tokens the tuned model's top token
    is the base's."""
    torch = base._torch
    if getattr(tuned, "_torch", None) is None:
        raise ConfigError("drift compares two hf/ (transformers) models")
    out = []
    for prompt in prompts:
        ids = base.prompt_ids([Message("user", prompt)])
        with torch.no_grad():
            seq = _greedy(base, ids, max_tokens)
            if len(seq) == len(ids):
                continue
            x = torch.tensor([seq])
            logp = torch.log_softmax(base.model(x).logits[0, len(ids) - 1:-1].float(), -1)
            logq = torch.log_softmax(tuned.model(x).logits[0, len(ids) - 1:-1].float(), -1)
            kl = torch.nn.functional.kl_div(logq, logp, log_target=True, reduction="none").sum(-1)
            agree = int((logq.argmax(-1) == x[0, len(ids):]).sum())
        out.append({"prompt": prompt, "tokens": len(seq) - len(ids), "kl": float(kl.mean()), "agree": agree,
                    "reply": base.tokenizer.decode(seq[len(ids):], skip_special_tokens=True)})
    return out


def _greedy(model, ids: list[int], max_tokens: int) -> list[int]:
    """``ids`` and the model's greedy continuation (transformers' ``generate``), up to an
    end-of-generation token (kept)."""
    from transformers import GenerationConfig

    eog = sorted(model._eog)
    config = GenerationConfig(max_new_tokens=max_tokens, do_sample=False, eos_token_id=eog,
                              pad_token_id=eog[0] if eog else None)
    out = model.model.generate(model._torch.tensor([ids]), generation_config=config)
    return [int(t) for t in out[0]]
