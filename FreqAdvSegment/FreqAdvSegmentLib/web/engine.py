"""The engine run behind a web job: the MRML bridge's EngineRun with several attack requests.

The page sends request texts (``vafa:public-code,q_max=30``, ``fgsm``); :func:`engine_arguments`
is the one place they become ``freqadv attack`` flags. Today's command line takes ``--method NAME``
(repeatable) plus one global flag per parameter, so:

* each request's parameters are resolved by the registry (preset, then the form's changes) and
  only the values that differ from the attack's defaults are passed;
* VAFA's public-code preset is passed as ``--public-code`` with every VAFA value explicit (the
  flag changes defaults the request may have set back);
* a flag two chosen attacks need at different values (VAFA 20 steps, CW 50) cannot be said on
  one command line: that is refused with a sentence that says what to do.

When the command line takes request texts itself (``--method vafa:public-code,q_max=30``, issue 9),
this function becomes ``[arg for t in requests for arg in ("--method", t)]``; the test that parses
these flags with the real CLI and compares what it builds with ``registry.resolve`` says whether the
two still agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..attacks import registry
from ..mrml.engine_process import overall_fraction
from ..mrml.logic import EngineRun

# Parameters today's CLI has no flag for; VAFA's public-code preset sets them through --public-code.
_PUBLIC_CODE = {"output_rounding": "soft", "renormalize": "slice"}


def engine_arguments(requests: Sequence[str]) -> list[str]:
    """``freqadv attack`` flags for ``requests`` (request texts); ValueError if they cannot be
    said on one command line."""
    if not requests:
        raise ValueError("no attack chosen")
    resolved: dict[str, dict[str, Any]] = {}  # attack -> its full constructor keywords
    flags: dict[str, Any] = {}
    public_code = False
    for text in requests:
        spec, preset, params = registry.parse_request(text)
        if spec.name in resolved:
            raise ValueError(f"{spec.title} is chosen twice; one run takes each attack once")
        values, defaults = spec.resolve(preset, **params), spec.defaults()
        resolved[spec.name] = values
        wanted = {k: v for k, v in values.items() if v != defaults[k]}
        if spec.name == "vafa" and all(values.get(k) == v for k, v in _PUBLIC_CODE.items()):
            # --public-code changes q_min and q_init too: say every VAFA value explicitly.
            public_code = True
            wanted = {k: v for k, v in values.items() if k not in _PUBLIC_CODE}
        elif any(k in _PUBLIC_CODE for k in wanted):
            raise ValueError(f"{spec.title}: output rounding 'soft' and renormalize 'slice' go together here "
                             "(the public-code preset); set both or neither")
        for key, value in wanted.items():
            if value is None:
                raise ValueError(f"{spec.title}: {key} 'none' cannot be combined with these settings; give it a number")
            flags.setdefault(key, value)
    _check_shared(resolved, flags)
    args: list[str] = []
    for name in resolved:
        args += ["--method", name]
    params = registry.all_params()
    for key, value in flags.items():
        args += [params[key].flag, params[key].to_text(value)]
    return args + (["--public-code"] if public_code else [])


def _check_shared(resolved: dict[str, dict[str, Any]], flags: dict[str, Any]) -> None:
    """A global flag reaches every chosen attack that takes it: all must want its value."""
    for key, value in flags.items():
        takers = [(name, values[key]) for name, values in resolved.items() if key in values]
        for name, theirs in takers:
            if theirs != value:
                first = next(n for n, v in takers if v == value)
                param = registry.get(name).param(key)
                raise ValueError(
                    f"{registry.get(first).title} and {registry.get(name).title} need different {key} "
                    f"({_shown(param, value)} and {_shown(param, theirs)}); one run passes one {key} to every "
                    "attack: set them the same, or run them one after the other")


def _shown(param: Any, value: Any) -> str:
    return f"{value * param.display_scale:g}" if isinstance(value, (int, float)) else str(value)


@dataclass
class WebEngineRun(EngineRun):
    """EngineRun for several attack requests, also writing the Slicer scene (scene.mrb)."""

    requests: Sequence[str] = field(default_factory=tuple)

    @property
    def stages(self) -> list[str]:
        """The engine's progress stages (one per attack, named by its label)."""
        return [registry.parse_request(t)[0].name for t in self.requests]

    @property
    def fraction(self) -> float | None:
        if self.kind == "segment":
            return None
        return overall_fraction(self.progress, self.stages)

    def _command(self) -> list[str]:
        command = super()._command()
        if self.kind != "attack":
            return command
        # The bridge wrote "--method <first>" (its params are empty, see jobs.py); the requests
        # replace those two words.
        start = command.index("--method")
        return [*command[:start], *engine_arguments(self.requests), "--scene", *command[start + 2:]]
