"""Tool calling: tools from typed functions, the built-in tools, the constrained call format on the
bundled models, the agent loop (its bad cases at unit level, with a scripted fake backend), the agent
task matching against hand-computed expectations, and ``llmlab agent`` end to end on SmolLM2."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from itertools import combinations

import pytest

from llmlab import GenerationConfig
from llmlab.chat import as_messages
from llmlab.errors import ConfigError, DataError, NotSupportedError
from llmlab.models.base import Chunk, Model, ModelInfo, ToolCallDelta, Usage
from llmlab.tools import Agent, Tool, builtin_tools, calculator, date_tools, file_reader, tool
from llmlab.tools.calling import call_schema, plain_messages
from llmlab.tools.evaluate import pass_hat_k, score
from llmlab.tools.tasks import AgentTask, call_matches, calls_match, read_tasks

# --- tools from functions -------------------------------------------------------------------------------


@tool
def convert(amount: float, unit: str = "km", exact: bool = False) -> dict:
    """Convert a distance to miles.

    Args:
        amount: how far
        unit: km or m
        exact: keep every decimal
    """
    miles = amount * (0.621371 if unit == "km" else 0.000621371)
    return {"miles": miles if exact else round(miles, 2)}


def test_a_typed_function_becomes_a_tool_whose_schema_checks_its_arguments():
    fn = convert.spec["function"]
    assert fn["name"] == "convert" and fn["description"] == "Convert a distance to miles."
    props = fn["parameters"]["properties"]
    assert props["amount"] == {"type": "number", "description": "how far"}
    assert fn["parameters"]["additionalProperties"] is False
    assert props["unit"]["default"] == "km" and fn["parameters"]["required"] == ["amount"]
    assert json.loads(convert.run({"amount": 10}).content) == {"miles": 6.21}
    exact = convert.run('{"amount": "10", "unit": "m", "exact": true}')
    assert json.loads(exact.content)["miles"] == pytest.approx(0.00621371)
    bad = convert.run({"amount": "far"})
    assert not bad.ok and not bad.ran and "amount" in bad.error and "\n" not in bad.error
    assert "extra: Extra inputs are not permitted" in convert.run({"amount": 1, "extra": 2}).error
    assert "not JSON" in convert.run("{amount: 1").error


def test_functions_that_cannot_be_tools_are_refused_in_one_line():
    def untyped(x):
        """No hints."""

    def star(*args: int):
        """Varargs."""

    with pytest.raises(ConfigError, match="needs a type hint"):
        Tool.from_function(untyped)
    with pytest.raises(ConfigError, match=r"\*args"):
        Tool.from_function(star)
    for bad in [{"name": "has space"}, {"name": "x", "parameters": {"type": "array"}},
                {"name": "x", "parameters": {"type": "object", "properties": {"a": {"type": "strin"}}}}]:
        with pytest.raises(ConfigError):
            GenerationConfig(tools=[bad])
    with pytest.raises(ConfigError, match="not one of the tools"):
        GenerationConfig(tools=[convert], tool_choice="other")


def test_a_tool_that_raises_hangs_or_returns_no_json_is_a_result_not_a_crash():
    release = threading.Event()

    @tool(timeout=0.2)
    def hangs() -> str:
        """Never returns in time."""
        release.wait(5)
        return "late"

    @tool
    def raises() -> str:
        """Fails."""
        raise RuntimeError("disk on fire")

    @tool
    def opaque() -> object:
        """Returns a Python object."""
        return object()

    try:
        slow = hangs.run({})
        assert not slow.ok and "did not finish within 0.2 s" in slow.error and slow.seconds < 2
    finally:
        release.set()
    assert raises.run({}).error == "raises failed: RuntimeError: disk on fire"
    assert "not JSON" in opaque.run({}).error


# --- built-in tools -------------------------------------------------------------------------------------


@pytest.mark.parametrize("expression, value", [("17 * 23", 391), ("2^10", 1024), ("(1 + 2) / 4", 0.75),
                                                ("1,000 + 1", 1001), ("sqrt(16) + 1", 5), ("7 // 2", 3)])
def test_the_calculator_does_arithmetic(expression, value):
    assert json.loads(calculator().run({"expression": expression}).content) == value


@pytest.mark.parametrize("expression, value", [("log(8, 2)", 3), ("round(3.14159, 2)", 3.14),
                                                ("max(3, 7)", 7)])
def test_commas_between_function_arguments_stay_commas(expression, value):
    assert json.loads(calculator().run({"expression": expression}).content) == value


@pytest.mark.parametrize("expression", [
    '__import__("os").system("true")', "open('/etc/passwd')", "9 ** 9 ** 9", "'a' * 10", "x + 1", "1 / 0",
    "(1).__class__", "", "3999999 ** 3999999", "round(1, -10**9)", '"a".ljust(10**10)', '"%0999d" % 1',
    "(1).to_bytes(10**10, 'big')", "(10**1000) * (10**1000)", "1 < 2", "True + 1", "[1][0]"])
def test_the_calculator_refuses_what_is_not_arithmetic(expression):
    result = calculator().run({"expression": expression})
    assert not result.ok and "\n" not in result.error


def test_date_tools_compute_with_datetime():
    now, between, add = date_tools()
    assert json.loads(now.run({}).content)["date"] == dt.datetime.now(dt.UTC).date().isoformat()
    assert between.run({"start": "2024-02-01", "end": "2024-03-01"}).content == "29"
    assert json.loads(add.run({"date": "2026-12-02", "days": 30}).content) == {"date": "2027-01-01",
                                                                                "weekday": "Friday"}
    assert "unknown time zone" in now.run({"timezone": "Mars/Olympus"}).error
    assert "date" in between.run({"start": "yesterday", "end": "2024-03-01"}).error


def test_the_file_reader_stays_in_its_folder(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("inside", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("outside", encoding="utf-8")
    (tmp_path / "docs" / "link.txt").symlink_to(tmp_path / "secret.txt")
    reader = file_reader(tmp_path / "docs")
    assert reader.run({"path": "a.txt"}).content == "inside"
    for escape in ["../secret.txt", str(tmp_path / "secret.txt"), "link.txt"]:
        assert "outside the allowed folder" in reader.run({"path": escape}).error
    assert "files here: a.txt" in reader.run({"path": "b.txt"}).error
    with pytest.raises(ConfigError, match="no such folder"):
        file_reader(tmp_path / "nope")
    with pytest.raises(ConfigError, match="unknown tool 'shell'"):
        builtin_tools(["shell"])


# --- the call format --------------------------------------------------------------------------------------


def test_the_call_schema_follows_tool_choice_and_refuses_what_a_grammar_cannot_enforce():
    specs = GenerationConfig(tools=[convert, calculator()]).tools
    auto = call_schema(specs)
    assert [o["properties"].get("tool", {}).get("const", "answer") for o in auto["anyOf"]] == \
        ["convert", "calculator", "answer"]
    assert len(call_schema(specs, "required")["anyOf"]) == 2
    assert call_schema(specs, "calculator")["properties"]["tool"] == {"const": "calculator"}
    shaped = call_schema(specs, "auto", {"type": "object", "properties": {"n": {"type": "integer"}}})
    assert shaped["anyOf"][-1]["properties"]["answer"]["properties"]["n"] == {"type": "integer"}
    bounded = {"name": "b", "parameters": {"type": "object",
                                           "properties": {"n": {"type": "integer", "minimum": 0}}}}
    with pytest.raises(ConfigError, match="tool 'b' cannot be called under a grammar.*minimum"):
        call_schema(GenerationConfig(tools=[bounded]).tools)


def test_calls_and_results_become_plain_turns_every_template_accepts():
    specs = GenerationConfig(tools=[calculator()]).tools
    msgs = as_messages([
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "17*23?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "calculator", "arguments": '{"expression": "17*23"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "391"}, {"role": "assistant", "content": "391."},
        {"role": "user", "content": "thanks"}])
    plain = plain_messages(msgs, specs)
    assert [m.role for m in plain] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert plain[0].content.startswith("Be brief.") and "calculator(expression: string" in plain[0].content
    assert json.loads(plain[2].content) == {"tool": "calculator", "arguments": {"expression": "17*23"}}
    assert plain[3].content == "Result of calculator: 391"
    assert json.loads(plain[4].content) == {"answer": "391."}


@pytest.mark.parametrize("fixture", ["smollm2", "gemma"])
def test_a_local_model_always_returns_a_well_formed_call_or_answer(fixture, request):
    model = request.getfixturevalue(fixture)
    tools = [calculator(), *date_tools()]
    for question in ["What is 12 * 9?", "Hello there!", "How many days from 2025-01-01 to 2025-02-01?"]:
        for choice in ("auto", "required", "add_days"):
            r = model.prompt([("user", question)], tools=tools, tool_choice=choice, temperature=0,
                             max_new_tokens=80).complete()
            assert r.raw is not None
            if r.calls:  # the grammar makes a call name a real tool with arguments of its schema
                (call,) = r.calls
                assert r.finish_reason == "tool_calls" and r.text == ""
                named = {t.name: t for t in tools}[call.name]
                named.check(call.arguments)
                assert choice in ("auto", "required", call.name)
            elif r.finish_reason != "length":  # a reply that ended (was not cut off) is an answer
                assert choice == "auto" and json.loads(r.raw)["answer"] == r.text


def test_an_answer_streams_as_it_is_decoded_and_the_call_log_keeps_tool_calls(smollm2, tmp_path):
    from llmlab.store import Store

    store = Store.open(tmp_path / "log.db")
    smollm2.logger = store.log_response
    try:
        r = smollm2.prompt([("user", "Say hello.")], tools=[calculator()], tool_choice="auto", temperature=0,
                           max_new_tokens=60)
        pieces = list(r)
        call = smollm2.prompt([("user", "What is 2+2?")], tools=[calculator()], tool_choice="calculator",
                              temperature=0, max_new_tokens=40).complete()
    finally:
        smollm2.logger = None
    assert not r.calls and re.match(r'\s*\{\s*"answer"', r.raw)
    assert "".join(pieces) == r.text and r.text in r.raw and len(pieces) > 1  # streamed as decoded
    if r.finish_reason == "stop":
        assert json.loads(r.raw)["answer"] == r.text
    logged = store.calls(limit=2)
    assert logged[0]["tool_calls"][0]["function"]["name"] == "calculator"
    logged_args = logged[0]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(logged_args) == json.loads(call.calls[0].arguments)
    assert logged[0]["settings"]["tool_choice"] == "calculator"
    store.close()


def test_a_model_without_grammar_or_native_tools_is_refused():
    class Plain(Model):
        backend = "fake"

        def stream(self, prompt, config, cancel=None):
            yield Chunk("x", finish_reason="stop")

        def encode(self, text):
            return [1]

        def tokenize(self, text):
            return []

    with pytest.raises(NotSupportedError, match="cannot follow a grammar.*tool calling"):
        Plain(ModelInfo("m", "fake", chat_template="{{ messages }}")).prompt("hi", tools=[calculator()])


# --- the agent loop, at unit level: a scripted backend with native tool calls -------------------------


class Scripted(Model):
    """Replies from a script: a dict is a tool call, a string an answer."""
    backend = "fake"
    capabilities = frozenset({"tools"})
    server_templates = True

    def __init__(self, script):
        super().__init__(ModelInfo("scripted", "fake"))
        self.script, self.seen = list(script), []

    def stream(self, prompt, config, cancel=None):
        self.seen.append(prompt)
        step = self.script.pop(0) if self.script else "done"
        if isinstance(step, dict):
            yield Chunk(tool_calls=[ToolCallDelta(0, f"c{len(self.seen)}", step["name"], "")])
            yield Chunk(tool_calls=[ToolCallDelta(0, arguments=json.dumps(step.get("arguments", {})))],
                        finish_reason="tool_calls", usage=Usage(5, 5))
        else:
            yield Chunk(step, finish_reason="stop", usage=Usage(5, 5))

    def fit(self, prompt, config, overflow="error"):  # a server counts its own tokens
        return prompt, 0, 0

    def encode(self, text):
        return list(range(len(text.split())))

    def tokenize(self, text):
        return []


def test_the_loop_runs_calls_feeds_results_back_and_answers():
    model = Scripted([{"name": "calculator", "arguments": {"expression": "6*7"}}, "It is 42."])
    run = Agent(model, [calculator()], examples=False).run("What is 6*7?")
    assert run.answer == "It is 42." and run.stopped == "answer"
    assert [s.kind for s in run.steps] == ["reply", "call", "reply"]
    assert run.steps[1].result == "42" and run.steps[1].ran
    roles = [m.role for m in run.messages]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert model.seen[1][-1].role == "tool" and model.seen[1][-1].content == "42"
    assert model.seen[1][-1].tool_call_id == model.seen[1][-2].tool_calls[0].id


def test_the_loop_records_what_a_model_gets_wrong_and_never_hangs():
    @tool(side_effects=True)
    def send_mail(to: str) -> str:
        """Send a mail."""
        raise AssertionError("a dry run must not run a tool with side effects")

    script = [{"name": "invented_tool"}, {"name": "calculator", "arguments": {"expr": "1"}},
              {"name": "calculator", "arguments": {"expression": "1/0"}},
              {"name": "send_mail", "arguments": {"to": "a@b"}}]
    agent = Agent(Scripted(script * 3), [calculator(), send_mail], max_steps=4, dry_run=True, examples=False)
    run = agent.run("go")
    errors = [s.error for s in run.calls]
    assert "no tool named 'invented_tool'; the tools are: calculator, send_mail" in errors[0]
    assert "invalid arguments for calculator" in errors[1] and "expression" in errors[1]
    assert "division by zero" in errors[2]
    assert errors[3] is None and not run.calls[3].ran and "not run" in run.calls[3].result
    assert run.stopped == "step_limit" and run.answer is None and len(run.calls) == 4
    tool_turns = [m for m in run.messages if m.role == "tool"]
    assert tool_turns[0].content.startswith("error: there is no tool")


def test_a_reply_that_fails_ends_the_run_as_an_error_step_and_bad_requests_are_refused():
    class Overflowing(Scripted):
        def fit(self, prompt, config, overflow="error"):
            from llmlab.errors import ContextOverflowError

            raise ContextOverflowError(9000, 128, 8192)

    run = Agent(Overflowing([]), [calculator()], examples=False).run("What is 2+2?")
    assert run.stopped == "error" and run.answer is None and "8192" in run.steps[-1].error
    with pytest.raises(ConfigError, match="two tools are named"):
        Agent(Scripted([]), [calculator(), calculator()])
    from llmlab.errors import PromptError

    for empty in ("", []):
        with pytest.raises(PromptError):
            Agent(Scripted([]), [calculator()]).run(empty)
    with pytest.raises(ConfigError, match="timeout"):
        Tool.from_function(lambda: 1, name="x", timeout=None)


def test_a_task_file_cannot_point_a_tool_outside_its_folder(tmp_path):
    with pytest.raises(ConfigError, match="must lie beside it"):
        builtin_tools(["files:../"], base=tmp_path)
    with pytest.raises(ConfigError, match="must lie beside it"):
        builtin_tools(["files:/etc"], base=tmp_path)


# --- agent tasks: matching and scoring ----------------------------------------------------------------


def test_calls_are_matched_by_structure_as_bfcl_does():
    exp = {"name": "add_days", "arguments": {"date": "2026-12-02", "days": [30, 30.0], "tz": ["", "UTC"]}}
    assert call_matches(exp, "add_days", '{"date": "2026-12-02", "days": 30}')
    assert call_matches(exp, "add_days", {"date": " 2026-12-02 ", "days": 30.0, "tz": "utc"})
    assert not call_matches(exp, "add_days", {"date": "2026-12-02"})                 # required missing
    assert not call_matches(exp, "add_days", {"date": "2026-12-02", "days": 31})     # wrong value
    assert not call_matches(exp, "add_days", {"date": "2026-12-02", "days": 30, "x": 1})  # unexpected
    assert not call_matches(exp, "days_between", {"date": "2026-12-02", "days": 30})
    assert not call_matches(exp, "add_days", {"date": "2026-12-02", "days": "30"})   # a string is no number
    assert not call_matches(exp, "add_days", "{not json")
    search = {"name": "s", "arguments": {"q": {"regex": "open|hour"}}}
    assert call_matches(search, "s", {"q": "Opening hours"})
    calc = ({"name": "calculator", "arguments": {"expression": ["17*23"]}},)
    same = '{"expression": "17 * 23"}'
    assert calls_match(calc, [("calculator", same), ("calculator", same)])  # a repeat counts once
    assert not calls_match(calc, [("calculator", same), ("calculator", '{"expression": "1"}')])
    assert calls_match((), []) and not calls_match((), [("calculator", same)])


def test_pass_hat_k_is_taubench_s_estimate():
    trials = [[True, True, False, True], [False] * 4, [True] * 4]
    for k in (1, 2, 3, 4):  # against counting the k-subsets of trials that all succeed
        direct = [sum(all(c) for c in combinations(t, k)) / len(list(combinations(t, k))) for t in trials]
        assert pass_hat_k(trials, k) == pytest.approx(direct)
    assert pass_hat_k(trials, 1) == [0.75, 0.0, 1.0]
    expected = ({"name": "calculator", "arguments": {"expression": "2+2"}},)
    task = AgentTask("t", "q", ("calculator",), expected, ("4",))
    assert score(task, "It is 4.", [("calculator", '{"expression": "2 + 2"}')]) == \
        {"calls_ok": True, "answer_ok": True, "success": True}
    assert score(task, "It is 5.", [("calculator", '{"expression": "2+2"}')])["success"] is False


@pytest.mark.parametrize("line, says", [
    ("{not json", "not JSON"), ('{"id": "a", "request": "q", "tools": ["calculator"]}', "expected_calls"),
    ('{"id": "a", "request": "q", "tools": [], "expected_answer": "x"}', "non-empty list"),
    ('{"id": "a", "request": "q", "tools": ["calculator"], "expected_answer": "x", "x": 1}', "unknown key"),
    ('{"id": "a", "request": "q", "tools": ["calculator"], "expected_calls": [{}]}', "expected_calls"),
    ('{"id": "a", "request": "q", "tools": ["c"], "expected_calls": [{"name": "c", "arguments": '
     '{"q": {"regex": "("}}}]}', "bad regex"),
    ('{"id": "a", "request": "q", "tools": ["calculator"], "expected_answer": " "}', "non-empty string"),
])
def test_a_bad_task_file_is_one_line_with_its_line_number(tmp_path, line, says):
    path = tmp_path / "tasks.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=says) as exc:
        read_tasks(path)
    assert f"{path}:1" in str(exc.value) and "\n" not in str(exc.value)


def test_the_builtin_task_set_reads_and_covers_each_kind():
    tasks, base = read_tasks("builtin")
    kinds = {t.category for t in tasks}
    assert kinds == {"arithmetic", "dates", "search", "irrelevance"}
    folders = [t.split(":", 1)[1] for task in tasks for t in task.tools if t.startswith("search:")]
    assert folders and all((base / f).is_dir() for f in folders)
    assert sum(t.irrelevance for t in tasks) >= 4


# --- llmlab agent, end to end on SmolLM2 ---------------------------------------------------------------


def _cli(*args, env=None):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "llmlab", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def test_agent_run_answers_arithmetic_and_dates_with_the_bundled_model(tmp_path):
    out = _cli("agent", "run", "What is 17 * 23?", "--tool", "calculator")
    assert out.returncode == 0, out.stderr
    assert "call calculator(" in out.stderr and "-> 391" in out.stderr and "391" in out.stdout
    out = _cli("agent", "run", "How many days are there from 2026-01-01 to 2026-03-01?", "--tool", "dates",
               "--json")
    assert out.returncode == 0, out.stderr
    run = json.loads(out.stdout)
    call = next(s for s in run["steps"] if s["kind"] == "call")
    assert call["tool"] == "days_between" and call["result"] == "59"
    assert [m["role"] for m in run["messages"]][:3] == ["user", "assistant", "tool"]
    (tmp_path / "notes.txt").write_text("Nothing to see here.")
    dup = _cli("agent", "run", "hi", "--tool", f"search:{tmp_path}", "--tool", "rag:x")
    assert dup.returncode == 1 and "two tools are named 'search_documents'" in dup.stderr
    bad = _cli("agent", "run", "hi", "--tool", "shell")
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0
    assert "unknown tool 'shell'" in bad.stderr


def test_agent_eval_scores_held_out_tasks_stores_and_resumes(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("\n".join(json.dumps(t) for t in [
        {"id": "mul", "request": "What is 21 times 3?", "tools": ["calculator"],
         "expected_calls": [{"name": "calculator", "arguments": {"expression": ["21*3", "3*21"]}}],
         "expected_answer": "63"},
        {"id": "between", "request": "How many days are there from 2025-01-01 to 2025-01-31?",
         "tools": ["dates"], "expected_calls": [
             {"name": "days_between", "arguments": {"start": "2025-01-01", "end": "2025-01-31"}}]},
        {"id": "hello", "request": "Hello, how are you today?", "tools": ["calculator"],
         "expected_calls": []},
    ]) + "\n", encoding="utf-8")
    db = tmp_path / "calls.db"
    out = _cli("--db", str(db), "agent", "eval", str(tasks), "-m", "smollm2", "--out",
               str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr
    trials = [json.loads(line) for line in (tmp_path / "out" / "trials.jsonl").read_text().splitlines()]
    assert [t["task"] for t in trials] == ["mul", "between", "hello"]
    for t in trials:  # each trial's score follows from what it did
        assert t["success"] == all(v for k, v in t.items() if k in ("calls_ok", "answer_ok"))
        if t["task"] == "hello" or not t["calls"]:
            assert t["calls_ok"] == (t["task"] == "hello" and not t["calls"])
    table = (tmp_path / "out" / "agent_eval.md").read_text()
    share = sum(t["success"] for t in trials) / 3
    assert f"| {share:.2f} [" in table and "llamacpp/smollm2 | constrained | 3 |" in table
    from llmlab.store import Store

    store = Store.open(db)
    n_calls = len(store.calls(limit=None))
    store.close()
    again = _cli("--db", str(db), "agent", "eval", str(tasks), "-m", "smollm2")
    assert again.returncode == 0, again.stderr
    store = Store.open(db)
    assert len(store.calls(limit=None)) == n_calls  # resumed from the store: no model call
    (run,) = [r for r in store.runs() if r["kind"] == "agent"]
    assert run["done"] == 3 and run["summary"]["pass"]["1"]["value"] == pytest.approx(share)
    store.close()
