"""The attack form: which fields each method shows, their limits, and the engine parameters.

The fields are :class:`FormChoices`' (what the Slicer panel used before it was derived from the
attack registry), in the same units: intensities on the paper's 0-255 scale. The browser
sends strings; :func:`attack_parameters` checks every value the chosen method uses and says
which one is wrong, so a bad value never reaches the engine as a cryptic failure.

The bridge (which needs VTK) is imported inside the functions: the ``freqadv`` command line
imports this module for its choices, and must work where only the engine is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

METHOD_TITLES = {"vafa": "VAFA", "pgd": "PGD", "fgsm": "FGSM", "bim": "BIM", "cw": "CW", "gn": "Noise"}
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Field:
    """One number of the form: the AttackChoices attribute it sets, and its bounds."""

    key: str
    label: str
    methods: tuple[str, ...]
    minimum: float
    maximum: float
    integer: bool = False
    hint: str = ""


FIELDS = (
    Field("steps", "steps", ("vafa", "pgd", "bim", "cw"), 1, 500, True, "paper: 20"),
    Field("q_max", "q max", ("vafa",), 1, 255, hint="largest quantisation step (paper: 20)"),
    Field("q_min", "q min", ("vafa",), 0.01, 255, hint="smallest step (paper: 1)"),
    Field("block_size", "block size", ("vafa",), 2, 64, True, "DCT block side (paper: 8)"),
    Field("ssim_weight", "SSIM weight", ("vafa",), 0, 100, hint="0 turns the SSIM term off"),
    Field("eps255", "eps (/255)", ("pgd", "bim", "fgsm"), 0.01, 255, hint="L-inf budget, paper: 4"),
    Field("alpha255", "alpha (/255)", ("pgd", "bim"), 0.01, 255, hint="step size"),
    Field("std255", "std (/255)", ("gn",), 0.01, 255, hint="noise standard deviation"),
    Field("cw_c", "c", ("cw",), 0.0001, 1000, hint="weight of the margin term"),
)


def state_key(field: Field) -> str:
    """The trame state variable bound to ``field``'s text box."""
    return f"fa_p_{field.key}"


@dataclass
class FormChoices:
    """The form's attack settings; intensities on the 0-255 scale. :meth:`parameters` gives the
    engine's parameters for one method ([0, 1] intensities)."""

    steps: int = 20
    q_max: float = 20.0
    q_min: float = 1.0
    q_init_from_max: bool = True
    block_size: int = 8
    ssim_weight: float = 1.0
    eps255: float = 4.0
    alpha255: float = 2.55
    std255: float = 4.0
    cw_c: float = 1.0

    def parameters(self, method: str) -> dict[str, Any]:
        """Only the parameters ``method`` takes, in the engine's units ([0, 1] intensities)."""
        method = method.lower()
        if method == "vafa":
            params = {"steps": self.steps, "q_max": self.q_max, "q_min": self.q_min,
                      "block_size": self.block_size, "ssim_weight": self.ssim_weight}
            return {**params, "q_init": self.q_max} if self.q_init_from_max else params
        if method in ("pgd", "bim"):
            return {"steps": self.steps, "eps": self.eps255 / 255.0, "alpha": self.alpha255 / 255.0}
        if method == "fgsm":
            return {"eps": self.eps255 / 255.0}
        if method == "gn":
            return {"std": self.std255 / 255.0}
        if method == "cw":
            return {"steps": self.steps, "c": self.cw_c}
        raise ValueError(f"unknown attack method {method!r}")


def default_values() -> dict[str, Any]:
    """Every field's default, keyed by its state variable."""
    defaults = FormChoices()
    return {state_key(f): getattr(defaults, f.key) for f in FIELDS}


def attack_parameters(method: str, values: dict[str, Any]) -> dict[str, Any]:
    """The engine parameters of ``method`` from the form ``values`` (keyed by state variable).

    Raises ValueError naming the first field that is missing, not a number, or out of range."""
    method = str(method).lower()
    if method not in METHOD_TITLES:
        raise ValueError(f"unknown attack {method!r}; choose one of {', '.join(METHOD_TITLES)}")
    choices = FormChoices()
    for field in FIELDS:
        if method in field.methods:
            setattr(choices, field.key, _number(field, values.get(state_key(field))))
    if method == "vafa" and choices.q_min > choices.q_max:
        raise ValueError(f"q min ({choices.q_min:g}) must not exceed q max ({choices.q_max:g})")
    return choices.parameters(method)


def _number(field: Field, raw: Any) -> float | int:
    text = "" if raw is None else str(raw).strip()
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{field.label}: enter a number, not {text!r}") from None
    if field.integer and value != int(value):
        raise ValueError(f"{field.label}: enter a whole number, not {text}")
    if not field.minimum <= value <= field.maximum:
        raise ValueError(f"{field.label} must be between {field.minimum:g} and {field.maximum:g}, not {value:g}")
    return int(value) if field.integer else value


def model_items(registry: Any = None) -> list[dict[str, Any]]:
    """Registry models for the model picker; those without local weights are listed disabled,
    with why, since the web viewer cannot download them (the user must, see `freqadv models`)."""
    from ..models.registry import list_models, resolve_model

    items = []
    for entry in list_models(registry):
        try:
            resolve_model(entry["name"], registry=registry)
            available, note = True, ""
        except (FileNotFoundError, ValueError):
            available, note = False, " (weights not installed)"
        items.append({"title": entry["name"] + note, "value": entry["name"], "props": {"disabled": not available}})
    return items

