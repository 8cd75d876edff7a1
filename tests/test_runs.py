"""One notion of a run: the runner stores each unit as it finishes and resumes by fingerprint, an
interrupted ``llmlab probe`` (Ctrl-C, then SIGKILL) continues where it stopped and ends with the
figures of an uninterrupted run, ``llmlab runs`` lists runs of every kind and ``llmlab runs show``
re-opens a report without a model, and the one table model renders terminal, markdown and CSV."""

from __future__ import annotations

import csv
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from llmlab.errors import ConfigError
from llmlab.runs import Column, Raw, RunInterrupted, RunKind, Table, Unit, execute, md
from llmlab.store import MIGRATIONS, Store

# --- the runner, at unit level (a fake kind: the real kinds are tested through the CLI below) ------


class FakeKind(RunKind):
    """A fake kind of run: squares numbers, and can press Ctrl-C before a given unit."""

    kind = "fake"

    def __init__(self, n: int, stop_at: int | None = None, salt: str = ""):
        self.n, self.stop_at, self.salt, self.ran = n, stop_at, salt, []
        self.model, self.subject, self.label = "fake/model", "squares", "squares"

    def identity(self):
        return {"n": self.n, "salt": self.salt}

    def header(self):
        return {"n": self.n}

    def plan(self):
        return [Unit(f"x{i}", i, i) for i in range(self.n)]

    def run_unit(self, unit):
        if unit.payload == self.stop_at:
            raise KeyboardInterrupt
        self.ran.append(unit.key)
        return {"square": unit.payload ** 2, "pair": (unit.payload, 1)}

    def summarise(self, results):
        return {"total": sum(r["square"] for r in results.values()),
                "pairs_are_lists": all(isinstance(r["pair"], list) for r in results.values())}


def test_units_are_stored_at_once_and_a_ctrl_c_run_resumes_without_recomputing(tmp_path):
    store = Store.open(tmp_path / "runs.db")
    with pytest.raises(RunInterrupted, match=r"3 of 6 units of fake run 1 are stored; run the same command"):
        execute(FakeKind(6, stop_at=3), store)
    assert list(store.units(1)) == ["x0", "x1", "x2"]
    assert store.run(1)["state"] == "interrupted" and store.run(1)["done"] == 3

    kind = FakeKind(6)
    outcome = execute(kind, store)
    assert kind.ran == ["x3", "x4", "x5"] and outcome.resumed == 3 and outcome.run_id == 1
    # the summary sees results as stored (JSON): the same for a resumed and an uninterrupted run
    assert outcome.summary == {"total": 55, "pairs_are_lists": True} == execute(FakeKind(6), None).summary
    assert store.run(1)["state"] == "finished" and store.run(1)["summary"]["total"] == 55

    again = FakeKind(6)
    assert execute(again, store).resumed == 6 and again.ran == []  # finished: nothing computed
    fresh = FakeKind(6)
    assert execute(fresh, store, fresh=True).run_id == 2 and len(fresh.ran) == 6
    other = FakeKind(6, salt="other settings")
    assert execute(other, store).run_id == 3 and len(other.ran) == 6  # another fingerprint, another run


def test_duplicate_unit_keys_are_refused(tmp_path):
    class Twice(FakeKind):
        def plan(self):
            return [Unit("same", 0, 1), Unit("same", 1, 2)]

    with pytest.raises(ConfigError, match="two units have the key 'same'"):
        execute(Twice(2), Store.open(tmp_path / "runs.db"))


# --- the table model ----------------------------------------------------------------------------

def test_one_table_renders_terminal_markdown_and_csv():
    t = Table(["name", Column("value", justify="right")], title="t")
    t.add_row("a|b\nc", 1)
    t.add_row(Raw("[#1](#x)"), None)
    t.add_row("[CEO] said", 2.5, style="bold")
    assert t.to_markdown().splitlines() == ["| name | value |", "|---|---|", "| a\\|b<br>c | 1 |",
                                            "| [#1](#x) |  |", "| [CEO] said | 2.5 |"]
    assert md("x|y\r\nz") == "x\\|y<br>z"
    assert list(csv.reader(io.StringIO(t.to_csv()))) == [["name", "value"], ["a|b\nc", "1"], ["[#1](#x)", ""],
                                                         ["[CEO] said", "2.5"]]
    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=80).print(t.to_rich())
    assert "[CEO] said" in out.getvalue()  # escaped: not read as rich markup
    with pytest.raises(ValueError):
        t.add_row("only one cell")


# --- the store: old databases move into runs + units; the old table names still read -----------

def test_an_old_database_is_migrated_and_its_runs_listed_and_read(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    for name, fn in MIGRATIONS:
        if name == "m012_runs":
            break
        fn(db)
        db.execute("INSERT INTO _migrations VALUES (?, '')", (name,))
    db.execute("INSERT INTO eval_runs VALUES (1, 'fp', '2025-01-01T00:00:00+00:00', "
               "'2025-01-01T00:01:00+00:00', 'r.csv', 'sha', 'sentiment', 'smollm2', 'zero-shot', "
               "'score', 0, '{\"identity\": {}}', 2)")
    db.execute("INSERT INTO eval_results VALUES (1, 'a', 'positive', 'positive', 'positive:-1.0', "
               "'{\"positive\": -1.0}', 0.5, 't1')")
    db.execute("INSERT INTO eval_results VALUES (1, 'b', 'negative', 'positive', 'x', NULL, 0.5, 't2')")
    db.execute("INSERT INTO probe_runs VALUES (1, '2025-01-02T00:00:00+00:00', '2025-01-02T00:01:00+00:00', "
               "'capitals', 'c.yaml', 'abc', 'llamacpp/smollm2', 'rules', '{\"samples\": 1}', "
               "'[{\"check\": \"capitals\", \"name\": \"accuracy\", \"value\": 1.0, \"basis\": \"1 of 1\", "
               "\"hits\": [1], \"records\": [1], \"group\": null, \"headline\": true, \"note\": \"\"}]')")
    db.execute("INSERT INTO probe_results VALUES (1, 1, 'capitals', 'france', NULL, 1, 'Capital of France?', "
               "'[{\"role\": \"user\", \"content\": \"Capital of France?\"}]', 'Paris', 'correct', 'r', "
               "'{}', '{\"temperature\": 0}', 7, NULL)")
    db.close()

    store = Store.open(path)
    assert [(r["id"], r["kind"], r["done"], r["planned"], r["state"]) for r in store.runs()] == [
        (2, "probe", 1, 1, "finished"), (1, "eval", 2, 2, "finished")]
    results = store.eval_results(1)
    assert results["a"]["scores"] == {"positive": -1.0} and results["b"]["scores"] is None
    assert store.probe_results(2)[0]["input"] == [{"role": "user", "content": "Capital of France?"}]
    assert store.probe_runs()[0]["figures"][0]["hits"] == [1]
    raw = sqlite3.connect(path)  # the old names are views: SQL written against them still reads
    assert raw.execute("SELECT item_id, pred, ts FROM eval_results ORDER BY item_id").fetchall() == [
        ("a", "positive", "t1"), ("b", "positive", "t2")]
    assert raw.execute("SELECT record, answer, call_id FROM probe_results").fetchall() == [(1, "Paris", 7)]
    assert raw.execute("SELECT suite, judge FROM probe_runs").fetchall() == [("capitals", "rules")]


# --- the probe CLI: interrupted twice, resumed, the same figures as an uninterrupted run ----------

SUITE = """\
name: resumable
samples: 1
settings: {temperature: 0, max_new_tokens: 12}
checks:
  - name: capitals
    measure: accuracy
    judge: reference
    items:
      - {id: france, group: Europe, prompt: "What is the capital of France?", reference: Paris}
      - {id: spain, group: Europe, prompt: "What is the capital of Spain?", reference: Madrid}
      - {id: italy, group: Europe, prompt: "What is the capital of Italy?", reference: Rome}
      - {id: kenya, group: Africa, prompt: "What is the capital of Kenya?", reference: Nairobi}
      - {id: egypt, group: Africa, prompt: "What is the capital of Egypt?", reference: Cairo}
      - {id: japan, group: Asia, prompt: "What is the capital of Japan?", reference: Tokyo}
  - name: arithmetic
    measure: accuracy
    judge: number
    items:
      - {id: a, prompt: "What is 2 + 3? Answer with a number.", reference: 5}
      - {id: b, prompt: "What is 10 - 4? Answer with a number.", reference: 6}
      - {id: c, prompt: "What is 3 + 3? Answer with a number.", reference: 6}
      - {id: d, prompt: "What is 7 + 1? Answer with a number.", reference: 8}
      - {id: e, prompt: "What is 9 - 2? Answer with a number.", reference: 7}
      - {id: f, prompt: "What is 4 + 4? Answer with a number.", reference: 8}
"""
PLANNED = 12


def _env(db):
    """The same data directory for every command on ``db`` (a module fixture's commands start before
    the per-test one is set), never the user's."""
    home = os.path.join(os.path.dirname(os.path.abspath(db)), "home")
    return {**os.environ, "LLMLAB_DB": str(db), "LLMLAB_HOME": home, "COLUMNS": "200"}


def llmlab(*args, db, timeout=600):
    return subprocess.run([sys.executable, "-m", "llmlab", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=_env(db))


def _stored(db) -> dict[str, str]:
    try:
        return dict(sqlite3.connect(db, timeout=1).execute("SELECT key, ts FROM units"))
    except sqlite3.OperationalError:  # no database or no table yet: the child is still starting
        return {}


def _stop_after(args, db, units: int, sig) -> subprocess.CompletedProcess:
    """Start the CLI, and send ``sig`` once ``units`` units are in the store (polled, not timed)."""
    proc = subprocess.Popen([sys.executable, "-m", "llmlab", *map(str, args)], env=_env(db),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while len(_stored(db)) < units and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be stopped: {proc.communicate()[1]}"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def probe_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    suite = tmp / "resumable.yaml"
    suite.write_text(SUITE)
    args = ["probe", "-m", "smollm2", "--suite", suite, "--threads", "1", "--n-ctx", "1024"]
    reference = llmlab(*args, "--out", tmp / "ref", db=tmp / "ref.db")
    assert reference.returncode == 0, reference.stderr

    db = tmp / "resumed.db"
    first = _stop_after(args, db, 2, signal.SIGINT)
    after_ctrl_c = _stored(db)
    second = _stop_after(args, db, len(after_ctrl_c) + 3, signal.SIGKILL)
    after_kill = _stored(db)
    last = llmlab(*args, "--out", tmp / "resumed", db=db)
    assert last.returncode == 0, last.stderr
    return {"tmp": tmp, "reference": reference, "first": first, "after_ctrl_c": after_ctrl_c,
            "second": second, "after_kill": after_kill, "last": last, "db": db}


def test_ctrl_c_says_how_to_resume(probe_runs):
    first = probe_runs["first"]
    assert first.returncode == 130
    n = len(probe_runs["after_ctrl_c"])
    assert 2 <= n < PLANNED
    assert (f"interrupted: {n} of {PLANNED} units of probe run 1 are stored; run the same command again to "
            "resume") in first.stderr


def test_an_interrupted_and_killed_probe_resumes_and_gives_the_figures_of_an_uninterrupted_run(probe_runs):
    p = probe_runs
    assert p["second"].returncode == -signal.SIGKILL
    before, killed = p["after_ctrl_c"], p["after_kill"]
    assert len(before) < len(killed) < PLANNED
    assert all(killed[k] == ts for k, ts in before.items())  # what was stored is kept, not redone
    final = _stored(p["db"])
    assert len(final) == PLANNED and all(final[k] == ts for k, ts in killed.items())
    assert "(1 resumed from it)" in p["last"].stderr
    ref, got = p["tmp"] / "ref", p["tmp"] / "resumed"
    assert (got / "figures.csv").read_text() == (ref / "figures.csv").read_text()
    assert _steady(_without_created(got / "report.md")) == _steady(_without_created(ref / "report.md"))

    def answers(path):  # call ids differ (the interrupted calls are in the log too); nothing else does
        with path.open() as fh:
            return [{k: v for k, v in row.items() if k != "call_id"} for row in csv.DictReader(fh)]

    assert answers(got / "results.csv") == answers(ref / "results.csv")
    # the same tables printed, but for the seconds each run's cost rows measured
    assert _steady(p["last"].stdout.splitlines()) == _steady(p["reference"].stdout.splitlines())


def _steady(lines: list[str]) -> list[str]:
    """``lines`` without the cost table's rows (each holds a $ amount and the run's own seconds)."""
    return [line for line in lines if "$" not in line]


def _without_created(path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith("Created ")]


# --- llmlab runs / runs show ---------------------------------------------------------------------

def test_runs_lists_evals_and_probes_and_show_reopens_the_report_without_a_model(probe_runs, tmp_path):
    from pathlib import Path

    db = probe_runs["db"]
    reviews = Path(__file__).resolve().parents[1] / "examples" / "reviews.csv"
    ev = llmlab("eval", reviews, "-m", "smollm2", "--method", "score", "--limit", "4", "--threads", "1",
                db=db)
    assert ev.returncode == 0, ev.stderr
    assert "llmlab runs show 2" in ev.stderr

    listed = llmlab("runs", db=db)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    probe_line = next(line for line in lines if " probe " in line)
    eval_line = next(line for line in lines if " eval " in line)
    for text in ("llamacpp/smollm2", "resumable", f"{PLANNED}/{PLANNED}", "finished"):
        assert text in probe_line, (text, probe_line)
    for text in ("smollm2", "sentiment · zero-shot · score", "4/4", "finished"):
        assert text in eval_line, (text, eval_line)
    only = llmlab("runs", "--kind", "eval", "--format", "csv", db=db)
    assert [row["kind"] for row in csv.DictReader(io.StringIO(only.stdout))] == ["eval"]

    # re-opened: the same tables as the run printed, and the same report.md; no model is loaded
    shown = llmlab("runs", "show", "1", db=db, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == probe_runs["last"].stdout
    md_text = llmlab("runs", "show", "1", "--format", "markdown", db=db).stdout
    assert _without_created_text(md_text) == _without_created(probe_runs["tmp"] / "resumed" / "report.md")
    assert llmlab("runs", "show", "1", "--format", "csv", db=db).stdout == \
        (probe_runs["tmp"] / "resumed" / "figures.csv").read_text()
    reopened = llmlab("runs", "show", "2", db=db)
    assert reopened.returncode == 0, reopened.stderr
    table_of = lambda text: text[: text.index("best:")]  # noqa: E731 (the comparison table)
    assert table_of(reopened.stdout) == table_of(ev.stdout)


def _without_created_text(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("Created ")]


@pytest.mark.parametrize("args, message", [
    (["runs", "show", "99"], "no run 99 in "),
    (["runs", "--kind", "nope"], "--kind must be one of eval, probe, bench, rag, flow, agent, tune"),
    (["runs", "show", "1", "--format", "html"], "--format must be one of terminal, markdown, csv"),
])
def test_bad_runs_arguments_are_one_line(tmp_path, args, message):
    r = llmlab(*args, db=tmp_path / "empty.db")
    assert r.returncode == 1, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmlab: error: ") and message in lines[0], r.stderr


def test_runs_on_an_empty_log_lists_nothing_and_creates_nothing(tmp_path):
    r = llmlab("runs", db=tmp_path / "none.db")
    assert r.returncode == 0 and "runs" in r.stdout
    assert not (tmp_path / "none.db").exists()
