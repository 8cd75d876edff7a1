"""Structured output and tool calls through ``llmlab serve``, proven with the peers people use: the
official ``openai`` and ``ollama`` clients, LangChain's ``ChatOpenAI`` and ``ChatOllama``, and
LangGraph's prebuilt ReAct agent. One real server (bundled SmolLM2-135M) for the module.

SmolLM2-135M is weak, so every test is greedy (temperature 0) and asks in a way the model handles:
"Multiply 12 by 34." makes it call ``multiply(12, 34)`` even when it may answer instead, and after the
result it answers in text. Where only the grammar guarantees something (a reply that validates, a
named tool's call), the test holds the server to that; where the model decides, the test pins the
greedy outcome, so a change in what reaches the model shows up here.
"""

from __future__ import annotations

import json

import httpx
import pytest
from jsonschema import validate

from llmlab.config import GenerationConfig
from llmlab.errors import ConfigError
from llmlab.serve.process import ServerProcess

PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
ARGS = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"]}
MULTIPLY = {"type": "function", "function": {"name": "multiply", "parameters": ARGS,
                                             "description": "Multiply two integers a and b."}}
ADD = {"type": "function", "function": {"name": "add", "description": "Add two integers a and b.",
                                        "parameters": ARGS}}
ASK = [{"role": "user", "content": "Multiply 12 by 34."}]
GREEDY = {"temperature": 0, "max_tokens": 48}


def multiply(a: int, b: int) -> int:
    """Multiply two integers a and b."""
    return a * b


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = tmp_path_factory.mktemp("serve-tools") / "calls.db"
    args = ["--db", str(db), "serve", "-m", "smollm2", "--n-ctx", "2048", "--parallel", "2", "-q"]
    with ServerProcess(args, log=db.with_suffix(".log")) as s:
        s.db = db
        yield s


def shown_to_the_model(server, text: str) -> bool:
    """Whether the server's latest logged call showed the model ``text`` in its messages: what the
    server guarantees; whether a 135M model then uses the number is the model's business."""
    from llmlab.store import Store

    store = Store.open(server.db)
    try:
        last = store.calls(limit=1)[0]
    finally:
        store.close()
    return any(text in m["content"] for m in last["messages"] or [])


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key="unused")


# --- openai: response_format ---------------------------------------------------------------------

@pytest.mark.parametrize("prompt", ["A person as JSON.", "Describe a famous scientist.",
                                    "Who wrote Hamlet? Reply as JSON.", "Invent a character for a novel."])
def test_json_schema_replies_validate(client, prompt):
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    out = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": prompt}],
                                         response_format=fmt, **GREEDY)
    assert out.choices[0].finish_reason == "stop"
    validate(json.loads(out.choices[0].message.content), PERSON)


def test_json_schema_streamed_and_json_object(client):
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    chunks = list(client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "A person as JSON."}], response_format=fmt,
        stream=True, **GREEDY))
    validate(json.loads("".join(c.choices[0].delta.content or "" for c in chunks)), PERSON)
    out = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Hi!"}],
                                         response_format={"type": "json_object"}, temperature=0,
                                         max_tokens=200)
    assert isinstance(json.loads(out.choices[0].message.content), dict)


def test_a_schema_the_grammar_cannot_enforce_is_a_400_with_the_config_message(client):
    from openai import BadRequestError

    bad = {"type": "object", "properties": {"name": {"type": "string", "pattern": "(?=x)"}}}
    with pytest.raises(ConfigError) as expected:
        GenerationConfig(json_schema=bad)
    with pytest.raises(BadRequestError) as exc:
        client.chat.completions.create(model="smollm2", messages=ASK, **GREEDY, response_format={
            "type": "json_schema", "json_schema": {"name": "bad", "schema": bad}})
    assert exc.value.status_code == 400
    assert exc.value.body["message"] == str(expected.value) and exc.value.body["param"] == "response_format"


# --- openai: tools ---------------------------------------------------------------------------------

def test_a_named_tool_is_called_streamed_and_not(client):
    choice = {"type": "function", "function": {"name": "multiply"}}
    out = client.chat.completions.create(model="smollm2", messages=ASK, tools=[ADD, MULTIPLY],
                                         tool_choice=choice, **GREEDY)
    message = out.choices[0].message
    assert out.choices[0].finish_reason == "tool_calls" and message.content is None
    (call,) = message.tool_calls
    assert call.type == "function" and call.function.name == "multiply" and call.id
    assert json.loads(call.function.arguments) == {"a": 12, "b": 34}
    # the client's own stream helper puts the streamed pieces together
    with client.chat.completions.stream(model="smollm2", messages=ASK, tools=[ADD, MULTIPLY],
                                        tool_choice=choice, **GREEDY) as stream:
        final = stream.get_final_completion()
    streamed = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls"
    assert (streamed.function.name, streamed.function.arguments) == ("multiply", call.function.arguments)


def test_required_call_then_the_result_gives_an_answer(client, server):
    out = client.chat.completions.create(model="smollm2", messages=ASK, tools=[MULTIPLY],
                                         tool_choice="required", **GREEDY)
    (call,) = out.choices[0].message.tool_calls
    result = multiply(**json.loads(call.function.arguments))
    history = ASK + [out.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": str(result)}]
    answer = client.chat.completions.create(model="smollm2", messages=history, tools=[MULTIPLY], **GREEDY)
    reply = answer.choices[0]
    assert reply.finish_reason == "stop" and not reply.message.tool_calls
    assert reply.message.content.strip()
    assert shown_to_the_model(server, f"Result of multiply: {result}")  # the result reached the model
    plain = client.chat.completions.create(model="smollm2", messages=ASK, tools=[MULTIPLY],
                                           tool_choice="none", **GREEDY)
    assert not plain.choices[0].message.tool_calls and plain.choices[0].message.content


def test_bad_tools_are_400s_naming_the_field(server):
    def error(path, **body):
        r = httpx.post(server.url + path, json={"model": "smollm2", "messages": ASK, "stream": False, **body})
        assert r.status_code == 400, r.text
        return r.json()["error"]

    assert error("/v1/chat/completions", tools=[MULTIPLY], tool_choice="divide")["param"] == "tool_choice"
    bad = error("/v1/chat/completions", tools=[{"type": "function", "function": {"name": "no spaces"}}])
    assert bad["param"] == "tools" and "name" in bad["message"]
    assert "format" in error("/api/chat", format="yaml")
    assert "/api/chat" in httpx.post(server.url + "/api/generate", json={
        "model": "smollm2", "prompt": "hi", "tools": [MULTIPLY]}).json()["error"]


# --- ollama ----------------------------------------------------------------------------------------

def test_ollama_client_format_tools_and_results(server):
    import ollama

    client = ollama.Client(host=server.url)
    assert "tools" in client.show("smollm2").capabilities  # constrained calls: any grammar model
    options = {"temperature": 0, "num_predict": 48}
    shaped = client.chat(model="smollm2", messages=[{"role": "user", "content": "A person as JSON."}],
                         format=PERSON, options=options)
    validate(json.loads(shaped.message.content), PERSON)
    asked = client.chat(model="smollm2", messages=ASK, tools=[multiply], options=options)
    assert asked.done_reason == "stop"
    (call,) = asked.message.tool_calls
    assert call.function.name == "multiply" and dict(call.function.arguments) == {"a": 12, "b": 34}
    streamed = [c for c in client.chat(model="smollm2", messages=ASK, tools=[multiply], options=options,
                                       stream=True) if c.message.tool_calls]
    assert [c.message.tool_calls[0].function.name for c in streamed] == ["multiply"]
    history = ASK + [asked.message, {"role": "tool", "content": "408", "tool_name": "multiply"}]
    answer = client.chat(model="smollm2", messages=history, tools=[multiply], options=options)
    assert not answer.message.tool_calls and answer.message.content.strip()
    assert shown_to_the_model(server, "Result of multiply: 408")
    # format and tools together: a call when the model calls, a shaped answer when it answers
    both = client.chat(model="smollm2", messages=ASK, tools=[multiply], format=PERSON, options=options)
    assert both.message.tool_calls[0].function.name == "multiply"
    told = client.chat(model="smollm2", messages=[{"role": "user", "content": "Tell me about Marie Curie."}],
                       tools=[multiply], format=PERSON, options=options)
    assert not told.message.tool_calls
    validate(json.loads(told.message.content), PERSON)
    generated = client.generate(model="smollm2", prompt="A person as JSON.", format="json", options=options)
    assert isinstance(json.loads(generated.response), dict)


# --- LangChain and LangGraph -----------------------------------------------------------------------

def test_langchain_bind_tools_gets_tool_calls(server):
    from langchain_ollama import ChatOllama
    from langchain_openai import ChatOpenAI

    chat_openai = ChatOpenAI(model="smollm2", base_url=server.url + "/v1", api_key="unused", temperature=0,
                             max_tokens=48)
    reply = chat_openai.bind_tools([multiply], tool_choice="multiply").invoke("Multiply 12 by 34.")
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("multiply", {"a": 12, "b": 34})]
    chat_ollama = ChatOllama(model="smollm2", base_url=server.url, temperature=0, num_predict=48)
    reply = chat_ollama.bind_tools([multiply]).invoke("Multiply 12 by 34.")
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("multiply", {"a": 12, "b": 34})]


@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")  # to langchain.agents, LangGraph 1.0
def test_langgraph_react_agent_calls_the_tool_and_finishes(server):
    """The prebuilt ReAct loop with tool_choice left to the model: it calls multiply, the real function
    runs, and with the result the model answers in text, which ends the loop well inside its limit."""
    from langchain_core.messages import AIMessage, ToolMessage
    from langchain_openai import ChatOpenAI
    from langgraph.prebuilt import create_react_agent

    ran = []

    def tracked(a: int, b: int) -> int:
        """Multiply two integers a and b."""
        ran.append((a, b))
        return a * b

    tracked.__name__ = "multiply"
    llm = ChatOpenAI(model="smollm2", base_url=server.url + "/v1", api_key="unused", temperature=0,
                     max_tokens=48)
    agent = create_react_agent(llm, [tracked])
    result = agent.invoke({"messages": [("user", "Multiply 12 by 34.")]}, {"recursion_limit": 6})
    tool_messages = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert ran == [(12, 34)] and [(m.name, m.content) for m in tool_messages] == [("multiply", "408")]
    last = result["messages"][-1]
    assert isinstance(last, AIMessage) and not last.tool_calls and last.content


# --- llmlab's own remote backends run the agent loop against the server ---------------------------


@pytest.mark.parametrize("backend", ["openai", "ollama"])
def test_llmlab_remote_backends_run_the_agent_loop_with_native_tool_calls(server, backend, tmp_path):
    """``openai/`` and ``ollama/`` models have native tool calls (the server's); the agent runs the
    tool on this side and sends its result back in each API's own format."""
    from llmlab import agent, load_model
    from llmlab.tools import Tool

    calls = []

    def tracked(a: int, b: int) -> int:
        """Multiply two integers a and b."""
        calls.append((a, b))
        return a * b

    url = server.url + ("/v1" if backend == "openai" else "")
    model = load_model(f"{backend}/smollm2@{url}", log=False)
    assert model.can("tools")
    try:
        run = agent(model, tools=[Tool.from_function(tracked, name="multiply")], max_steps=3,
                    examples=False).run("Multiply 12 by 34.", tool_choice="multiply")
    finally:
        model.close()
    assert calls == [(12, 34)]
    call = run.calls[0]
    assert call.tool == "multiply" and call.result == "408" and call.ran and call.error is None
    roles = [m.role for m in run.messages]
    assert roles[:3] == ["user", "assistant", "tool"] and run.messages[2].content == "408"
    assert run.stopped in ("answer", "step_limit", "cut_off")
