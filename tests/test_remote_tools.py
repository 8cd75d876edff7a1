"""Structured output and tool calls through the HTTP backends (``openai/``, ``ollama/``).

Unit level, against the fake server of ``test_remote_unit.py`` (an ``httpx.MockTransport``, named as
the fake it is): the request shapes of each API, streamed tool-call pieces put together, answers
that break the schema re-asked and then refused in one line. Real level: llama-cpp-python's own
server on the bundled SmolLM2, started with ``--chat_format chatml-function-calling`` (its tool
calling), once for this module. What it really does, and what these tests hold it to: it refuses
``response_format`` ``json_schema`` (HTTP 500, a validation error), enforces ``json_object`` with a
``schema`` by a grammar, ignores ``response_format`` on ``/v1/completions``, streams a call of a named
tool, cannot stream a call it chooses itself (ends the stream empty) and fails on ``required``.
"""

from __future__ import annotations

import json

import httpx
import pytest

from llmlab import load_model
from llmlab.chat import Message, ToolCall
from llmlab.errors import BackendError, NotSupportedError, OutputError, PromptError
from llmlab.models.ollama import OllamaModel
from test_remote_servers import KEY, llama_cpp_server_process
from test_remote_unit import FakeServer, fake_openai, sse

CITY = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"]}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time in a city",
                                         "parameters": {"type": "object", "properties": {}}}}
ASK = [("system", "You are helpful."), ("user", "What is the weather in Paris?")]


def content(*pieces, finish="stop") -> bytes:
    events = [{"choices": [{"delta": {"content": p}, "finish_reason": None}]} for p in pieces]
    return sse(*events, {"choices": [{"delta": {}, "finish_reason": finish}]})


def sent(fake: FakeServer, i: int = 0) -> dict:
    return json.loads(fake.requests[i].content)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


# --- openai/: structured output ------------------------------------------------------------------

def test_openai_sends_the_schema_and_validates_what_comes_back():
    model, fake = fake_openai((200, content('{"city": "Oslo", ', '"population": 700000}'), None))
    assert model.can("grammar") and model.can("tools")
    r = model.generate([("user", "A city")], json_schema=CITY)
    assert r.json() == {"city": "Oslo", "population": 700000} and len(fake.requests) == 1
    assert sent(fake)["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "output", "schema": CITY, "strict": True}}
    model, fake = fake_openai((200, content("{}"), None))
    model.generate([("user", "Anything")], json_schema=True)
    assert sent(fake)["response_format"] == {"type": "json_object"}


def test_an_answer_that_breaks_the_schema_is_asked_again_then_refused_in_one_line():
    bad, good = content("Oslo has 700000 people."), content('{"city": "Oslo", "population": 7}')
    model, fake = fake_openai((200, bad, None), (200, good, None))
    assert model.generate([("user", "A city")], json_schema=CITY).json()["city"] == "Oslo"
    assert len(fake.requests) == 2

    model, fake = fake_openai((200, content('{"city": "Oslo"}'), None), output_retries=1)
    response = model.prompt([("user", "A city")], json_schema=CITY)
    seen = []
    with pytest.raises(OutputError) as exc:
        seen.extend(response)  # buffered: nothing reaches the consumer before it validates
    assert seen == [] and len(fake.requests) == 2
    text = one_line(exc)
    assert "appears to ignore the JSON schema" in text and "2 answer(s)" in text
    assert "'population' is a required property" in text and '{"city": "Oslo"}' in text


def test_a_buffered_answer_can_still_be_cancelled():
    model, fake = fake_openai((200, content("not", " json"), None))
    response = model.prompt([("user", "A city")], json_schema=CITY)
    response.cancel()
    assert response.complete().interrupted and len(fake.requests) == 1


def test_a_cut_off_answer_is_not_asked_again():
    model, fake = fake_openai((200, content('{"city": "Os', finish="length"), None))
    r = model.generate([("user", "A city")], json_schema=CITY, max_new_tokens=4)
    assert len(fake.requests) == 1 and r.finish_reason == "length"
    assert "max_new_tokens=4" in r.json_error


def test_a_server_that_refuses_json_schema_gets_the_json_object_form():
    refusal = {"error": {"message": "1 validation error: ('body', 'response_format', 'type') Input should "
                                    "be 'text' or 'json_object'"}}
    good = content('{"city": "Oslo", "population": 7}')
    model, fake = fake_openai((500, refusal, None), (200, good, None))
    for _ in range(2):
        assert model.generate([("user", "A city")], json_schema=CITY).json()["population"] == 7
    assert len(fake.requests) == 3  # a 500 for a structured request is not retried
    assert sent(fake, 1)["response_format"] == sent(fake, 2)["response_format"] == {
        "type": "json_object", "schema": CITY}
    model, fake = fake_openai((500, refusal, None))
    with pytest.raises(NotSupportedError) as exc:
        model.generate([("user", "A city")], json_schema=CITY)
    assert "refused a request with structured output (HTTP 500" in one_line(exc) and len(fake.requests) == 2


# --- openai/: tool calls -------------------------------------------------------------------------

def tool_stream(*pieces: str, name: str = "get_weather") -> bytes:
    """A call of ``name`` whose arguments arrive in ``pieces`` (id and name in the first only)."""
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": ""}}
    events = [{"choices": [{"delta": {"role": "assistant", "tool_calls": [first]}, "finish_reason": None}]}]
    events += [{"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": p}}]},
                             "finish_reason": None}]} for p in pieces]
    events.append({"choices": [{"delta": {}, "finish_reason": "tool_calls"}],
                   "usage": {"prompt_tokens": 30, "completion_tokens": 9}})
    return sse(*events)


def test_openai_streamed_tool_call_pieces_become_one_call():
    model, fake = fake_openai((200, tool_stream('{"ci', 'ty": "Pa', 'ris"}'), None))
    r = model.generate(list(ASK), tools=[WEATHER])
    assert r.text == "" and r.finish_reason == "tool_calls" and r.usage.completion_tokens == 9
    assert len(r.tool_calls) == 4
    (call,) = r.calls
    assert (call.id, call.name, json.loads(call.arguments)) == ("call_1", "get_weather", {"city": "Paris"})
    body = sent(fake)
    assert body["tools"] == [WEATHER] and body["tool_choice"] == "auto"


@pytest.mark.parametrize("choice, wire", [
    ("auto", "auto"), ("required", "required"),
    ("get_time", {"type": "function", "function": {"name": "get_time"}}), ("none", None)])
def test_openai_tool_choice_in_openai_form(choice, wire):
    name = "get_time" if choice == "get_time" else "get_weather"
    answer = content("Hi") if choice == "none" else tool_stream("{}", name=name)
    model, fake = fake_openai((200, answer, None))
    model.generate(list(ASK), tools=[WEATHER, TIME], tool_choice=choice)
    body = sent(fake)
    assert body.get("tool_choice") == wire and ("tools" in body) == (wire is not None)


def test_a_required_named_tool_is_checked_on_the_answer():
    model, fake = fake_openai((200, tool_stream("{}"), None), output_retries=0)
    with pytest.raises(OutputError) as exc:
        model.generate(list(ASK), tools=[WEATHER, TIME], tool_choice="get_time")
    assert "appears to ignore the tool_choice 'get_time'" in one_line(exc)
    assert "it called 'get_weather', not 'get_time'" in str(exc.value)
    model, fake = fake_openai((200, content("Sunny."), None), (200, tool_stream("{}"), None))
    assert model.generate(list(ASK), tools=[WEATHER], tool_choice="required").calls[0].name == "get_weather"
    assert len(fake.requests) == 2


def test_openai_messages_with_calls_and_results_in_openai_form():
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    chat = [*ASK, Message("assistant", "", (call,)), Message("tool", "18 C, sunny", tool_call_id="call_1")]
    model, fake = fake_openai((200, content("It is sunny."), None))
    assert model.generate(chat, tools=[WEATHER]).text == "It is sunny."
    messages = sent(fake)["messages"]
    assert messages[2] == {"role": "assistant", "content": "", "tool_calls": [{
        "id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
    assert messages[3] == {"role": "tool", "content": "18 C, sunny", "tool_call_id": "call_1"}


def test_a_server_that_refuses_tools_is_one_line():
    model, fake = fake_openai((400, {"error": {"message": "this model does not support tools"}}, None))
    with pytest.raises(NotSupportedError) as exc:
        model.generate(list(ASK), tools=[WEATHER])
    assert one_line(exc).startswith("the openai server at http://fake/v1 refused a request with tool calling")
    with pytest.raises(NotSupportedError, match="need a chat"):
        model.generate("What is the weather in Paris?", tools=[WEATHER])


def test_an_empty_stream_with_tools_is_asked_for_whole():
    call = {"id": "c", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
    whole = {"choices": [{"message": {"content": None, "tool_calls": [call]}, "finish_reason": "tool_calls"}],
             "usage": {"prompt_tokens": 5, "completion_tokens": 6}}
    model, fake = fake_openai((200, b"", None), (200, whole, None))
    r = model.generate(list(ASK), tools=[WEATHER])
    assert json.loads(r.calls[0].arguments) == {"city": "Rome"} and r.usage.prompt_tokens == 5
    assert sent(fake, 0)["stream"] is True and "stream" not in sent(fake, 1)
    model, fake = fake_openai((200, b"", None))
    with pytest.raises(BackendError, match="ended the stream without an answer"):
        model.generate([("user", "Hi")])


# --- ollama/ -------------------------------------------------------------------------------------

def fake_ollama(*answers, **kw) -> tuple[OllamaModel, FakeServer]:
    fake = FakeServer(*answers)
    return OllamaModel("qwen3", check=False, backoff=0.001, transport=httpx.MockTransport(fake), **kw), fake


def ndjson(*lines: dict) -> bytes:
    return b"\n".join(json.dumps(x).encode() for x in lines)


def said(text: str) -> bytes:
    return ndjson({"message": {"role": "assistant", "content": text}, "done": False},
                  {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                   "prompt_eval_count": 3, "eval_count": 2})


def test_ollama_sends_the_schema_as_format_and_validates():
    model, fake = fake_ollama((200, said('{"city": "Oslo"}'), None),
                              (200, said('{"city": "Oslo", "population": 1}'), None))
    assert model.can("grammar") and model.can("tools")
    assert model.generate([("user", "A city")], json_schema=CITY).json()["population"] == 1
    assert sent(fake)["format"] == CITY and len(fake.requests) == 2
    model, fake = fake_ollama((200, said("no"), None))
    with pytest.raises(OutputError) as exc:
        model.generate("A city:", json_schema=True)
    assert "appears to ignore the JSON schema" in one_line(exc) and "not valid JSON" in str(exc.value)
    assert sent(fake)["format"] == "json" and len(fake.requests) == 3


def test_ollama_tool_calls_arrive_whole_and_history_goes_in_its_shape():
    call = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    stream = ndjson({"message": {"role": "assistant", "content": "", "tool_calls": [call]}, "done": False},
                    {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                     "prompt_eval_count": 40, "eval_count": 12})
    model, fake = fake_ollama((200, stream, None))
    prior = ToolCall("call_7", "get_weather", '{"city": "Rome"}')
    chat = [*ASK, Message("assistant", "", (prior,)), Message("tool", "20 C", tool_call_id="call_7"),
            Message("user", "And in Paris?")]
    r = model.generate(chat, tools=[WEATHER, TIME])
    assert r.finish_reason == "tool_calls" and r.usage.completion_tokens == 12
    assert [(c.name, json.loads(c.arguments)) for c in r.calls] == [("get_weather", {"city": "Paris"})]
    body = sent(fake)
    assert body["tools"] == [WEATHER, TIME] and "tool_choice" not in body
    assert body["messages"][2]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]
    assert body["messages"][3] == {"role": "tool", "content": "20 C", "tool_name": "get_weather"}


def test_ollama_emulates_tool_choice_honestly():
    model, fake = fake_ollama((200, said("It is sunny."), None), output_retries=1)
    with pytest.raises(OutputError) as exc:
        model.generate(list(ASK), tools=[WEATHER, TIME], tool_choice="get_weather")
    assert "tool_choice 'get_weather'" in one_line(exc) and "answered in text" in str(exc.value)
    assert [t["function"]["name"] for t in sent(fake)["tools"]] == ["get_weather"] and len(fake.requests) == 2
    model, fake = fake_ollama((200, said("Hello."), None))
    assert model.generate(list(ASK), tools=[WEATHER], tool_choice="none").text == "Hello."
    assert "tools" not in sent(fake)
    broken = Message("assistant", "", (ToolCall("c", "get_weather", "{not json"),))
    with pytest.raises(PromptError, match="not a JSON object"):
        model.generate([*ASK, broken, ("user", "again")], tools=[WEATHER])


def test_ollama_model_without_tools_does_not_declare_them():
    show = {"details": {"family": "gemma"}, "capabilities": ["completion"], "template": "{{ .Prompt }}"}
    fake = FakeServer((200, show, None))
    model = OllamaModel("gemma:2b", transport=httpx.MockTransport(fake))
    assert not model.can("tools") and model.can("grammar")
    assert OllamaModel("qwen3", check=False).can("tools")  # the class still declares them


# --- llama-cpp-python's server, for real ------------------------------------------------------------

@pytest.fixture(scope="module")
def tool_server(tmp_path_factory):
    with llama_cpp_server_process(tmp_path_factory, "--chat_format", "chatml-function-calling") as url:
        yield url


@pytest.fixture
def served(tool_server):
    model = load_model(f"openai/smollm2@{tool_server}", api_key=KEY, log=False)
    yield model
    model.close()


def test_real_server_refuses_json_schema_and_enforces_the_json_object_form(served, tool_server):
    raw = httpx.post(f"{tool_server}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, json={
        "model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
        "response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": CITY}}})
    assert raw.status_code == 500 and "json_object" in raw.text  # what the fallback is for
    r = served.generate([("user", "Name a city and its population.")], json_schema=CITY, temperature=0,
                        max_new_tokens=60)
    value = r.json()
    assert served._schema_style == "json_object"
    assert isinstance(value["city"], str) and isinstance(value["population"], int)
    assert isinstance(served.generate([("user", "Name a city.")], json_schema=True, temperature=0,
                                      max_new_tokens=60).json(), dict)


def test_real_server_ignoring_the_schema_is_one_clear_error(tool_server):
    # /v1/completions of llama-cpp-python's server takes no response_format and says nothing
    model = load_model(f"openai/smollm2@{tool_server}", api_key=KEY, log=False, output_retries=1)
    with pytest.raises(OutputError) as exc:
        model.generate("The capital of France is", json_schema=CITY, temperature=0, max_new_tokens=20,
                       stop=["."])
    assert "appears to ignore the JSON schema: 2 answer(s)" in one_line(exc)
    assert "not valid JSON" in str(exc.value)


def test_real_server_streams_a_call_of_a_named_tool(served):
    r = served.generate(list(ASK), tools=[WEATHER, TIME], tool_choice="get_weather", temperature=0,
                        max_new_tokens=40)
    assert r.finish_reason == "tool_calls" and len(r.tool_calls) > 2  # the arguments came in pieces
    (call,) = r.calls
    assert call.name == "get_weather" and call.id.startswith("call_")
    assert isinstance(json.loads(call.arguments)["city"], str)


def test_real_server_auto_choice_and_a_conversation_with_the_result(served):
    r = served.generate(list(ASK), tools=[WEATHER], temperature=0, max_new_tokens=40)
    (call,) = r.calls  # asked for whole: that server cannot stream a call it chose itself
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    chat = [*ASK, Message("assistant", "", tuple(r.calls)),
            Message("tool", "18 C and sunny", tool_call_id=call.id)]
    follow = served.generate(chat, temperature=0, max_new_tokens=12)
    assert follow.text.strip() and not follow.calls


def test_real_server_fails_required_in_one_line(served):
    with pytest.raises(BackendError) as exc:
        served.generate(list(ASK), tools=[WEATHER], tool_choice="required", max_new_tokens=8)
    assert "HTTP 500" in one_line(exc) and "tool calling" in str(exc.value)
