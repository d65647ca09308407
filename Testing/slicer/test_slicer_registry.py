"""The Slicer surface of the attack registry: the panel's fields and the request texts it sends
are derived from the specs, so a registered attack shows up with no change to the module, and
every preset resolves to exactly the constructor arguments ``registry.resolve`` gives.

Fast: no engine run, no MRML scene (the mapping is plain Python)."""

from __future__ import annotations

import inspect

import pytest

from FreqAdvSegmentLib.attacks import registry
from FreqAdvSegmentLib.attacks.base import Attack
from FreqAdvSegmentLib.attacks.spec import AttackSpec, Param, Preset
from FreqAdvSegmentLib.mrml import logic
from FreqAdvSegmentLib.mrml.attack_choices import (
    AttackChoices,
    attack_arguments,
    attack_fields,
    attack_presets,
    join_requests,
    request_labels,
    split_requests,
)


class ToyAttack(Attack):
    """A do-nothing attack with two parameters, only for the registry test."""

    def __init__(self, model, strength: float = 3 / 255, rounds: int = 2, mode: str = "a", **kw) -> None:
        self.strength, self.rounds, self.mode = strength, rounds, mode


TOY = AttackSpec(
    "toy", ToyAttack, "Toy", "a test attack",
    (Param("strength", float, "budget", "[0, 1] intensity", 0, 1, display_scale=255),
     Param("rounds", int, "rounds", "steps", 1, 9),
     Param("mode", str, "mode", choices=("a", "b"))),
    (Preset("strong", "more", {"strength": 8 / 255, "rounds": 5}),),
)


@pytest.fixture
def toy():
    registry.register(TOY)
    yield TOY
    registry.unregister("toy")


def test_a_toy_attack_registered_with_one_line_shows_up_in_the_slicer_logic(toy):
    assert "toy" in logic.ATTACK_METHODS and logic.ATTACK_METHODS == registry.names()
    assert attack_presets("toy") == ("strong",)
    fields = {f.name: f for f in attack_fields("toy")}
    assert list(fields) == ["strength", "rounds", "mode"]
    assert fields["strength"].default == pytest.approx(3.0) and fields["strength"].maximum == 255
    assert fields["strength"].unit == "/255"
    assert (fields["rounds"].kind, fields["rounds"].minimum, fields["rounds"].maximum) == ("int", 1, 9)
    assert fields["mode"].kind == "choice" and fields["mode"].choices == ("a", "b")
    strong = {f.name: f.default for f in attack_fields("toy", "strong")}
    assert strong["strength"] == pytest.approx(8.0) and strong["rounds"] == 5
    choice = AttackChoices("toy", "strong", {"rounds": 7, "strength": 8.0})
    assert choice.request() == "toy:strong,rounds=7", "only what differs from the preset is sent"
    assert choice.resolved() == registry.resolve("toy:strong", {"rounds": 7})[1]
    assert attack_arguments([choice]) == ["--method", "toy:strong,rounds=7"]
    registry.unregister("toy")
    assert "toy" not in logic.ATTACK_METHODS


@pytest.mark.parametrize("method", registry.methods())
def test_the_panel_resolves_defaults_and_every_preset_like_the_registry(method):
    """Fields shown untouched (the panel's defaults for that preset) give the registry's exact
    constructor arguments; and so does the request text they are sent as."""
    spec, preset = registry.split_method(method)
    shown = {f.name: f.default for f in attack_fields(spec.name, preset)}
    choice = AttackChoices(spec.name, preset, shown)
    expected = registry.resolve(method)[1]
    assert choice.resolved() == expected
    assert choice.request() == method, "untouched fields add nothing to the request"
    parsed_spec, parsed_preset, params = registry.parse_request(choice.request())
    assert parsed_spec.resolve(parsed_preset, **params) == expected
    # Defaults come from the constructor: nothing typed twice.
    signature = inspect.signature(spec.cls.__init__).parameters
    if preset is None:
        for f in attack_fields(spec.name):
            assert f.to_engine(f.default) == pytest.approx(signature[f.name].default) if f.kind in ("float", "int") \
                else f.default == signature[f.name].default


def test_display_units_are_the_papers_255_scale():
    choice = AttackChoices("pgd", None, {"eps": 8.0, "alpha": 2.55, "steps": 5})
    assert choice.parameters() == {"eps": pytest.approx(8 / 255), "steps": 5}
    assert choice.resolved()["alpha"] == pytest.approx(0.01)
    back = AttackChoices.from_request(choice.request())
    assert back.values["eps"] == pytest.approx(8.0) and back.values["steps"] == 5


def test_public_code_preset_keeps_q_init_following_q_max():
    shown = {f.name: f.default for f in attack_fields("vafa", "public-code")}
    choice = AttackChoices("vafa", "public-code", {**shown, "q_max": 30.0})
    assert choice.request() == "vafa:public-code,q_max=30.0"
    assert choice.resolved()["q_init"] == 30.0 and choice.resolved()["renormalize"] == "slice"


def test_console_keywords_any_registered_parameter():
    """Issue 9's bug: logic.attack(volume, renormalize="slice") must reach the engine."""
    choice = AttackChoices.from_call("vafa", {"renormalize": "slice", "steps": 3})
    assert choice.request() == "vafa,steps=3,renormalize=slice"  # in the spec's parameter order
    assert choice.resolved() == registry.resolve("vafa", {"renormalize": "slice", "steps": 3})[1]
    assert AttackChoices.from_call("vafa:public-code", {"q_max": 30}).request() == "vafa:public-code,q_max=30.0"
    with pytest.raises(ValueError, match="takes no parameter 'eps'"):
        AttackChoices.from_call("vafa", {"eps": 0.1})
    with pytest.raises(ValueError, match="renormalize must be one of"):
        AttackChoices.from_call("vafa", {"renormalize": "volume"})
    with pytest.raises(ValueError, match="no preset"):
        AttackChoices("pgd", "public-code")


def test_request_lists_and_labels():
    text = "vafa:public-code,q_max=30; pgd\nfgsm ;pgd,eps=8/255"
    requests = split_requests(text)
    assert requests == ["vafa:public-code,q_max=30", "pgd", "fgsm", "pgd,eps=8/255"]
    assert request_labels(requests) == ["vafa-public-code", "pgd", "fgsm", "pgd-2"]
    assert split_requests(join_requests(requests)) == requests
