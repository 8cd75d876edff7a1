"""``llmlab.evaluate``: a dataset, a task, models, strategies and methods in, an EvalResult out.

    >>> import llmlab
    >>> result = llmlab.evaluate("examples/reviews.csv", task="sentiment", models=["smollm2"],
    ...                          methods=["score", "generate"], baseline=True)   # doctest: +SKIP
    >>> result.table              # accuracy, macro-F1 with 95% CIs, unparsed, examples/s per system
    >>> result.predictions        # DataFrame: id, text, gold, pred, raw, method, model, ...
    >>> result.report             # everything as JSON-able data; result.save("out/") writes files

Everything is checked before any model computes: the task, the file and its columns and labels,
the strategies and methods, and every prompt against its model's context window. The run is
stored as it goes; calling ``evaluate`` again with the same arguments resumes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

from ..errors import ConfigError
from ..runs import progress_bar
from ..runs.runner import check_concurrency
from ..tasks import load_task
from .data import load_dataset
from .methods import make_method
from .report import EvalResult
from .runner import check_context, plan, run_baseline, run_system


def evaluate(data, task="sentiment", models: Sequence | str = ("smollm2",),
             methods: Sequence[str] | str = ("score",), strategies: Sequence[str] | str | None = None, *,
             labels: Sequence[str] | None = None, columns: dict | None = None,
             label_map: dict | None = None, generation: dict | None = None, repeats: int = 1,
             baseline: bool = False, limit: int | None = None, db=None, fresh: bool = False,
             progress=False, out=None, model_options: dict | None = None,
             recipes: Sequence[tuple[str, str] | str] | None = None, concurrency: int = 1) -> EvalResult:
    """Evaluate models on a labelled file; see the module docstring.

    ``data`` is a path (CSV, TSV, JSONL, Parquet) or a DataFrame; ``columns`` maps ``text``,
    ``label`` and ``id`` to column names when they are not found by name; ``models`` are names
    (``smollm2``, ``hf/gemma3-270m``, ``ollama/llama3.2:1b``) or loaded models; ``generation`` holds
    GenerationConfig settings for ``generate`` (greedy and the strategy's max_new_tokens otherwise);
    ``repeats`` > 1 with a temperature > 0 samples each generate system that many times.
    ``recipes`` (``("few-shot", "batch-calibrate")`` or ``"few-shot:batch-calibrate"``) replace the
    strategies x methods grid with exactly these pairs. ``progress`` is True for a bar on stderr, or
    a rich-``Progress``-like object (``add_task``/``update``/``advance``) that gets one bar per system.
    ``concurrency`` > 1 sends that many items at once to remote models (their predictions are the
    sequential run's: each item is computed alone, whatever finishes first).
    """
    models = [models] if isinstance(models, str) or hasattr(models, "info") else list(models)
    methods = [methods] if isinstance(methods, str) else list(methods)
    generation = dict(generation or {})
    columns = dict(columns or {})
    unknown = set(columns) - {"text", "label", "id"}
    if unknown:
        raise ConfigError(f"columns may map text, label and id, not {', '.join(sorted(unknown))}")
    spec = load_task(task, labels)
    read = {"text_col": columns.get("text"), "label_col": columns.get("label"), "id_col": columns.get("id"),
            "label_map": label_map}
    notes = []
    if spec.labels:
        dataset = load_dataset(data, spec, **read)
    else:  # classify with no --labels: the label set is what the file uses
        spec = spec.with_labels(load_dataset(data, None, **read).labels)
        dataset = load_dataset(data, spec, **read)
        notes.append(f"labels taken from the dataset: {', '.join(spec.labels)}")
    if limit:
        dataset = dataset.head(limit)
    strategies = [strategies] if isinstance(strategies, str) else list(strategies or [spec.default_strategy])
    recipes = list(dict.fromkeys(parse_recipe(r) for r in recipes or []))  # each pair once
    for s in strategies + [s for s, _ in recipes]:
        spec.strategy(s)
    plan(["-"], strategies, methods, repeats, generation, recipes)  # bad methods fail before models load
    if not models and not baseline:
        raise ConfigError("nothing to evaluate: give at least one model, or the baseline")
    if out is not None:
        from ..config import prepare_out

        prepare_out(out)
    from ..store import Store

    store = db if isinstance(db, Store) else Store.open(db)
    try:
        loaded, owned = _load_models(models, model_options or {})
    except BaseException:
        if store is not db:
            store.close()
        raise
    try:
        check_concurrency(concurrency, loaded.values())
        systems = plan(list(loaded), strategies, methods, repeats, generation, recipes)
        for system in systems:  # every check before any model computes
            model = loaded[system.model]
            strategy = spec.strategy(system.strategy)
            method = make_method(system.method, generation)
            if method.needs:
                model.require(method.needs, f"use --method generate rather than {system.method}")
            check_context(model, spec, strategy, method, dataset, system.model)
        runs = []
        # True draws rich's bar; an object with rich's add_task/update/advance (the web UI's) is used as is
        with nullcontext(progress) if hasattr(progress, "add_task") else progress_bar(bool(progress)) as bar:
            for system in systems:
                runs.append(run_system(system, loaded[system.model], spec, dataset, store, generation,
                                       bar, fresh, concurrency))
            if baseline:
                runs.append(run_baseline(dataset, store, bar, spec))
    finally:
        for model in owned:
            model.close()
        if store is not db:
            store.close()
    if any(r.resumed for r in runs):
        notes.append("resumed from the store: " + ", ".join(
            f"{r.system.name} ({r.resumed}/{len(dataset)} items)" for r in runs if r.resumed))
    result = EvalResult(dataset, spec, runs, notes)
    if out is not None:
        result.save(out)
    return result


def parse_recipe(recipe) -> tuple[str, str]:
    """``"few-shot:batch-calibrate"`` or a pair -> ``("few-shot", "batch-calibrate")``."""
    if isinstance(recipe, str):
        strategy, sep, method = recipe.partition(":")
        if not sep or not strategy.strip() or not method.strip():
            raise ConfigError(f"a recipe is STRATEGY:METHOD, e.g. few-shot:batch-calibrate; got {recipe!r}")
        return strategy.strip(), method.strip()
    strategy, method = recipe
    return str(strategy), str(method)


def _load_models(models, options: dict):
    """Names are loaded (and closed afterwards); loaded models are used as they are."""
    from ..models.registry import check_options, load_model

    for m in models:  # an option a backend does not take fails before any model loads
        if isinstance(m, str):
            check_options(m, options)
    loaded, owned = {}, []
    try:
        for m in models:
            if isinstance(m, str):
                if m not in loaded:
                    loaded[m] = load_model(m, log=False, **options)
                    owned.append(loaded[m])
            else:
                loaded.setdefault(f"{m.backend}/{m.info.name}", m)
    except BaseException:
        for m in owned:
            m.close()
        raise
    return loaded, owned
