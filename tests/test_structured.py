"""Structured output (issue 13, item 1) on the llama.cpp backends, in Python and on the CLI: a JSON
schema (or a pydantic model) becomes a grammar, so the bundled models' outputs always parse and
validate; what the grammar cannot express, and every bad input, is one line before any model runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading

import pytest

from llmlab import GenerationConfig
from llmlab.errors import ConfigError, NotSupportedError, OutputError

PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}

TOPICS = ["a retired sailor", "a young violinist", "your favourite teacher", "a baker from Lyon",
          "a famous scientist", "a child who loves trains", "an astronaut", "a farmer in Kenya",
          "a character from a fairy tale", "the oldest person you can imagine"]


def rate(model, prompts, schema, check_schema=PERSON, max_new_tokens=64):
    """Share of outputs that parse and validate against ``check_schema``; the failures' reasons."""
    from llmlab.schema import validate_output

    good, why = 0, []
    for seed, prompt in enumerate(prompts):
        config = GenerationConfig(json_schema=schema, temperature=0.8, seed=seed,
                                  max_new_tokens=max_new_tokens)
        r = model.generate(prompt, config)
        try:
            validate_output(r.text, check_schema, r.finish_reason, max_new_tokens)
            good += 1
        except OutputError as exc:
            why.append(f"{r.text[:60]!r}: {exc}")
    return good / len(prompts), why


def test_smollm2_always_validates_with_the_schema_and_rarely_without(smollm2):
    prompts = [[{"role": "user", "content": f"Describe {t} as JSON with a name and an age."}] for t in TOPICS]
    constrained, why = rate(smollm2, prompts, PERSON)
    unconstrained, _ = rate(smollm2, prompts, None)
    print(f"\nSmolLM2-135M, {len(prompts)} prompts, temperature 0.8: valid {constrained:.0%} constrained, "
          f"{unconstrained:.0%} unconstrained")
    assert constrained == 1.0, why


def test_gemma_base_always_validates_with_the_schema(gemma):
    # constrained only: its 262k-token vocabulary makes each unconstrained-vs-constrained pair slow, and
    # SmolLM2's test above shows the contrast
    prompts = [f"A description of {t}, as a JSON object with a name and an age:\n" for t in TOPICS]
    constrained, why = rate(gemma, prompts, PERSON)
    print(f"\nGemma-3-270M base, {len(prompts)} prompts, temperature 0.8: valid {constrained:.0%} "
          "constrained")
    assert constrained == 1.0, why


def test_a_pydantic_model_with_nested_models_in_an_array(smollm2):
    from pydantic import BaseModel

    class Pet(BaseModel):
        name: str
        kind: str

    class Owner(BaseModel):
        name: str
        pets: list[Pet]  # $ref inside an array's items: the case llama.cpp's anchors broke on

    config = GenerationConfig(json_schema=Owner, seed=3, max_new_tokens=96)
    assert config.json_schema["$defs"]["Pet"]
    r = smollm2.generate([{"role": "user", "content": "An owner and their pets, as JSON."}], config)
    owner = Owner.model_validate(r.json())
    assert isinstance(owner.pets, list) and r.json_error is None


def test_enum_and_array_schemas(smollm2):
    sentiment = {"type": "string", "enum": ["positive", "negative", "neutral"]}
    r = smollm2.generate([{"role": "user", "content": "Sentiment of 'I loved this film'?"}],
                         json_schema=sentiment, seed=1, max_new_tokens=8)
    assert r.json() in sentiment["enum"]
    numbers = {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 4}
    r = smollm2.generate([{"role": "user", "content": "Some prime numbers as a JSON list."}],
                         json_schema=numbers, seed=2, max_new_tokens=40)
    value = r.json()
    assert 2 <= len(value) <= 4 and all(isinstance(v, int) for v in value)


def test_greedy_decoding_follows_the_grammar_too(smollm2):
    # (any JSON object, greedy, can nest until max_new_tokens: the CLI test covers --json, sampled)
    r = smollm2.generate([{"role": "user", "content": "A book's author as JSON."}], json_schema=PERSON,
                         temperature=0, max_new_tokens=64)
    assert r.finish_reason == "stop" and set(r.json()) == {"name", "age"}


def test_a_value_cut_at_max_new_tokens_is_invalid_and_says_why(smollm2):
    r = smollm2.generate([{"role": "user", "content": "A person as JSON."}], json_schema=PERSON,
                         seed=0, max_new_tokens=3)
    assert r.finish_reason == "length"
    with pytest.raises(OutputError, match="max_new_tokens=3") as exc:
        r.json()
    assert "\n" not in str(exc.value) and r.json_error == str(exc.value)


def test_without_a_schema_json_still_parses_or_says_why(smollm2):
    r = smollm2.generate("The capital of France is", temperature=0, max_new_tokens=4)
    with pytest.raises(OutputError, match="not valid JSON"):
        r.json()


def test_the_serving_engine_constrains_each_request(smollm2):
    from llmlab.models.llamacpp.batched import BatchedModel

    served = BatchedModel(smollm2, parallel=2, n_ctx_seq=512)
    try:
        assert served.can("grammar")
        out: dict = {}

        def ask(seed: int, schema) -> None:
            out[seed] = served.generate([{"role": "user", "content": "A sailor as JSON."}],
                                        json_schema=schema, seed=seed, max_new_tokens=48)

        threads = [threading.Thread(target=ask, args=(s, PERSON if s % 2 else None)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        for seed in (1, 3):  # the constrained ones, decoded beside unconstrained neighbours
            assert set(out[seed].json()) == {"name", "age"}
    finally:
        served.engine.close()


def test_a_backend_without_grammars_refuses_in_one_line():
    from llmlab.models.base import Model, ModelInfo

    class NoGrammar(Model):  # a fake backend that declares nothing (the remote ones pass schemas on)
        backend = "fake"

        def stream(self, prompt, config, cancel=None):
            yield from ()

        def encode(self, text):
            return []

        def tokenize(self, text):
            return []

    model = NoGrammar(ModelInfo("m", "fake"))
    assert not model.can("grammar")
    with pytest.raises(NotSupportedError, match="cannot follow a grammar") as exc:
        model.prompt("hi", json_schema=PERSON)
    assert "\n" not in str(exc.value)


def test_the_config_keeps_its_old_settings_and_fingerprint():
    plain = GenerationConfig()
    assert "json_schema" not in plain.to_dict()
    config = GenerationConfig(json_schema=True)
    assert config.json_schema == {"type": "object"} and config.to_dict()["json_schema"] == {"type": "object"}
    assert hash(config) == hash(GenerationConfig(json_schema=PERSON))  # hashable; the schema is not hashed
    assert config.replace(seed=1).json_schema == {"type": "object"}
    assert config.replace(json_schema=False).json_schema is None


@pytest.mark.parametrize("schema, says", [
    ({"type": "strin"}, "not valid JSON Schema"),
    ({"type": "object", "required": "name"}, "not valid JSON Schema"),
    ({"type": "integer", "minimum": 0}, "'minimum'"),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "'oneOf'"),
    ({"allOf": [{"type": "string"}]}, "'allOf'"),
    ({"not": {"type": "string"}}, "'not'"),
    ({"type": "string", "pattern": "^\\d{3}$"}, "pattern"),
    ({"type": "string", "pattern": "[a-z]+"}, "pattern"),
    ({"type": "string", "pattern": "^(?=a)a$"}, "pattern"),
    ({"type": "object", "properties": {"a": {"type": "string", "pattern": "^\\w+$"}}},
     "pattern .* at #/properties/a"),
    ({"type": "string", "maxLength": 5000}, "'maxLength' above 1000"),
    ({"type": "array", "items": {"type": "integer"}, "maxItems": 2000}, "'maxItems' above 1000"),
    ({"type": "string", "format": "email"}, "format 'email'"),
    ({"type": "array", "items": True}, "boolean schema true"),
    ({"type": "array", "uniqueItems": True}, "'uniqueItems'"),
    ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]}, "'required' naming 'b'"),
    ({"$ref": "https://example.com/s.json"}, "only refs into this schema"),
    ({"$ref": "#/$defs/nope"}, "points at nothing"),
    ({"$defs": {"T": {"type": "array", "items": {"$ref": "#/$defs/T"}}}, "$ref": "#/$defs/T"}, "recursive"),
    ({"type": ["string", "null"], "maxLength": 3}, "list of types"),
    ({"type": "object", "nullable": True}, "'nullable'"),
    ("not a schema", "must be a dict"),
    ({"a": {1, 2}}, "not JSON"),
])
def test_what_a_grammar_cannot_enforce_is_one_line_before_any_model(schema, says):
    with pytest.raises(ConfigError) as exc:
        GenerationConfig(json_schema=schema)
    message = str(exc.value)
    assert "\n" not in message
    assert re.search(says, message), message


def test_what_it_can_enforce_is_accepted():
    from llmlab.schema import grammar_schema

    ok = {"title": "T", "type": "object", "description": "annotations are dropped",
          "properties": {"when": {"type": "string", "format": "date"},
                         "id": {"type": "string", "format": "uuid"},
                         "code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
                         "short": {"type": "string", "minLength": 1, "maxLength": 20},
                         "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
                         "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}]},
                         "kind": {"$ref": "#/$defs/Kind"}},
          "$defs": {"Kind": {"enum": ["a", "b"], "title": "Kind"}}, "additionalProperties": False}
    GenerationConfig(json_schema=ok)
    inlined = grammar_schema(ok)
    assert inlined["properties"]["kind"] == {"enum": ["a", "b"]} and "title" not in inlined


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "llmlab", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("content, says", [
    (None, "no such file"),
    ("{nope", "not JSON"),
    ("[1, 2]", "a JSON schema is an object"),
    ('{"type": "strin"}', "not valid JSON Schema"),
    ('{"type": "integer", "maximum": 9}', "'maximum'"),
])
def test_cli_bad_schema_files_are_one_line(tmp_path, content, says):
    path = tmp_path / "schema.json"
    if content is not None:
        path.write_text(content)
    r = cli("prompt", "hi", "--json-schema", str(path))
    assert r.returncode == 1 and says in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_json_schema_and_json(tmp_path):
    path = tmp_path / "person.json"
    path.write_text(json.dumps(PERSON))
    r = cli("prompt", "A person as JSON", "--json-schema", str(path), "--seed", "4", "-n", "64")
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)) == {"name", "age"}
    r = cli("prompt", "A person as JSON", "--json-schema", str(path), "-n", "3")
    assert r.returncode == 1 and "max_new_tokens=3" in r.stderr and "Traceback" not in r.stderr
    r = cli("prompt", "A city as JSON", "--json", "--seed", "1", "-n", "96", "--no-stats")
    assert r.returncode == 0 and isinstance(json.loads(r.stdout), dict), r.stderr
    r = cli("prompt", "x", "--json", "--json-schema", str(path))
    assert r.returncode == 1 and "contradict" in r.stderr
