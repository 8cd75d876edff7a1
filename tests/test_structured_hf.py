"""Structured output on the hf backend (issue 13, item 1): a JSON schema constrains transformers'
decoding through llguidance's token masks, so the bundled SmolLM2 run by PyTorch always answers with
JSON that parses and validates, greedy or sampled; without the schema it mostly does not."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmlab import GenerationConfig, load_model
from llmlab.errors import OutputError
from llmlab.schema import validate_output

PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
FILM = {"type": "object", "required": ["title", "year", "genre", "cast"], "properties": {
    "title": {"type": "string", "maxLength": 40},  # bounded: at temperature 1 a 135M model rambles
    "year": {"type": "integer"},
    "genre": {"enum": ["drama", "comedy", "horror"]},
    "cast": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
        "type": "object", "required": ["name", "age"],
        "properties": {"name": {"type": "string", "maxLength": 30}, "age": {"type": "integer"}}}}}}
ASK_FILM = [("user", "A film with its cast, as JSON.")]


@pytest.fixture(scope="module")
def hf_smollm2():
    model = load_model("hf/smollm2", log=False, n_ctx=2048)
    yield model
    model.close()


def check_film(r) -> dict:
    film = validate_output(r.text, FILM, r.finish_reason, 160)
    assert r.finish_reason == "stop" and r.json_error is None
    # the grammar is closed as llama.cpp's is: only the named properties, in the order named
    assert list(film) == list(FILM["properties"]) and all(list(c) == ["name", "age"] for c in film["cast"])
    return film


def test_greedy_output_follows_a_nested_schema(hf_smollm2):
    assert hf_smollm2.can("grammar")
    r = hf_smollm2.generate(ASK_FILM, json_schema=FILM, temperature=0, max_new_tokens=160)
    film = check_film(r)
    assert film["genre"] in ("drama", "comedy", "horror") and isinstance(film["year"], int)


def test_sampled_output_follows_it_and_a_seed_repeats_it(hf_smollm2):
    config = GenerationConfig(json_schema=FILM, temperature=1.0, seed=7, max_new_tokens=160)
    first = hf_smollm2.generate(ASK_FILM, config)
    check_film(first)
    assert hf_smollm2.generate(ASK_FILM, config).text == first.text
    other = hf_smollm2.generate(ASK_FILM, config.replace(seed=8))
    check_film(other)
    assert other.text != first.text


def test_any_json_object(hf_smollm2):
    r = hf_smollm2.generate([("user", "A city as JSON.")], json_schema=True, seed=1, max_new_tokens=128)
    assert isinstance(r.json(), dict), r.text


def test_a_value_cut_at_max_new_tokens_is_invalid_and_says_why(hf_smollm2):
    r = hf_smollm2.generate([("user", "A person as JSON.")], json_schema=PERSON, seed=0, max_new_tokens=3)
    assert r.finish_reason == "length" and r.usage.completion_tokens == 3
    with pytest.raises(OutputError, match="max_new_tokens=3") as exc:
        r.json()
    assert "\n" not in str(exc.value) and r.json_error == str(exc.value)


def test_stop_strings_still_cut_the_output(hf_smollm2):
    r = hf_smollm2.generate([("user", "A person as JSON.")], json_schema=PERSON, temperature=0,
                            stop=['"age"'], max_new_tokens=64)
    assert r.finish_reason == "stop" and r.text.startswith('{"name": "') and '"age"' not in r.text
    with pytest.raises(OutputError, match="not valid JSON"):
        r.json()


TOPICS = ["a retired sailor", "a young violinist", "a baker from Lyon", "an astronaut", "a farmer in Kenya"]


def test_the_schema_makes_valid_what_plain_prompting_does_not(hf_smollm2):
    def valid(schema, seed: int, topic: str) -> bool:
        r = hf_smollm2.generate([("user", f"Describe {topic} as JSON with a name and an age.")],
                                json_schema=schema, temperature=0.8, seed=seed, max_new_tokens=48)
        try:
            validate_output(r.text, PERSON, r.finish_reason, 48)
            return True
        except OutputError:
            return False

    constrained = [valid(PERSON, seed, t) for seed, t in enumerate(TOPICS)]
    free = [valid(None, seed, t) for seed, t in enumerate(TOPICS)]
    print(f"\nhf/smollm2, {len(TOPICS)} prompts, temperature 0.8: valid {sum(constrained)} constrained, "
          f"{sum(free)} unconstrained")
    assert all(constrained) and sum(free) < len(TOPICS)


def test_end_of_generation_is_allowed_only_when_the_value_is_complete(hf_smollm2):
    import torch

    mask = hf_smollm2._grammar_mask(PERSON)
    n = mask.n_vocab
    ids = hf_smollm2.token_ids('{"name": "Ann", "age": 30}', special=False)
    eog = sorted(hf_smollm2._eog)
    allowed = torch.isfinite(mask(torch.tensor([[0]]), torch.zeros(1, n)))[0]
    first = [hf_smollm2.token_text(t) for t in allowed.nonzero().flatten().tolist()]
    # the value must open with {"name": "; llguidance allows the forced text's own tokens ('{"')
    assert first and all(f.startswith("{") for f in first) and not allowed[eog].any()
    allowed = torch.isfinite(mask(torch.tensor([[0, *ids]]), torch.zeros(1, n)))[0]
    assert allowed[eog].all() and int(allowed.sum()) == len(eog)  # nothing may follow but the end


def test_a_schema_is_compiled_once_per_model(hf_smollm2, monkeypatch):
    from llmlab.models.hf_grammar import Grammars

    hf_smollm2.generate("x", json_schema=PERSON, max_new_tokens=1)
    built = []
    real = Grammars._build
    monkeypatch.setattr(Grammars, "_build", lambda self, s: built.append(s) or real(self, s))
    for seed in range(2):
        hf_smollm2.generate("x", json_schema=PERSON, seed=seed, max_new_tokens=2)
    assert built == []
    hf_smollm2.generate("x", json_schema={**PERSON, "required": ["name"]}, max_new_tokens=1)
    assert len(built) == 1


def test_everything_the_schema_check_accepts_compiles_and_decodes(hf_smollm2):
    slot = {"type": "object", "additionalProperties": False, "title": "a booking (annotations dropped)",
            "$defs": {"Room": {"enum": ["blue", "red"], "description": "which room"}}}
    slot["properties"] = {
        # (not date-time or time: greedy SmolLM2 writes their fraction of a second without end)
        "on": {"type": "string", "format": "date"},
        "booking": {"type": "string", "format": "uuid"},
        "ref": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
        "who": {"type": "string", "minLength": 1, "maxLength": 20},
        "seats": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "span": {"type": "array", "prefixItems": [{"type": "string", "maxLength": 12}, {"type": "number"}]},
        "paid": {"type": ["boolean", "null"]}, "room": {"$ref": "#/$defs/Room"}}
    slot["required"] = list(slot["properties"])
    everything = slot
    r = hf_smollm2.generate([("user", "A room booking as JSON.")], json_schema=everything, temperature=0,
                            max_new_tokens=200)
    value = validate_output(r.text, everything, r.finish_reason, 200)
    assert len(value["span"]) == 2 and value["room"] in ("blue", "red"), r.text


def test_cli_json_schema_on_an_hf_model(tmp_path):
    path = tmp_path / "film.json"
    path.write_text(json.dumps(FILM))
    args = ["prompt", "-m", "hf/smollm2", "--json-schema", str(path), "--seed", "4", "-n", "160",
            "--no-stats", "A film with its cast, as JSON."]
    r = subprocess.run([sys.executable, "-m", "llmlab", *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    film = json.loads(r.stdout)
    assert validate_output(json.dumps(film), FILM) and list(film) == list(FILM["properties"])
