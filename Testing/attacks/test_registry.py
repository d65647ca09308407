"""The attack registry: the one description of each attack, and what it resolves to."""

from __future__ import annotations

import inspect

import pytest

from FreqAdvSegmentLib.attacks import VAFA, registry
from FreqAdvSegmentLib.attacks.spec import AttackSpec, Param, Preset, SameAs


def test_every_attack_defaults_come_from_its_constructor():
    for spec in registry.specs():
        signature = inspect.signature(spec.cls.__init__).parameters
        assert spec.defaults() == {p.name: signature[p.name].default for p in spec.params}
        assert spec.resolve() == {k: spec.param(k).check(v) for k, v in spec.defaults().items()}


def test_public_code_preset_follows_q_max_and_parses_text():
    kwargs = registry.get("vafa").resolve("public-code", q_max="30")
    assert kwargs["q_init"] == 30.0 and kwargs["q_min"] == 5.0
    assert kwargs["renormalize"] == "slice" and kwargs["output_rounding"] == "soft"
    assert registry.resolve("vafa:public-code")[1]["q_init"] == 20.0
    assert registry.resolve("pgd", {"eps": "4/255"})[1]["eps"] == pytest.approx(4 / 255)


@pytest.mark.parametrize("method, params, words", [
    ("vafa", {"eps": 0.1}, "takes no parameter 'eps'"),
    ("vafa:nope", {}, "no preset 'nope'"),
    ("nope", {}, "unknown attack 'nope'"),
    ("pgd", {"eps": 2.0}, "eps must be <= 1"),
    ("pgd", {"steps": 2.5}, "whole number"),
    ("vafa", {"renormalize": "volume"}, "renormalize must be one of none, slice"),
    ("vafa", {"q_max": "twenty"}, "q_max must be a finite number"),
])
def test_bad_parameters_are_named(method, params, words):
    with pytest.raises(ValueError, match=words):
        registry.resolve(method, params)


def test_a_clashing_parameter_is_refused():
    class Toy(VAFA):
        pass

    spec = AttackSpec("toy-clash", Toy, "Toy", "clashes", (Param("q_max", int, "as an int", "count", 0, 9),))
    with pytest.raises(ValueError, match="clashes"):
        registry.register(spec)
    assert "toy-clash" not in registry.names()


def test_a_preset_naming_an_unknown_parameter_is_refused():
    with pytest.raises(ValueError, match="takes no parameter 'nope'"):
        AttackSpec("toy", VAFA, "Toy", "bad preset", (Param("q_max", float, "q", "JPEG"),),
                   (Preset("p", "bad", {"nope": 1}),))
    with pytest.raises(ValueError, match="takes no parameter 'q_min'"):
        AttackSpec("toy", VAFA, "Toy", "bad ref", (Param("q_max", float, "q", "JPEG"),),
                   (Preset("p", "bad", {"q_max": SameAs("q_min")}),))


def test_request_text_round_trips_exactly():
    params = {"q_max": 30.0, "renormalize": None, "steps": 5, "ssim_weight": 1 / 3}
    text = registry.format_request("vafa", "public-code", params)
    spec, preset, parsed = registry.parse_request(text)
    assert (spec.name, preset, parsed) == ("vafa", "public-code", params)
    with pytest.raises(ValueError, match="key=value"):
        registry.parse_request("pgd,eps")
