"""The reference: lm-evaluation-harness itself on the same local file, for checking llmlab against it.

``task_yaml`` writes a harness task that *includes the harness's own task file* for the format (so
its prompts, choices and metrics are the harness's, not a copy) and only points it at the local
file; ``run_lmeval`` runs such tasks through the harness's Python API and returns, per task, the
final metrics and every item's log-likelihoods. The agreement test and ``bench/bench_mc.py`` use it.

    >>> tasks = {"ref_arc": task_yaml("arc", "arc.jsonl", "ref_arc", folder)}     # doctest: +SKIP
    >>> run_lmeval("hf", "pretrained=DIR,gguf_file=F.gguf,dtype=float32", folder, list(tasks))

What it gives up: it needs ``pip install lm-eval`` (a dev dependency, not a user's); MMLU's
per-subject description comes from each row's ``subject`` (the harness's has one task per subject).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import MissingDependencyError

# the harness's task file each format includes, under lm_eval/tasks/
INCLUDES = {"arc": "arc/arc_easy.yaml", "hellaswag": "hellaswag/hellaswag.yaml",
            "mmlu": "mmlu/default/_default_template_yaml", "truthfulqa-mc1": "truthfulqa/truthfulqa_mc1.yaml",
            "truthfulqa-mc2": "truthfulqa/truthfulqa_mc2.yaml", "winogrande": "winogrande/default.yaml"}


def tasks_dir() -> Path:
    try:
        import lm_eval
    except ImportError as exc:
        raise MissingDependencyError("the reference harness is not installed: pip install lm-eval") from exc
    return Path(lm_eval.__file__).parent / "tasks"


def task_yaml(benchmark: str, data: str | Path, name: str, folder: str | Path, num_fewshot: int = 0) -> Path:
    """Write ``folder/name.yaml``: the harness's task for ``benchmark`` over the local JSONL ``data``.
    Few-shot examples are the first ones of the same file, the item itself left out (llmlab's rule)."""
    import yaml

    config = {"include": str(tasks_dir() / INCLUDES[benchmark]), "task": name, "tag": [],
              "dataset_path": "json", "dataset_name": None,
              "dataset_kwargs": {"data_files": {"test": str(Path(data).resolve())}},
              "training_split": None, "validation_split": None, "test_split": "test",
              "fewshot_split": "test", "fewshot_config": {"sampler": "first_n"}}
    if benchmark == "mmlu":
        config["description"] = ("The following are multiple choice questions (with answers) about "
                                 "{{subject.replace('_', ' ')}}.\n\n")
    if num_fewshot:
        config["num_fewshot"] = num_fewshot
    path = Path(folder) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def run_lmeval(model, model_args: str | None, folder: str | Path, tasks: list[str],
               limit: int | None = None) -> dict:
    """The harness on ``tasks`` (YAMLs in ``folder``; the first ``limit`` items), offline; ``model``
    is the harness's backend name with its ``model_args``, or a loaded harness model (``HFLM``):
    ``{task: {"metrics": {...}, "lls": [[per choice] per item], "requests": [[(context,
    continuation) per choice] per item]}}``, items in file order."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    tasks_dir()
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(folder), include_defaults=False)
    named = {"model_args": model_args, "batch_size": 1} if isinstance(model, str) else {}
    res = lm_eval.simple_evaluate(model=model, tasks=tasks, task_manager=manager, log_samples=True,
                                  limit=limit, **named)
    out = {}
    for task in tasks:
        metrics = {k.split(",")[0]: v for k, v in res["results"][task].items() if "," in k}
        samples = sorted(res["samples"][task], key=lambda s: s["doc_id"])
        out[task] = {"metrics": metrics, "lls": [[r[0] for r in s["filtered_resps"]] for s in samples],
                     "requests": [[tuple(a) for a in s["arguments"]] for s in samples]}
    return out
