"""The command line's attack options come from the registry: methods, presets, flags, precedence."""

from __future__ import annotations

import argparse

import pytest
import torch

from FreqAdvSegmentLib.attacks import Attack, AttackResult, registry
from FreqAdvSegmentLib.attacks.spec import INTENSITY, AttackSpec, Param, Preset
from FreqAdvSegmentLib.cli import attack_requests, build_parser


# --- a toy attack: one class, one spec, one register line ------------------------------------------


class Brighten(Attack):
    """Adds ``gain`` to every voxel (clipped); no gradient. A plug-in attack for these tests."""

    def __init__(self, model: torch.nn.Module, gain: float = 2 / 255, steps: int = 3, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.gain, self.steps = gain, steps

    def _attack(self, x, y, progress) -> AttackResult:
        return AttackResult((x + self.gain).clamp(0, 1), x, y)


TOY = AttackSpec(
    "toy-brighten", Brighten, "Brighten", "adds a constant (a test's plug-in)",
    (Param("gain", float, "added intensity", INTENSITY, 0, 1, display_scale=255),
     Param("steps", int, "attack steps (paper: 20)", "steps", 1, 1000)),
    (Preset("strong", "gain 8/255", {"gain": 8 / 255}),),
)


@pytest.fixture
def toy():
    registry.register(TOY)
    yield TOY
    registry.unregister(TOY.name)


def _attack_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["attack", "ct.nii.gz", "-o", "out", *argv])


def _method_action(parser: argparse.ArgumentParser) -> argparse.Action:
    attack = parser._subparsers._group_actions[0].choices["attack"]  # the attack sub-command
    return next(a for a in attack._actions if a.dest == "method")


def test_a_registered_toy_attack_appears_in_the_parser(toy, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # argparse wraps at the terminal's width
    parser = build_parser()
    assert "toy-brighten" in _method_action(parser).help
    with pytest.raises(SystemExit):
        parser.parse_args(["attack", "--help"])
    page = capsys.readouterr().out
    assert "toy-brighten:strong" in page and "--gain" in page and "default: toy-brighten 2/255" in page
    (request,) = attack_requests(_attack_args("--method", "toy-brighten:strong", "--steps", "5"))
    assert request.kwargs() == {"gain": 8 / 255, "steps": 5}
    registry.unregister(TOY.name)
    assert "--gain" not in build_parser().format_help() + _subhelp(build_parser(), "attack")


def _subhelp(parser: argparse.ArgumentParser, command: str) -> str:
    return parser._subparsers._group_actions[0].choices[command].format_help()


def test_help_lists_every_method_and_preset_with_its_description(monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    page = _subhelp(build_parser(), "attack")
    for spec in registry.specs():
        assert f"{spec.name}  " in page and spec.summary[:40] in page.replace("\n", " ")
        for preset in spec.presets:
            assert f"{spec.name}:{preset.name}" in page
    for name, param in registry.all_params().items():
        assert param.flag in page


@pytest.mark.parametrize("method", registry.methods())
def test_every_method_and_preset_resolves_as_the_registry_does(method):
    (request,) = attack_requests(_attack_args("--method", method))
    assert (request.method, request.kwargs()) == registry.resolve(method)
    spec, preset = registry.split_method(method)
    if preset is not None:  # the same through --preset
        (request,) = attack_requests(_attack_args("--method", spec.name, "--preset", preset))
        assert (request.method, request.kwargs()) == registry.resolve(method)


def test_vafa_defaults_are_the_constructor_defaults():
    (request,) = attack_requests(_attack_args())  # no --method: VAFA
    assert request.kwargs() == registry.resolve("vafa")[1]
    assert request.kwargs()["q_init"] is None and request.kwargs()["block_size"] == 8


def test_flags_apply_to_their_takers_and_request_values_win():
    requests = attack_requests(_attack_args(
        "--method", "vafa:public-code,q_max=30", "--method", "pgd", "--method", "pgd,steps=7",
        "--steps", "3", "--eps", "8/255"))
    assert [r.label for r in requests] == ["vafa-public-code", "pgd", "pgd-2"]
    vafa, pgd, pgd2 = (r.kwargs() for r in requests)
    assert vafa == registry.resolve("vafa:public-code", {"q_max": 30, "steps": 3})[1]
    assert vafa["q_init"] == 30.0, "public code starts the tables at the final q_max"
    assert pgd == {"eps": 8 / 255, "alpha": 0.01, "steps": 3}
    assert pgd2["steps"] == 7 and pgd2["eps"] == 8 / 255


def test_preset_applies_only_where_it_exists_and_public_code_is_its_alias():
    vafa, pgd = attack_requests(_attack_args("--method", "vafa", "--method", "pgd", "--public-code"))
    assert vafa.preset == "public-code" and pgd.preset is None
    assert vafa.kwargs() == registry.resolve("vafa:public-code")[1]


def test_every_registered_parameter_has_a_working_flag():
    (request,) = attack_requests(_attack_args("--renormalize", "slice", "--output-rounding", "soft",
                                              "--q-init", "none", "--rounding", "ste"))
    assert request.kwargs() == registry.resolve("vafa", {"renormalize": "slice", "output_rounding": "soft",
                                                              "rounding": "ste"})[1]


@pytest.mark.parametrize("argv, words", [
    (["--method", "pgd", "--q-max", "30"], ["--q-max", "vafa", "pgd"]),
    (["--method", "pgd", "--preset", "table5"], ["--preset table5", "vafa"]),
    (["--method", "pgd", "--eps", "2"], ["--eps", "pgd", "<= 1"]),
    (["--preset", "eps8", "--public-code"], ["--public-code"]),
])
def test_bad_attack_options_get_one_clear_error(argv, words):
    with pytest.raises(ValueError) as err:
        attack_requests(_attack_args(*argv))
    for word in words:
        assert word in str(err.value), str(err.value)


@pytest.mark.parametrize("argv, words", [
    (["--method", "jpeg"], ["unknown attack 'jpeg'", "vafa"]),
    (["--method", "vafa:nope"], ["no preset 'nope'", "public-code"]),
    (["--method", "pgd,q_max=3"], ["pgd takes no parameter 'q_max'"]),
    (["--eps", "four"], ["--eps", "number"]),
    (["--method", "vafa,q_max=0.5"], ["q_max must be >= 1"]),
])
def test_malformed_requests_are_refused_by_the_parser(argv, words, capsys):
    with pytest.raises(SystemExit):
        _attack_args(*argv)
    err = capsys.readouterr().err
    for word in words:
        assert word in err, err


# --- training: regimes and attack flags from the registry -------------------------------------------


def _train_config(*argv: str):
    from FreqAdvSegmentLib.cli.train import config_from_args

    return config_from_args(build_parser().parse_args(["train", "data.json", "-o", "run", *argv]))


def test_a_registered_toy_attack_is_a_training_regime(toy):
    from FreqAdvSegmentLib.training.config import REGIMES, TrainConfig

    assert REGIMES["toy-brighten"] == "toy-brighten"
    cfg = _train_config("--regime", "toy-brighten", "--gain", "3/255", "--preset", "strong")
    assert cfg.attack_kwargs() == {"gain": 3 / 255, "steps": 3}
    assert "--gain" in _subhelp(build_parser(), "train")
    registry.unregister(TOY.name)
    with pytest.raises(ValueError, match="unknown training regime 'toy-brighten'"):
        TrainConfig(datalist="d.json", output="o", regime="toy-brighten")


def test_training_regimes_are_natural_every_trainable_attack_and_vaft():
    from FreqAdvSegmentLib.training.config import REGIMES

    trainable = [s.name for s in registry.specs() if s.trainable]
    assert REGIMES == {"natural": None, **{n: n for n in trainable}, "vafa-fr": "vafa"}
    assert "cw" not in REGIMES, "CW is not trainable"


@pytest.mark.parametrize("spec", [s for s in registry.specs() if s.trainable], ids=lambda s: s.name)
def test_training_resolves_presets_as_the_registry_does(spec):
    start = spec.name if spec.training_preset is None else f"{spec.name}:{spec.training_preset}"
    assert _train_config("--regime", spec.name).attack_kwargs() == registry.resolve(start)[1]
    for preset in spec.presets:
        cfg = _train_config("--regime", spec.name, "--preset", preset.name)
        assert cfg.attack_kwargs() == registry.resolve(f"{spec.name}:{preset.name}")[1], preset.name


def test_training_attack_flags_and_the_public_code_alias():
    cfg = _train_config("--regime", "vafa-fr", "--public-code", "--q-max", "30", "--attack-steps", "4",
                        "--renormalize", "none", "--eps", "8/255")
    assert cfg.attack_preset == "public-code"
    assert cfg.attack_params == {"q_max": 30.0, "steps": 4, "renormalize": None, "eps": 8 / 255}
    vafa = cfg.attack_kwargs()
    assert vafa == registry.resolve("vafa:public-code", {"q_max": 30, "steps": 4, "renormalize": None})[1]
    assert cfg.attack_kwargs("pgd")["eps"] == 8 / 255


@pytest.mark.parametrize("argv, words", [
    (["--regime", "pgd", "--eps", "3"], ["eps must be <= 1"]),
    (["--regime", "pgd", "--preset", "table5"], ["table5", "vafa", "pgd"]),
])
def test_training_attack_settings_are_checked_up_front(argv, words):
    with pytest.raises(ValueError) as err:
        _train_config(*argv)
    for word in words:
        assert word in str(err.value), str(err.value)


# --- the README's table ------------------------------------------------------------------------------


def test_the_readme_attack_table_is_the_generated_one():
    from pathlib import Path

    from FreqAdvSegmentLib.attacks.docs import attack_table, readme_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert readme_table(readme) == attack_table(), (
        "README.md's attack table is stale: run python -m FreqAdvSegmentLib.attacks.docs README.md")
    for spec in registry.specs():
        assert f"| `{spec.name}` |" in readme


class StepToward(Attack):
    """A trainable toy whose parameter is called lr, like the trainer's own --lr."""

    def __init__(self, model: torch.nn.Module, lr: float = 0.5, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.lr = lr

    def _attack(self, x, y, progress) -> AttackResult:
        return AttackResult(x * (1 - self.lr), x, y)


def test_a_parameter_named_like_a_trainer_option_gets_its_own_flag():
    from FreqAdvSegmentLib.attacks.spec import RATIO

    spec = AttackSpec("toy-lr", StepToward, "Toward", "scales the volume (a test's plug-in)",
                      (Param("lr", float, "scale step", RATIO, 0, 1),))
    registry.register(spec)
    try:
        cfg = _train_config("--regime", "toy-lr", "--lr", "0.001", "--attack-lr", "0.25")
        assert cfg.lr == 0.001 and cfg.attack_kwargs() == {"lr": 0.25}
        (request,) = attack_requests(_attack_args("--method", "toy-lr", "--lr", "0.125"))
        assert request.kwargs() == {"lr": 0.125}
    finally:
        registry.unregister(spec.name)
