"""The store's schema as append-only numbered migrations (the pattern of simonw/llm's ``migrations.py``).

Each function runs once per database, in order, inside a transaction, and is recorded by name in
``_migrations``. Never edit a migration that has shipped; add the next one. m001-m011 are the call
log and the first, per-kind run tables; m012 moves every kind of run into one pair of tables (``runs``
and ``units``) and leaves the old table names as read-only views, so queries written against
``eval_results`` or ``probe_runs`` keep working.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = []


def migration(fn: Callable[[sqlite3.Connection], None]):
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_calls(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE calls (
            id INTEGER PRIMARY KEY,
            ts TEXT NOT NULL,
            model TEXT NOT NULL,
            backend TEXT NOT NULL,
            model_path TEXT,
            model_sha256 TEXT,
            settings TEXT NOT NULL,
            prompt TEXT,
            messages TEXT,
            response TEXT NOT NULL,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            load_s REAL,
            ttft_s REAL,
            prefill_tps REAL,
            decode_tps REAL,
            total_s REAL,
            finish_reason TEXT,
            interrupted INTEGER NOT NULL DEFAULT 0,
            error TEXT
        )""")
    db.execute("CREATE INDEX calls_ts ON calls(ts)")


@migration
def m002_file_hashes(db: sqlite3.Connection) -> None:
    # sha256 of a model file is costly (100s of MB), so it is cached by path, size and mtime
    db.execute("""
        CREATE TABLE file_hashes (
            path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
            sha256 TEXT NOT NULL)""")


@migration
def m003_calls_dropped(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE calls ADD COLUMN dropped_messages INTEGER NOT NULL DEFAULT 0")


@migration
def m004_eval_runs(db: sqlite3.Connection) -> None:
    # one row per system (model x strategy x method x repeat) evaluated on a dataset; a run found
    # again by its fingerprint is resumed: its finished results are kept, the rest computed
    db.execute("""
        CREATE TABLE eval_runs (
            id INTEGER PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            created TEXT NOT NULL,
            finished TEXT,
            dataset TEXT,
            dataset_sha256 TEXT,
            task TEXT NOT NULL,
            model TEXT NOT NULL,
            strategy TEXT,
            method TEXT NOT NULL,
            repeat INTEGER NOT NULL DEFAULT 0,
            settings TEXT NOT NULL,
            n_items INTEGER NOT NULL
        )""")
    db.execute("CREATE INDEX eval_runs_fingerprint ON eval_runs(fingerprint)")
    db.execute("""
        CREATE TABLE eval_results (
            run_id INTEGER NOT NULL REFERENCES eval_runs(id),
            item_id TEXT NOT NULL,
            gold TEXT,
            pred TEXT,
            raw TEXT,
            scores TEXT,
            seconds REAL,
            ts TEXT NOT NULL,
            PRIMARY KEY (run_id, item_id)
        )""")


@migration
def m010_probe_runs(db: sqlite3.Connection) -> None:
    # one row per model x probe suite; figures (JSON) cite the record numbers of probe_results,
    # so every figure can be traced to the prompts, raw answers and verdicts behind it
    db.execute("""
        CREATE TABLE probe_runs (
            id INTEGER PRIMARY KEY,
            started TEXT NOT NULL,
            finished TEXT,
            suite TEXT NOT NULL,
            suite_path TEXT,
            suite_sha256 TEXT,
            model TEXT NOT NULL,
            judge TEXT NOT NULL,
            options TEXT NOT NULL,
            figures TEXT NOT NULL
        )""")
    db.execute("""
        CREATE TABLE probe_results (
            run_id INTEGER NOT NULL REFERENCES probe_runs(id),
            record INTEGER NOT NULL,
            check_name TEXT NOT NULL,
            item_id TEXT NOT NULL,
            grp TEXT,
            sample INTEGER NOT NULL,
            prompt TEXT NOT NULL,
            input TEXT NOT NULL,
            answer TEXT NOT NULL,
            verdict TEXT,
            reason TEXT,
            detail TEXT,
            settings TEXT,
            call_id INTEGER,
            error TEXT,
            PRIMARY KEY (run_id, record)
        )""")


@migration
def m011_calls_runtime(db: sqlite3.Connection) -> None:
    # how the model was loaded (context window, threads, llama.cpp's weight layout): what shapes
    # speed, and for a sliding-window or repacked model sometimes the output too
    db.execute("ALTER TABLE calls ADD COLUMN runtime TEXT")


@migration
def m012_runs(db: sqlite3.Connection) -> None:
    # one notion of a run: a header per run of any kind (eval system, probe suite, bench) and one row
    # per finished unit of work, its result as JSON; the kind says what a unit and its result are
    db.execute("""
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            created TEXT NOT NULL,
            finished TEXT,
            model TEXT,
            subject TEXT,
            planned INTEGER NOT NULL,
            header TEXT NOT NULL,
            summary TEXT
        )""")
    db.execute("CREATE INDEX runs_fingerprint ON runs(kind, fingerprint)")
    db.execute("""
        CREATE TABLE units (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            key TEXT NOT NULL,
            seq INTEGER NOT NULL,
            result TEXT NOT NULL,
            ts TEXT NOT NULL,
            PRIMARY KEY (run_id, key)
        )""")
    # evaluation runs keep their ids (their results cite them); probe runs follow after them
    db.execute("""
        INSERT INTO runs (id, kind, fingerprint, created, finished, model, subject, planned, header)
        SELECT id, 'eval', fingerprint, created, finished, model, task, n_items,
               json_object('dataset', dataset, 'dataset_sha256', dataset_sha256, 'task', task,
                           'strategy', strategy, 'method', method, 'repeat', repeat,
                           'settings', json(settings), 'n_items', n_items)
        FROM eval_runs""")
    db.execute("""
        INSERT INTO units (run_id, key, seq, result, ts)
        SELECT run_id, item_id, ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY rowid) - 1,
               json_object('gold', gold, 'pred', pred, 'raw', raw, 'scores', json(scores),
                           'seconds', seconds), ts
        FROM eval_results""")
    offset = db.execute("SELECT COALESCE(MAX(id), 0) FROM eval_runs").fetchone()[0]
    db.execute("""
        INSERT INTO runs (id, kind, fingerprint, created, finished, model, subject, planned, header, summary)
        SELECT p.id + ?, 'probe', 'probe_runs:' || p.id, p.started, p.finished, p.model, p.suite,
               (SELECT COUNT(*) FROM probe_results WHERE run_id = p.id),
               json_object('suite', p.suite, 'suite_path', p.suite_path, 'suite_sha256', p.suite_sha256,
                           'judge', p.judge, 'options', json(p.options), 'probe_run', p.id),
               json_object('figures', json(p.figures), 'started', p.started, 'finished', p.finished)
        FROM probe_runs p""", (offset,))
    db.execute("""
        INSERT INTO units (run_id, key, seq, result, ts)
        SELECT r.run_id + ?, r.check_name || '/' || r.item_id || '/' || r.sample, r.record - 1,
               json_object('id', r.record, 'check', r.check_name, 'item', r.item_id, 'sample', r.sample,
                           'prompt', r.prompt, 'input', json(r.input), 'answer', r.answer,
                           'verdict', r.verdict, 'reason', r.reason, 'detail', json(COALESCE(r.detail, '{}')),
                           'group', r.grp, 'settings', json(COALESCE(r.settings, '{}')),
                           'call_id', r.call_id, 'error', r.error),
               COALESCE(p.finished, p.started)
        FROM probe_results r JOIN probe_runs p ON p.id = r.run_id""", (offset,))
    for table in ("eval_results", "eval_runs", "probe_results", "probe_runs"):
        db.execute(f"DROP TABLE {table}")
    # the old names, as views over the new tables (read-only; llmlab writes runs and units)
    db.execute("""
        CREATE VIEW eval_runs AS
        SELECT id, fingerprint, created, finished, json_extract(header, '$.dataset') AS dataset,
               json_extract(header, '$.dataset_sha256') AS dataset_sha256, subject AS task, model,
               json_extract(header, '$.strategy') AS strategy, json_extract(header, '$.method') AS method,
               json_extract(header, '$.repeat') AS repeat, json_extract(header, '$.settings') AS settings,
               planned AS n_items
        FROM runs WHERE kind = 'eval'""")
    db.execute("""
        CREATE VIEW eval_results AS
        SELECT u.run_id, u.key AS item_id, json_extract(u.result, '$.gold') AS gold,
               json_extract(u.result, '$.pred') AS pred, json_extract(u.result, '$.raw') AS raw,
               json_extract(u.result, '$.scores') AS scores, json_extract(u.result, '$.seconds') AS seconds,
               u.ts
        FROM units u JOIN runs r ON r.id = u.run_id WHERE r.kind = 'eval'""")
    db.execute("""
        CREATE VIEW probe_runs AS
        SELECT id, created AS started, finished, subject AS suite,
               json_extract(header, '$.suite_path') AS suite_path,
               json_extract(header, '$.suite_sha256') AS suite_sha256, model,
               json_extract(header, '$.judge') AS judge, json_extract(header, '$.options') AS options,
               COALESCE(json_extract(summary, '$.figures'), '[]') AS figures
        FROM runs WHERE kind = 'probe'""")
    db.execute("""
        CREATE VIEW probe_results AS
        SELECT u.run_id, u.seq + 1 AS record, json_extract(u.result, '$.check') AS check_name,
               json_extract(u.result, '$.item') AS item_id, json_extract(u.result, '$.group') AS grp,
               json_extract(u.result, '$.sample') AS sample, json_extract(u.result, '$.prompt') AS prompt,
               json_quote(json_extract(u.result, '$.input')) AS input,
               json_extract(u.result, '$.answer') AS answer, json_extract(u.result, '$.verdict') AS verdict,
               json_extract(u.result, '$.reason') AS reason, json_extract(u.result, '$.detail') AS detail,
               json_extract(u.result, '$.settings') AS settings,
               json_extract(u.result, '$.call_id') AS call_id,
               json_extract(u.result, '$.error') AS error
        FROM units u JOIN runs r ON r.id = u.run_id WHERE r.kind = 'probe'""")


@migration
def m013_calls_tool_calls(db: sqlite3.Connection) -> None:
    # the tool calls a response asked for (OpenAI chat format, JSON), so an agent's every step is in
    # the log: its calls here, the tools' results in the next call's messages
    db.execute("ALTER TABLE calls ADD COLUMN tool_calls TEXT")


@migration
def m014_arena_votes(db: sqlite3.Connection) -> None:
    # one row per arena vote: the two answers to one prompt under one set of settings, which side
    # won, and whether the voter knew the names (only anonymous votes are rated)
    db.execute("""
        CREATE TABLE arena_votes (
            id INTEGER PRIMARY KEY,
            ts TEXT NOT NULL,
            battle TEXT NOT NULL UNIQUE,
            model_a TEXT NOT NULL,
            model_b TEXT NOT NULL,
            winner TEXT NOT NULL,
            anonymous INTEGER NOT NULL,
            prompt TEXT NOT NULL,
            answer_a TEXT NOT NULL,
            answer_b TEXT NOT NULL,
            settings TEXT NOT NULL,
            call_a INTEGER,
            call_b INTEGER
        )""")


@migration
def m015_conversations(db: sqlite3.Connection) -> None:
    # the web UI's conversations, kept whole after every turn, and its named setting presets
    db.execute("""
        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            created TEXT NOT NULL,
            updated TEXT NOT NULL,
            title TEXT NOT NULL,
            model TEXT NOT NULL,
            system TEXT NOT NULL,
            settings TEXT NOT NULL,
            messages TEXT NOT NULL
        )""")
    db.execute("CREATE TABLE presets (name TEXT PRIMARY KEY, ts TEXT NOT NULL, settings TEXT NOT NULL)")
