"""Issue 9's promise across every surface at once: one attack file plus one register line reaches
the command line, the trainer, the web form and the Slicer panel; and every surface turns VAFA's
defaults and every preset of every attack into the same constructor arguments.

Each surface also has its own, deeper test (test_attack_options, test_web_form,
test_slicer_registry); this one checks that they agree with each other."""

from __future__ import annotations

import pytest

from FreqAdvSegmentLib.attacks import registry
from FreqAdvSegmentLib.attacks.voxel import BIM
from FreqAdvSegmentLib.attacks.spec import INTENSITY, STEPS, AttackSpec, Param, Preset
from FreqAdvSegmentLib.cli import attack_requests, build_parser
from FreqAdvSegmentLib.mrml.attack_choices import AttackChoices, attack_fields
from FreqAdvSegmentLib.web import params as web


class Nudge(BIM):
    """BIM under another name and budget: the plug-in a newcomer would write."""

    def __init__(self, model, nudge: float = 3 / 255, steps: int = 4, **kwargs) -> None:
        super().__init__(model, eps=nudge, alpha=nudge / 2, steps=steps, **kwargs)


NUDGE = AttackSpec(
    "nudge", Nudge, "Nudge", "a plug-in attack made in a test",
    (Param("nudge", float, "L-inf budget", INTENSITY, 0, 1, display_scale=255),
     Param("steps", int, "steps", STEPS, 1, 100)),
    (Preset("big", "a larger budget", {"nudge": 12 / 255}),),
)


@pytest.fixture
def nudge():
    registry.register(NUDGE)  # the one registration line
    yield NUDGE
    registry.unregister(NUDGE.name)


def _cli(method: str) -> dict:
    args = build_parser().parse_args(["attack", "ct.nii.gz", "-o", "out", "--method", method])
    (request,) = attack_requests(args)
    return registry.get(request.method.partition(":")[0]).resolve(request.preset, **request.params)


def _slicer(method: str) -> dict:
    spec, preset = registry.split_method(method)
    shown = {f.name: f.default for f in attack_fields(spec.name, preset)}
    return AttackChoices(spec.name, preset, shown).resolved()


def _web(method: str) -> dict:
    spec, preset = registry.split_method(method)
    values = {**web.default_values(), **web.shown_values(spec.name, preset)}
    if preset is not None:
        values[web.preset_key(spec.name)] = preset
    (text,) = web.form_requests([spec.name], values)
    return web.resolve_request(text)[1]


def _training(method: str) -> dict:
    from FreqAdvSegmentLib.cli.train import config_from_args

    spec, preset = registry.split_method(method)
    argv = ["train", "data.json", "-o", "run", "--regime", spec.name] + (["--preset", preset] if preset else [])
    return config_from_args(build_parser().parse_args(argv)).attack_kwargs()


def test_one_file_and_one_line_reach_every_surface(nudge):
    from FreqAdvSegmentLib.training.config import REGIMES

    parser_help = build_parser().format_help() + _attack_help()
    assert "nudge" in parser_help and "nudge:big" in parser_help
    assert REGIMES["nudge"] == "nudge"
    assert web.state_key("nudge", "nudge") in {f.key for f in web.all_fields()}
    assert [f.name for f in attack_fields("nudge")] == ["nudge", "steps"]
    want = {"nudge": 12 / 255, "steps": 4}
    assert _cli("nudge:big") == _slicer("nudge:big") == _web("nudge:big") == _training("nudge:big") == want


@pytest.mark.parametrize("method", registry.methods())
def test_every_surface_resolves_defaults_and_presets_alike(method):
    expected = registry.resolve(method)[1]
    assert _cli(method) == expected
    assert _slicer(method) == expected
    assert _web(method) == expected


@pytest.mark.parametrize("method", [m for m in registry.methods() if registry.split_method(m)[0].trainable])
def test_training_starts_from_the_training_preset_or_the_one_asked(method):
    spec, preset = registry.split_method(method)
    chosen = preset or spec.training_preset
    assert _training(method) == spec.resolve(chosen)


def _attack_help() -> str:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["attack"].format_help()
