"""Backends behind one ``Model`` interface; see ``base.py`` and ``registry.py``."""
