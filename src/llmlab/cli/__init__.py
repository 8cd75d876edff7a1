"""The ``llmlab`` command line; see ``main.py``."""
