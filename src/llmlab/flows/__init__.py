"""Flows: a YAML file chains model calls (extract -> classify -> summarise), each step's prompt a
template over the input and the outputs before it.

    spec.py    the flow file: steps, templates, structured output and labels, checked when it loads
    run.py     one text, or every row of a dataset as a stored, resumable run (``llmlab flow run``)
    score.py   a step's outputs against reference columns (``llmlab flow eval``)
"""

from .run import FlowResult, run_flow
from .score import FlowEval, evaluate_flow
from .spec import Flow, Step, load_flow, parse_flow

__all__ = ["Flow", "FlowEval", "FlowResult", "Step", "evaluate_flow", "load_flow", "parse_flow", "run_flow"]
