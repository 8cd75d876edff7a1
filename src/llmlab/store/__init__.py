"""The SQLite store: every call llmlab makes and every run, queryable and exportable.

It is split by what it stores: ``calls.py`` (the call log and the cache of model-file hashes),
``runs.py`` (runs of every kind and their units) and ``arena.py`` (the arena's votes), over ``db.py``
(opening, migrations, one-line errors) and ``migrations.py`` (the schema, append-only). ``Store`` is
all of them on one connection:

    >>> from llmlab.store import Store
    >>> store = Store.open()                      # $LLMLAB_DB, else the user data directory
    >>> store.calls(limit=5)                      # doctest: +SKIP
    >>> store.runs(kind="probe")                  # doctest: +SKIP
"""

from __future__ import annotations

from .arena import ArenaStore
from .calls import CallStore
from .db import Database
from .migrations import MIGRATIONS, migration
from .runs import RunStore


class Store(CallStore, RunStore, ArenaStore, Database):
    """One database connection with the call log, the runs and the arena's votes."""


__all__ = ["MIGRATIONS", "Store", "migration"]
