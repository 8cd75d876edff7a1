"""GenerationConfig: one meaning everywhere, bad values refused before any model loads."""

import pytest

from llmlab import GenerationConfig
from llmlab.errors import ConfigError


def test_defaults_are_valid_and_sampling():
    c = GenerationConfig()
    assert not c.greedy
    assert c.repeat_penalty == 1.0


@pytest.mark.parametrize("changes", [
    {"temperature": 0}, {"do_sample": False}, {"temperature": 0.0, "do_sample": True},
])
def test_greedy_means_temperature_zero_or_no_sampling(changes):
    assert GenerationConfig(**changes).greedy


@pytest.mark.parametrize("changes, word", [
    ({"temperature": -0.1}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_k": -1}, "top_k"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": -5}, "max_new_tokens"),
    ({"max_new_tokens": 2.5}, "max_new_tokens"),
    ({"seed": -1}, "seed"),
    ({"repeat_penalty": 0}, "repeat_penalty"),
    ({"stop": [""]}, "stop"),
    ({"temperature": float("nan")}, "temperature"),
    ({"do_sample": "yes"}, "do_sample"),
])
def test_invalid_values_are_refused_with_the_setting_named(changes, word):
    with pytest.raises(ConfigError, match=word):
        GenerationConfig(**changes)


def test_replace_ignores_none_and_rejects_unknown_names():
    c = GenerationConfig(temperature=0.5).replace(temperature=None, top_k=3)
    assert (c.temperature, c.top_k) == (0.5, 3)
    with pytest.raises(ConfigError, match="temprature"):
        c.replace(temprature=1)


def test_stop_accepts_a_single_string():
    assert GenerationConfig(stop="\n").stop == ("\n",)
    assert GenerationConfig(stop=["a", "b"]).to_dict()["stop"] == ["a", "b"]
