"""A task's templates rendered into the prompt a model sees, and the continuations it scores.

Templates are jinja2, rendered by the one user-template renderer (``llmlab.specfile.templates``:
sandboxed, a misspelt variable fails rather than vanishing), and stripped of surrounding space.
A chat model gets a list of messages -- optional system message, the worked examples as
user/assistant turns, the text -- and its own chat template renders them. A model without a chat
template (a base model) gets the same turns as plain text, each answer after ``Answer:``, so the
label is the natural next word.

What it gives up: examples are always the first ``shots`` of the task's list, in order; there is no
per-item retrieval of similar examples.
"""

from __future__ import annotations

from dataclasses import replace

from ..chat import Message
from ..errors import TaskError
from ..specfile import templates
from .spec import Strategy, TaskSpec


def render(source: str, **variables) -> str:
    return templates.render(source, variables, TaskError).strip()


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
    """Render every template once with a sample text, so a broken one fails at load time.

    ``bad(message, strategy, field)`` makes the error; it knows which line of which file the
    template came from (``strategy`` is None for the task's own ``instruction``).
    """
    sample_labels = task.labels or ("a", "b")
    probe = task if task.labels else _with(task, sample_labels)
    try:
        render(probe.instruction, **variables(probe, "sample text"))
    except TaskError as exc:
        raise bad(f"instruction: {exc}", None, "instruction") from exc
    sample = {"system": variables(probe, "sample text"), "user": variables(probe, "sample text"),
              "answer": {"label": sample_labels[0], "reasoning": "sample reasoning"},
              "continuation": {"label": sample_labels[0]}}
    for strategy in probe.strategies.values():
        for key, values in sample.items():
            try:
                render(getattr(strategy, key), **values)
            except TaskError as exc:
                raise bad(f"strategy {strategy.name!r}, {key}: {exc}", strategy.name, key) from exc
        if "sample text" not in messages(probe, replace(strategy, shots=0), "sample text")[-1].content:
            raise bad(f"strategy {strategy.name!r}: the user template never shows {{{{ text }}}}",
                      strategy.name, "user")


def _with(task: TaskSpec, labels) -> TaskSpec:
    return replace(task, labels=tuple(labels))
