"""The SQLite store: every call llmlab makes and every run, queryable and exportable.

It is split by what it stores: ``calls.py`` (the call log and the cache of model-file hashes),
``runs.py`` (runs of every kind and their units), ``arena.py`` (the arena's votes) and
``conversations.py`` (the web UI's conversations and presets), over ``db.py``
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
from .conversations import ConversationStore
from .db import Database
from .migrations import MIGRATIONS, migration
from .runs import RunStore


class Store(CallStore, RunStore, ArenaStore, ConversationStore, Database):
    """One database connection with the call log, the runs, the arena's votes and the UI's
    conversations."""


__all__ = ["MIGRATIONS", "Store", "migration"]
