"""One notion of a run: evaluations, probes and benchmarks are kinds of run on one protocol.

    protocol.py   RunKind (plan units with stable keys, run one unit, summarise), Unit, fingerprint
    runner.py     execute(): store each finished unit at once, resume by fingerprint, Ctrl-C -> RunInterrupted
    progress.py   the one progress bar (done/planned, elapsed, ETA) on stderr
    table.py      the one table model: rich table, markdown (one escaping rule), CSV
    reopen.py     list stored runs of any kind, and re-open one's report without recomputing

The store keeps every kind in the same two tables (``llmlab.store.runs``); ``llmlab runs`` and
``llmlab runs show ID`` read them, and so can the web UI.
"""

from .progress import progress_bar
from .protocol import RunKind, Unit, fingerprint, model_identity
from .runner import RunInterrupted, RunOutcome, execute
from .table import Column, Raw, Table, md

__all__ = ["Column", "Raw", "RunInterrupted", "RunKind", "RunOutcome", "Table", "Unit", "execute",
           "fingerprint", "md", "model_identity", "progress_bar"]
