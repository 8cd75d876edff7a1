"""Every foundation command, run as a user runs it: `python -m llmlab ...` in a subprocess."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest


def llmlab(*args, input=None, db=None, timeout=300):
    env = dict(os.environ)
    if db is not None:
        env["LLMLAB_DB"] = str(db)
    return subprocess.run([sys.executable, "-m", "llmlab", *args], input=input, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture
def db(tmp_path):
    return tmp_path / "calls.db"


def test_a_mistyped_option_is_a_usage_error_not_a_traceback():
    r = llmlab("prompt", "--no-such-option", "1", "hi")
    assert r.returncode == 2 and "No such option" in r.stderr and "Traceback" not in r.stderr


def test_help_is_light():
    code = ("import sys; sys.argv = ['llmlab', '--help']\n"
            "from llmlab.cli.main import run\n"
            "try:\n    run()\nexcept SystemExit:\n    pass\n"
            "heavy = ('torch', 'transformers', 'llama_cpp', 'pandas')\n"
            "print('HEAVY', [m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "prompt" in out and "tokenize" in out
    assert "HEAVY []" in out


def test_models_lists_bundled_models_from_metadata():
    r = llmlab("models", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["smollm2"]["parameters"] == 134_515_008 and rows["smollm2"]["instruct"] is True
    assert rows["smollm2"]["quantization"] == "Q4_1" and rows["smollm2"]["license"] == "apache-2.0"
    assert rows["gemma3-270m"]["instruct"] is False and rows["gemma3-270m"]["context_length"] == 32768
    table = llmlab("models").stdout
    assert "smollm2" in table and "Q4_K_M" in table


def test_info_shows_the_model_card():
    r = llmlab("info", "gemma3-270m", "--json")
    card = json.loads(r.stdout)
    assert card["instruct"] is False and card["license"] == "gemma"
    assert card["memory_bytes"]["fp16"] == 2 * card["parameters"]
    assert card["parameters"] == 268_098_176 and card["trained_context_length"] == 32768
    assert card["quantization"] == "Q4_K_M" and card["has_chat_template"] is False
    assert "use restrictions" in card["openness"]
    assert "base" in llmlab("info", "gemma3-270m").stdout
    small = json.loads(llmlab("info", "smollm2", "--json").stdout)
    assert small["instruct"] is True and small["has_chat_template"] and small["license"] == "apache-2.0"
    assert small["parameters"] == 134_515_008 and "OSI" in small["openness"]
    assert small["memory_bytes"]["int4"] == small["parameters"] // 2


def test_tokenize_shows_the_lesson_ids():
    r = llmlab("tokenize", "-m", "smollm2", "Where is Groningen located?")
    assert r.returncode == 0, r.stderr
    assert "[9576, 314, 452, 992, 45670, 3807, 47]" in r.stdout
    assert "7 tokens" in r.stdout and "% of the 8192-token context window" in r.stdout


def test_prompt_streams_an_answer_and_logs_it(db):
    r = llmlab("prompt", "-m", "smollm2", "--temperature", "0", "--max-new-tokens", "40",
               "-s", "You are a geography teacher.", "Where is Groningen located?", db=db)
    assert r.returncode == 0, r.stderr
    assert "Netherlands" in r.stdout
    assert "tokens/s" in r.stderr and "first token" in r.stderr
    logs = json.loads(llmlab("logs", "--json", db=db).stdout)
    assert logs[0]["response"].strip() == r.stdout.strip()
    assert logs[0]["messages"][0] == {"role": "system", "content": "You are a geography teacher."}
    assert "Groningen" in llmlab("logs", db=db).stdout


def test_prompt_reads_stdin_and_settings_change_output(db):
    greedy = llmlab("prompt", "-", "--temperature", "0", "-n", "24", input="Tell me a joke.", db=db)
    sampled = llmlab("prompt", "-", "--temperature", "1.3", "--top-k", "0", "--top-p", "1", "--seed",
                     "11", "-n", "24", input="Tell me a joke.", db=db)
    again = llmlab("prompt", "-", "--temperature", "1.3", "--top-k", "0", "--top-p", "1", "--seed",
                   "11", "-n", "24", input="Tell me a joke.", db=db)
    assert greedy.returncode == sampled.returncode == 0
    assert sampled.stdout == again.stdout != greedy.stdout
    settings = json.loads(llmlab("logs", "--json", "-n", "1", db=db).stdout)[0]["settings"]
    assert settings == {"max_new_tokens": 24, "temperature": 1.3, "do_sample": True, "top_k": 0,
                        "top_p": 1.0, "seed": 11, "stop": [], "repeat_penalty": 1.0}


def test_prompt_on_the_base_model_completes_raw_text(db):
    r = llmlab("prompt", "-m", "gemma3-270m", "-t", "0", "-n", "6", "One, two, three, four,", db=db)
    assert r.stdout.lower().lstrip().startswith("five")
    row = json.loads(llmlab("logs", "--json", "-n", "1", db=db).stdout)[0]
    assert row["prompt"] == "One, two, three, four,"


def test_chat_keeps_history_and_handles_commands(db):
    script = "\n".join([
        "Where is Groningen located?",
        "/system You answer with one word.",
        "What country is that in?",
        "/bogus",
        "/reset",
        "Hello!",
        "/exit",
        "this line is never sent",
    ])
    r = llmlab("chat", "-t", "0", "-n", "30", input=script, db=db)
    assert r.returncode == 0, r.stderr
    assert "history cleared" in r.stderr and "unknown command /bogus" in r.stderr
    calls = json.loads(llmlab("logs", "--json", db=db).stdout)[::-1]
    assert len(calls) == 3
    assert [m["role"] for m in calls[1]["messages"]] == ["system", "user", "assistant", "user"]
    assert calls[1]["messages"][0]["content"] == "You answer with one word."
    assert [m["role"] for m in calls[2]["messages"]] == ["system", "user"]  # after /reset


@pytest.mark.parametrize("args, message", [
    (["prompt", "-m", "smolm2", "hi"], "did you mean 'smollm2'"),
    (["prompt", "-m", "/no/such/model.gguf", "hi"], "model file not found"),
    (["prompt", "--temperature", "-1", "hi"], "temperature must be >= 0"),
    (["prompt", "--top-p", "1.5", "hi"], "top_p must be in (0, 1]"),
    (["prompt", "--top-k", "-3", "hi"], "top_k must be"),
    (["prompt", "--max-new-tokens", "0", "hi"], "max_new_tokens must be"),
    (["prompt", "   "], "the prompt is empty"),
    (["prompt", "--n-ctx", "256", "-n", "200", "Tell me about Groningen. " * 20],
     "beyond the context window"),
])
def test_bad_input_gives_one_line_and_nonzero_exit(args, message, db):
    r = llmlab(*args, db=db)
    assert r.returncode == 1
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_not_a_gguf_file(tmp_path, db):
    bad = tmp_path / "fake.gguf"
    bad.write_text("hello")
    r = llmlab("prompt", "-m", str(bad), "hi", db=db)
    assert r.returncode == 1 and "not a GGUF model file" in r.stderr


def test_a_corrupt_log_fails_before_generating_and_is_kept(tmp_path):
    db = tmp_path / "corrupt.db"
    db.write_bytes(b"garbage" * 50)
    r = llmlab("--db", str(db), "prompt", "hi")
    assert r.returncode == 1 and "corrupt" in r.stderr and r.stdout == ""
    assert db.read_bytes() == b"garbage" * 50


def test_ctrl_c_during_streaming_logs_the_partial_response(db):
    env = dict(os.environ, LLMLAB_DB=str(db), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmlab", "prompt", "-m", "gemma3-270m", "--raw", "-t", "0.8", "--seed", "1",
         "-n", "3000", "--n-ctx", "4096", "Chapter One\n\nIt was a dark and stormy night"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    received = ""
    deadline = time.time() + 120
    while len(received) < 40 and time.time() < deadline:
        received += proc.stdout.read(1)
    proc.send_signal(signal.SIGINT)
    out, errs = proc.communicate(timeout=60)
    assert proc.returncode == 130, errs
    assert "interrupted after" in errs and "Traceback" not in errs
    row = json.loads(llmlab("logs", "--json", "-n", "1", db=db).stdout)[0]
    assert row["interrupted"] is True and row["finish_reason"] == "interrupted"
    assert row["response"].startswith(received) and 0 < row["completion_tokens"] < 3000
