"""Tasks: YAML prompt templates with labels, strategies and worked examples (see ``spec.py``)."""

from .parse import UNPARSED, parse_label
from .prompts import continuations, messages, prompt_for
from .spec import Strategy, TaskSpec, builtin_names, list_tasks, load_task, parse_task

__all__ = ["UNPARSED", "Strategy", "TaskSpec", "builtin_names", "continuations", "list_tasks",
           "load_task", "messages", "parse_label", "parse_task", "prompt_for"]
