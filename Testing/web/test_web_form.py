"""The web viewer's attack form and engine arguments, derived from the attack registry.

No server and no browser: the form's fields, defaults and presets (web/params.py) against
``registry.resolve``, a toy attack registered with one line, and the engine's command line
(web/engine.py, the MRML bridge's EngineRun) parsed by the real ``freqadv`` parser, whose attack
requests must build exactly what the form asked for.
"""

from __future__ import annotations

import pytest

from FreqAdvSegmentLib.attacks import registry
from FreqAdvSegmentLib.attacks.spec import STEPS, AttackSpec, Param, Preset
from FreqAdvSegmentLib.attacks.voxel import FGSM
from FreqAdvSegmentLib.web import params


class Toy(FGSM):
    """A registered-at-run-time attack: FGSM with another name and its own parameter."""

    def __init__(self, model, eps: float = 2 / 255, repeats: int = 3, **run) -> None:
        super().__init__(model, eps=eps, **run)
        self.repeats = repeats


TOY = AttackSpec("toy", Toy, "Toy", "a test attack", (
    Param("eps", float, "L-inf budget", "[0, 1] intensity", 0, 1, display_scale=255),
    Param("repeats", int, "how often", STEPS, 1, 9),
), (Preset("strong", "eps 16/255", {"eps": 16 / 255, "repeats": 5}),))


@pytest.fixture
def toy():
    registry.register(TOY)  # the one line a plug-in writes
    yield TOY
    registry.unregister("toy")


def _form(**changes):
    return {**params.default_values(), **changes}


def test_a_toy_attack_registered_with_one_line_is_in_the_form(toy):
    fields = {f.key: f for f in params.all_fields()}
    eps, repeats = fields[params.state_key("toy", "eps")], fields[params.state_key("toy", "repeats")]
    assert eps.label == "eps (/255)" and eps.bounds == (0, 255) and repeats.bounds == (1, 9)
    item = next(i for i in params.attack_items() if i["value"] == "toy")
    assert item["title"] == "Toy" and [p["value"] for p in item["presets"]] == ["", "strong"]
    values = params.default_values()
    assert values[eps.key] == "2" and values[repeats.key] == "3"  # the constructor's defaults, shown /255
    assert params.form_requests(["toy"], values) == ["toy"]
    edited = {**values, params.preset_key("toy"): "strong", **params.shown_values("toy", "strong"), repeats.key: "7"}
    (text,) = params.form_requests(["toy"], edited)
    assert text == "toy:strong,repeats=7"
    assert params.resolve_request(text) == registry.resolve("toy:strong", {"repeats": 7}) == ("toy", {"eps": 16 / 255, "repeats": 7})


def test_the_toy_attack_shows_up_on_the_page(toy):
    pytest.importorskip("trame_slicer", reason="the page needs trame (trame-slicer[standalone])")
    from trame.app import get_server
    from trame.ui.vuetify3 import VAppLayout

    from FreqAdvSegmentLib.web import layout

    server = get_server("freqadv-form-test", client_type="vue3")
    with VAppLayout(server) as page:
        layout._attack_section()
    html = page.html
    assert 'id="fa-param-toy-eps"' in html and 'id="fa-param-toy-repeats"' in html and 'id="fa-preset-toy"' in html
    assert "fa_chosen.includes('toy')" in html and 'title="how often"' in html


@pytest.mark.parametrize("method", registry.methods())
def test_every_default_and_preset_resolves_as_the_registry_does(method):
    name, _, preset = method.partition(":")
    values = _form(**{params.preset_key(name): preset}, **params.shown_values(name, preset or None))
    (text,) = params.form_requests([name], values)
    assert text == method, "a field left as the preset shows it must not become an override"
    assert params.resolve_request(text) == registry.resolve(method)


def test_vafa_defaults_are_the_paper_s():
    (text,) = params.form_requests(["vafa"], _form())
    assert text == "vafa" and params.resolve_request(text)[1] == registry.get("vafa").defaults()
    shown = params.shown_values("vafa")
    assert shown[params.state_key("vafa", "q_max")] == "20" and shown[params.state_key("vafa", "q_init")] == "none"


def test_edited_fields_become_exact_engine_values():
    values = _form(**{params.state_key("fgsm", "eps"): "8", params.state_key("pgd", "steps"): " 3 ",
                      params.state_key("pgd", "alpha"): "2.55"})
    texts = params.form_requests(["PGD", "fgsm"], values)  # registry order, any case
    assert texts[0].startswith("pgd,") and texts[1] == "fgsm,eps=" + repr(8 / 255)
    name, resolved = params.resolve_request(texts[0])
    # "2.55" is what the form shows for PGD's alpha 0.01: it stays exactly 0.01 (2.55 / 255 is not).
    assert resolved["steps"] == 3 and resolved["alpha"] == 0.01 and resolved["eps"] == 4 / 255
    assert "alpha" not in texts[0]
    assert params.request_title(texts[1]) == "FGSM, eps 8"


@pytest.mark.parametrize("attack, param, text, words", [
    ("vafa", "steps", "2.5", "VAFA steps: enter a whole number"),
    ("fgsm", "eps", "abc", r"FGSM eps \(/255\): enter a number, not .abc."),
    ("fgsm", "eps", "", r"FGSM eps \(/255\): enter a number"),
    ("pgd", "eps", "300", r"PGD eps \(/255\) must be between 0 and 255, not 300"),
    ("vafa", "rounding", "round", "must be one of soft, ste"),
])
def test_bad_fields_are_named_in_the_page_s_words(attack, param, text, words):
    with pytest.raises(ValueError, match=words):
        params.form_requests([attack], _form(**{params.state_key(attack, param): text}))


def test_choosing_nothing_or_an_unknown_attack_is_refused():
    with pytest.raises(ValueError, match="at least one attack"):
        params.form_requests([], _form())
    with pytest.raises(ValueError, match="unknown attack 'magic'"):
        params.form_requests(["magic"], _form())


# --- the engine's command line ----------------------------------------------------------------


def _built_by_the_cli(arguments: list[str]) -> list[tuple[str, str, dict]]:
    """What ``freqadv attack ARGUMENTS`` builds: (label, attack, full constructor keywords) per
    request, in order."""
    from FreqAdvSegmentLib.cli import attack_requests, build_parser

    args = build_parser().parse_args(["attack", *arguments])
    built = attack_requests(args, ["vafa"])
    return [(r.label, *registry.resolve(r.method if r.preset is None else f"{r.method}:{r.preset}", r.params)) for r in built]


def _web_arguments(requests: list[str], tmp_path) -> list[str]:
    """The attack part of the command a web job's WebEngineRun builds for ``requests`` (a real
    volume node in a real MRML scene, written to ``tmp_path``)."""
    import SimpleITK as sitk
    import slicer

    from FreqAdvSegmentLib.mrml.logic import EngineSettings
    from FreqAdvSegmentLib.mrml.volumes import volume_node_from_image
    from FreqAdvSegmentLib.web.engine import WebEngineRun

    scene = slicer.vtkMRMLScene()
    ct = volume_node_from_image(scene, sitk.Image([8, 8, 4], sitk.sitkInt16), "ct")
    run = WebEngineRun(scene, ct, "attack", attacks=tuple(requests), settings=EngineSettings(device="cpu", work_root=tmp_path))
    run.workdir = tmp_path
    command = run._command()
    return command[command.index("attack") + 1:]


@pytest.mark.parametrize("requests", [
    ["vafa"], ["vafa:public-code"], ["vafa:table5", "fgsm:eps8"], ["pgd", "fgsm", "gn:std8"],
    ["vafa:public-code,q_max=30,steps=5"], ["vafa,q_init=7,rounding=ste", "cw,c=2"], ["bim,eps=0.01", "fgsm,eps=0.01"],
    # What the old one-flag-per-parameter command line could not say, and the web used to refuse:
    ["vafa,steps=10", "pgd"], ["fgsm:eps8", "pgd"], ["vafa,renormalize=slice"], ["vafa:public-code,q_init=none"],
    ["pgd", "pgd,eps=8/255"], ["vafa", "vafa:public-code,q_max=30"],
])
def test_a_web_job_builds_what_the_form_asked_for(requests, tmp_path):
    """The real CLI parses a web job's command into exactly ``registry.resolve`` of each request,
    labelled as the bridge says (its progress stages), with the Slicer scene asked for."""
    pytest.importorskip("slicer", reason="the engine run needs slicer-core")
    from FreqAdvSegmentLib.cli import build_parser
    from FreqAdvSegmentLib.mrml.attack_choices import request_labels

    arguments = _web_arguments(requests, tmp_path)
    assert build_parser().parse_args(["attack", *arguments]).scene
    wanted = [(label, *params.resolve_request(t)) for label, t in zip(request_labels(requests), requests)]
    assert _built_by_the_cli(arguments) == wanted


def test_a_web_run_follows_its_requests_labels(tmp_path):
    """Progress: the stages are the requests' labels, so a repeated attack has its own share."""
    pytest.importorskip("slicer", reason="the engine run needs slicer-core")
    import slicer

    from FreqAdvSegmentLib.mrml.engine_process import Progress
    from FreqAdvSegmentLib.web.engine import WebEngineRun

    run = WebEngineRun(slicer.vtkMRMLScene(), None, "attack", attacks=("pgd", "pgd,eps=8/255"))
    assert run.requests() == ["pgd", "pgd,eps=8/255"]

    class Job:  # the child's latest JSON progress line, as EngineJob parses it
        progress = Progress("pgd-2", 5, 10)

    run.job = Job()
    assert run.fraction == pytest.approx(0.1 + 0.45 * 1.5)
    run.job.progress = Progress("pgd", 10, 10)
    assert run.fraction == pytest.approx(0.55)


def test_a_web_job_with_a_wrong_request_says_which(tmp_path):
    pytest.importorskip("slicer", reason="the engine run needs slicer-core")
    with pytest.raises(ValueError, match="magic"):
        _web_arguments(["magic"], tmp_path)
    with pytest.raises(ValueError, match="q_max"):
        _web_arguments(["pgd,q_max=3"], tmp_path)
