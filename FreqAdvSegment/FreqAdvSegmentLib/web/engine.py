"""The engine run behind a web job: the MRML bridge's EngineRun, also writing the Slicer scene.

The page sends request texts (``vafa:public-code,q_max=30``, ``fgsm``); they go to the bridge as
its ``attacks=``, which checks each with the registry and passes it as ``--method TEXT``
(:func:`~FreqAdvSegmentLib.mrml.attack_choices.attack_arguments`). The command line resolves every
request on its own and labels them uniquely (``vafa``, ``pgd``, ``pgd-2``), so one run may hold the
same attack twice or attacks with different values of a shared parameter (VAFA 10 steps, PGD 20).
Progress stages are those labels (the bridge's ``fraction``). All this class adds is ``--scene``:
the web page offers ``scene.mrb`` for download.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..mrml.logic import EngineRun


@dataclass
class WebEngineRun(EngineRun):
    """EngineRun for a web job; an attack run also writes the Slicer scene (scene.mrb)."""

    def _command(self) -> list[str]:
        command = super()._command()
        # Only `freqadv attack` writes a scene here; a segmentation gives one label map.
        return [*command, "--scene"] if self.kind == "attack" else command
