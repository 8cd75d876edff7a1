"""A task's templates rendered into the prompt a model sees, and the continuations it scores.

Templates are jinja2, rendered in a sandbox with strict undefined variables (a task file is code
from whoever wrote it, and a misspelt variable should fail, not vanish). A chat model gets a list of
messages -- optional system message, the worked examples as user/assistant turns, the text -- and
its own chat template renders them. A model without a chat template (a base model) gets the same
turns as plain text, each answer after ``Answer:``, so the label is the natural next word.

What it gives up: examples are always the first ``shots`` of the task's list, in order; there is no
per-item retrieval of similar examples.
"""

from __future__ import annotations

from functools import lru_cache

from ..chat import Message
from ..errors import TaskError
from .spec import Strategy, TaskSpec


@lru_cache(maxsize=256)
def _template(source: str):
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False)
    return env.from_string(source)


def render(source: str, **variables) -> str:
    from jinja2.exceptions import TemplateError

    try:
        return _template(source).render(**variables).strip()
    except TemplateError as exc:
        raise TaskError(f"template {source[:40]!r}... failed: {exc}") from exc


def labels_text(labels) -> str:
    """``positive, negative or neutral`` -- how the label set reads inside an instruction."""
    labels = list(labels)
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " or " + labels[-1]


def variables(task: TaskSpec, text: str) -> dict:
    common = {"labels": list(task.labels), "labels_text": labels_text(task.labels), "task": task.name,
              "description": task.description, "role": task.role}
    return {**common, "instruction": render(task.instruction, **common), "text": text}


def messages(task: TaskSpec, strategy: Strategy, text: str) -> list[Message]:
    """The chat for one text: system message, worked examples, then the text.

    >>> from llmlab.tasks import load_task
    >>> task = load_task("sentiment")
    >>> [m.role for m in messages(task, task.strategy("few-shot"), "Loved it.")][:3]
    ['user', 'assistant', 'user']
    """
    out = []
    system = render(strategy.system, **variables(task, text)) if strategy.system else ""
    if system:
        out.append(Message("system", system))
    for ex in task.examples[: strategy.shots]:
        out.append(Message("user", render(strategy.user, **variables(task, ex["text"]))))
        out.append(Message("assistant", render(strategy.answer, label=ex["label"],
                                               reasoning=ex.get("reasoning", ""))))
    out.append(Message("user", render(strategy.user, **variables(task, text))))
    return out


def plain_text(msgs: list[Message]) -> str:
    """The same turns for a model without a chat template: each answer follows ``Answer:``."""
    parts = []
    for m in msgs:
        if m.role == "assistant":
            parts[-1] += f"\nAnswer: {m.content}"
        else:
            parts.append(m.content)
    return "\n\n".join(parts) + "\nAnswer:"


def prompt_for(model, task: TaskSpec, strategy: Strategy, text: str):
    msgs = messages(task, strategy, text)
    return msgs if model.chats else plain_text(msgs)


def continuations(model, task: TaskSpec, strategy: Strategy) -> list[str]:
    """What ``score`` compares, one per label, in the task's label order."""
    lead = "" if model.chats else " "  # raw text: the answer follows "Answer:" after a space
    return [lead + render(strategy.continuation, label=label) for label in task.labels]


def check_templates(task: TaskSpec, bad) -> None:
    """Render every strategy once with a sample text, so a broken template fails at load time."""
    sample_labels = task.labels or ("a", "b")
    probe = task if task.labels else _with(task, sample_labels)
    for strategy in probe.strategies.values():
        try:
            shown = Strategy(**{**strategy.to_dict(), "shots": min(strategy.shots, len(probe.examples))})
            msgs = messages(probe, shown, "sample text")
            render(strategy.continuation, label=sample_labels[0])
        except TaskError as exc:
            raise bad(f"strategy {strategy.name!r}: {exc}") from exc
        if "sample text" not in msgs[-1].content:
            raise bad(f"strategy {strategy.name!r}: the user template never shows {{{{ text }}}}")


def _with(task: TaskSpec, labels) -> TaskSpec:
    from dataclasses import replace

    return replace(task, labels=tuple(labels))
