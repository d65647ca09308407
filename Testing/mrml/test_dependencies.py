"""Dependencies the Slicer way (issue 23 item 3): what gets installed through PyTorch Utils and
what through Slicer's pip, and the device line from what torch itself reports."""

from __future__ import annotations

import sys
import types

import pytest

from FreqAdvSegmentLib.mrml import dependencies
from FreqAdvSegmentLib.mrml.dependencies import InstallPlan, device_choices, device_text, plan_install, probe_torch

REQUIREMENTS = dependencies.Path(dependencies.__file__).resolve().parents[2] / "Resources" / "requirements.txt"


def _installed(**versions):
    return lambda name: versions.get(name.lower().replace("-", "_"))


def test_torch_never_goes_through_pip():
    everything = {n: "99" for n in ("monai", "numpy", "scipy", "nibabel", "safetensors", "einops", "tqdm", "matplotlib", "pyyaml", "isal")}
    plan = plan_install(REQUIREMENTS, installed=_installed(**everything))
    assert plan.torch == ">=2.8" and plan.pip == (), "no torch: PyTorch Utils installs it, pip nothing"
    assert not any(line.lower().startswith("torch") for line in plan_install(REQUIREMENTS, installed=_installed()).pip)
    cuda_build = plan_install(REQUIREMENTS, installed=_installed(torch="2.9.1+cu128", **everything))
    assert cuda_build == InstallPlan(None, ()), "a CUDA build PyTorch Utils installed is kept as it is"
    old = plan_install(REQUIREMENTS, installed=_installed(**{**everything, "torch": "2.4.0", "monai": "1.3"}))
    assert old.torch == ">=2.8" and old.pip == ("monai>=1.4",)
    assert old.describe()[0].startswith("torch>=2.8 (through PyTorch Utils")


def test_without_pytorch_utils_the_plan_says_what_to_do(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# comment\ntorch>=2.8\n--extra-index-url x\nsafetensors>=0.4\n", encoding="utf-8")
    plan = plan_install(requirements, has_pytorch_utils=False, installed=_installed())
    assert plan.pip == ("safetensors>=0.4",)
    assert "Extensions Manager" in plan.problem and "\n" not in plan.problem
    with pytest.raises(RuntimeError, match="PyTorch Utils"):
        dependencies.install(plan, types.SimpleNamespace())


class _TorchUtils:
    def __init__(self, answer):
        self.calls, self.answer = [], answer

    def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None):  # noqa: N802
        self.calls.append((askConfirmation, forceComputationBackend, torchVersionRequirement))
        return self.answer


def test_install_asks_pytorch_utils_then_slicers_pip_ensure():
    ensured = []

    def pip_ensure(requirements, constraints=None, skip_packages=None, prompt_install=True, prompt_restart=True,
                   requester=None, skip_in_testing=True, show_progress=True):
        ensured.append(([str(r) for r in requirements], prompt_install, requester))

    slicer = types.SimpleNamespace(pydeps=types.SimpleNamespace(pip_ensure=pip_ensure),
                                   util=types.SimpleNamespace(pip_install=lambda r: pytest.fail("pip_ensure exists")))
    utils = _TorchUtils(answer=types.SimpleNamespace(__version__="2.9.1+cu128"))
    steps = dependencies.install(InstallPlan(">=2.8", ("monai>=1.4", "safetensors>=0.4")), slicer, utils)
    assert utils.calls == [(True, None, ">=2.8")], "the CUDA build is PyTorch Utils' choice"
    assert ensured == [(["monai>=1.4", "safetensors>=0.4"], False, "FreqAdvSegment")]
    assert steps[1].startswith("slicer.pydeps.pip_ensure")
    with pytest.raises(RuntimeError, match="was not installed"):
        dependencies.install(InstallPlan(">=2.8", ()), slicer, _TorchUtils(answer=None))  # the user said no


def test_older_slicer_falls_back_to_pip_install():
    installed = []
    slicer = types.SimpleNamespace(__name__="no_such_slicer", util=types.SimpleNamespace(pip_install=installed.append))
    name, run = dependencies.pip_installer(slicer)
    assert name == "slicer.util.pip_install"
    run(["monai>=1.4"])
    assert installed == [["monai>=1.4"]]


def test_device_line_comes_from_torch_cuda_first_then_mps():
    cuda = {"torch": "2.9.1+cu128", "cuda_build": "12.8", "cuda": True, "cuda_devices": ["NVIDIA H200"], "mps": False}
    assert device_text(cuda).startswith("GPU: NVIDIA H200 (CUDA 12.8") and device_choices(cuda) == ["auto", "cpu", "cuda"]
    mac = {"torch": "2.9.1", "cuda_build": None, "cuda": False, "cuda_devices": [], "mps": True}
    assert "MPS" in device_text(mac) and device_choices(mac) == ["auto", "cpu", "mps"]
    cpu_only = {"torch": "2.9.1+cpu", "cuda_build": None, "cuda": False, "cuda_devices": [], "mps": False}
    assert "CPU-only build" in device_text(cpu_only, nvidia_gpu="NVIDIA RTX 4090"), "nvidia-smi alone is not a usable GPU"
    assert device_text(cpu_only).startswith("No GPU") and device_choices(cpu_only) == ["auto", "cpu"]
    assert "not installed" in device_text(None)


def test_probe_asks_a_real_torch_in_a_child_process(tmp_path):
    report = probe_torch(sys.executable)
    import torch

    assert report["torch"] == torch.__version__ and report["cuda"] == torch.cuda.is_available()
    empty = tmp_path / "python"
    empty.write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
    empty.chmod(0o755)
    assert probe_torch(str(empty)) is None, "no torch there: None, not an exception"


def test_engine_takes_mps_by_name_and_says_when_there_is_none():
    """The panel offers mps where torch reports it; the engine accepts it by name and, where
    torch has no MPS (this machine), says so in one line instead of failing later."""
    import torch

    from FreqAdvSegmentLib.job.inference import resolve_device

    if torch.backends.mps.is_available():
        assert resolve_device("mps").type == "mps"
    else:
        with pytest.raises(ValueError, match="no Apple GPU") as error:
            resolve_device("mps")
        assert "\n" not in str(error.value)
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu"), "auto never picks mps"
    with pytest.raises(ValueError, match="cuda, cuda:N or mps"):
        resolve_device("tpu")
