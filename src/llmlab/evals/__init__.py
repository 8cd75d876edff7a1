"""Evaluation: datasets x tasks x models x methods -> predictions -> metrics -> reports (see api.py)."""

from .api import evaluate
from .data import Dataset, load_dataset
from .report import EvalResult

__all__ = ["Dataset", "EvalResult", "evaluate", "load_dataset"]
