"""The call log: rows written for every generation, interrupted ones too; broken logs fail clearly."""

import sqlite3
import threading

import pytest

from llmlab import load_model
from llmlab.errors import StoreError
from llmlab.store import MIGRATIONS, Store


@pytest.fixture(scope="module")
def logged_model(tmp_path_factory):
    db = tmp_path_factory.mktemp("log") / "calls.db"
    model = load_model("smollm2", db=db, n_ctx=1024)
    yield model, db
    model.close()


def test_every_generation_is_logged_with_settings_usage_and_timings(logged_model):
    model, db = logged_model
    r = model.generate([("system", "Be brief."), ("user", "Where is Groningen located?")],
                       temperature=0, max_new_tokens=20, seed=5)
    row = Store.open(db).calls(limit=1)[0]
    assert row["id"] == r.log_id
    assert (row["model"], row["backend"]) == ("smollm2", "llamacpp")
    assert len(row["model_sha256"]) == 64
    assert row["settings"]["temperature"] == 0 and row["settings"]["seed"] == 5
    assert row["messages"] == [{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "Where is Groningen located?"}]
    assert row["prompt"] is None and row["response"] == r.text
    assert row["completion_tokens"] == r.usage.completion_tokens
    assert row["prompt_tokens"] == r.usage.prompt_tokens
    assert row["ttft_s"] > 0 and row["load_s"] > 0 and row["interrupted"] is False
    assert row["ts"].endswith("+00:00")


def test_an_interrupted_stream_is_logged_as_interrupted(logged_model):
    model, db = logged_model
    r = model.prompt("One, two, three, four,", temperature=0, max_new_tokens=200)
    seen = []
    for piece in r:
        seen.append(piece)
        if len(seen) == 4:
            break
    row = Store.open(db).calls(limit=1)[0]
    assert row["interrupted"] is True and row["finish_reason"] == "interrupted"
    assert row["response"] == "".join(seen) and row["prompt"] == "One, two, three, four,"


def test_sha256_is_cached_by_size_and_mtime(logged_model, tmp_path):
    _, db = logged_model
    store = Store.open(db)
    f = tmp_path / "f.bin"
    f.write_bytes(b"abc")
    first = store.file_sha256(f)
    assert first == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    f.write_bytes(b"abcd")
    assert store.file_sha256(f) != first


def test_migrations_are_applied_once_and_recorded(tmp_path):
    db = tmp_path / "m.db"
    Store.open(db).close()
    Store.open(db).close()
    names = [r[0] for r in sqlite3.connect(db).execute("SELECT name FROM _migrations")]
    assert names == [name for name, _ in MIGRATIONS]


def test_a_corrupt_log_is_refused_and_left_untouched(tmp_path):
    db = tmp_path / "corrupt.db"
    db.write_bytes(b"this is not sqlite" * 100)
    before = db.read_bytes()
    with pytest.raises(StoreError, match="corrupt or not an llmlab database"):
        Store.open(db)
    with pytest.raises(StoreError):
        load_model("smollm2", db=db)  # fails before loading the model
    assert db.read_bytes() == before


def test_a_locked_log_gives_a_clear_error_and_keeps_rows(tmp_path):
    db = tmp_path / "locked.db"
    store = Store.open(db)
    store.execute("INSERT INTO file_hashes VALUES ('x', 1, 1, 'h')")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = {}

        def write():
            try:
                store.execute("INSERT INTO file_hashes VALUES ('y', 1, 1, 'h')")
            except StoreError as exc:
                result["error"] = str(exc)

        t = threading.Thread(target=write)
        t.start()
        t.join(20)
        assert "locked" in result["error"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    rows = sqlite3.connect(db).execute("SELECT path FROM file_hashes").fetchall()
    assert rows == [("x",)]
