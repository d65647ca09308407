"""The engine's Python packages inside Slicer, the Slicer way; decisions here, no Qt, no torch import.

* torch comes from the PyTorch extension (PyTorch Utils, which the extension depends on): its
  ``installTorch`` uses light-the-torch to pick the build that matches the NVIDIA driver (CUDA
  on Windows too, where PyPI's wheels are CPU-only), and it is asked only when torch is missing
  or older than MINIMUM_TORCH, so a CUDA build it installed is never replaced by a pip one;
* everything else (monai, safetensors, ...) from Resources/requirements.txt through Slicer's own
  ``pip_ensure`` where the running Slicer has it (``slicer.pydeps``, earlier ``slicer.packaging``),
  else ``slicer.util.pip_install``;
* the device line comes from what torch itself reports, asked in a child process (Slicer's GUI
  process never imports torch): CUDA first, then Apple's MPS, else the CPU; a CPU-only torch on a
  machine with an NVIDIA GPU is said as such.

    plan = plan_install(REQUIREMENTS, has_pytorch_utils=True)
    if plan.needed: install(plan, slicer)          # on the desktop, after one confirmation
    device_text(probe_torch(python))               # one line for the panel
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

MINIMUM_TORCH = "2.8"
TORCH_REQUIREMENT = f">={MINIMUM_TORCH}"
REQUESTER = "FreqAdvSegment"
# Run by the child Python: what torch says about the devices it can use, as one JSON line.
TORCH_PROBE = (
    "import json, torch\n"
    "cuda = torch.cuda.is_available()\n"
    "mps = getattr(torch.backends, 'mps', None)\n"
    "print(json.dumps({'torch': torch.__version__, 'cuda_build': torch.version.cuda, 'cuda': cuda,\n"
    "  'cuda_devices': [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],\n"
    "  'mps': bool(mps is not None and mps.is_available())}))\n"
)


@dataclass(frozen=True)
class InstallPlan:
    """What to install: ``torch`` is the version requirement for PyTorch Utils (None: the
    installed torch will do), ``pip`` the other requirements not satisfied."""

    torch: str | None
    pip: tuple[str, ...]
    has_pytorch_utils: bool = True

    @property
    def needed(self) -> bool:
        return bool(self.torch or self.pip)

    @property
    def problem(self) -> str | None:
        """Why the plan cannot be carried out here, in one line (None if it can)."""
        if self.torch and not self.has_pytorch_utils:
            return ("FreqAdvSegment needs the PyTorch extension (PyTorch Utils) to install PyTorch: install it from "
                    "the Extensions Manager and restart Slicer.")
        return None

    def describe(self) -> list[str]:
        """One line per package, for the confirmation question."""
        lines = [f"torch{self.torch} (through PyTorch Utils, the build for your GPU)"] if self.torch else []
        return lines + list(self.pip)


def installed_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def version_at_least(installed: str, minimum: str) -> bool:
    """installed >= minimum (local build tags such as +cu128 ignored), by packaging's rules when
    available, else by numeric parts."""
    installed = installed.split("+")[0]
    try:
        from packaging.version import Version

        return Version(installed) >= Version(minimum)
    except ImportError:
        def parts(text: str) -> tuple[int, ...]:
            return tuple(int(p) for p in re.findall(r"\d+", text)[:3])

        return parts(installed) >= parts(minimum)


def requirement_lines(path: str | os.PathLike) -> list[str]:
    """The requirements of a requirements.txt (comments and pip options left out)."""
    lines = (line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith(("#", "-"))]


def missing_requirements(lines: Sequence[str], installed: Callable[[str], str | None] = installed_version) -> list[str]:
    """The requirements not installed at an acceptable version (``name>=x`` checked; other
    specifiers only for presence)."""
    missing = []
    for line in lines:
        name = re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0]
        have = installed(name)
        minimum = re.search(r">=\s*([\w.]+)", line)
        if have is None or (minimum and not version_at_least(have, minimum.group(1))):
            missing.append(line)
    return missing


def plan_install(requirements: str | os.PathLike, has_pytorch_utils: bool = True,
                 installed: Callable[[str], str | None] = installed_version) -> InstallPlan:
    """What to install before the engine can run. torch is never in the pip part: a torch
    requirement in the file only raises the version asked of PyTorch Utils."""
    lines = requirement_lines(requirements)
    pip = [line for line in lines if re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower() != "torch"]
    have = installed("torch")
    torch = None if have is not None and version_at_least(have, MINIMUM_TORCH) else TORCH_REQUIREMENT
    return InstallPlan(torch, tuple(missing_requirements(pip, installed)), has_pytorch_utils)


def pip_installer(slicer: Any) -> tuple[str, Callable[[list[str]], Any]]:
    """Slicer's own way to install requirements in the running Slicer, and its name:
    ``slicer.pydeps.pip_ensure`` (Slicer 5.11+), ``slicer.packaging.pip_ensure`` (its earlier
    home), else ``slicer.util.pip_install`` (one call with every requirement)."""
    import importlib
    import inspect

    for home in ("pydeps", "packaging"):
        try:
            module = getattr(slicer, home, None) or importlib.import_module(f"{getattr(slicer, '__name__', 'slicer')}.{home}")
        except ImportError:
            continue
        ensure = getattr(module, "pip_ensure", None)
        if ensure is None:
            continue
        names = inspect.signature(ensure).parameters
        # The panel asked once already: no second question where the function lets us say so.
        quiet = {k: False for k in ("prompt_install", "prompt") if k in names}
        extra = {"requester": REQUESTER} if "requester" in names else {}

        def run(requirements: list[str], ensure: Callable = ensure, options: dict = {**quiet, **extra}) -> Any:
            from packaging.requirements import Requirement

            return ensure([Requirement(r) for r in requirements], **options)

        return f"slicer.{home}.pip_ensure", run
    return "slicer.util.pip_install", lambda requirements: slicer.util.pip_install(list(requirements))


def install(plan: InstallPlan, slicer: Any, torch_utils: Any = None) -> list[str]:
    """Carry out ``plan`` in the running Slicer: torch through PyTorch Utils first (it picks the
    CUDA build for the driver), then the rest with Slicer's pip; returns the steps taken.
    Raises RuntimeError with one line if the plan cannot be carried out or the user declines."""
    if plan.problem:
        raise RuntimeError(plan.problem)
    steps = []
    if plan.torch:
        if torch_utils is None:
            import PyTorchUtils  # the PyTorch extension's module

            torch_utils = PyTorchUtils.PyTorchUtilsLogic()
        if torch_utils.installTorch(askConfirmation=True, torchVersionRequirement=plan.torch) is None:
            raise RuntimeError(f"PyTorch{plan.torch} was not installed: FreqAdvSegment cannot run without it.")
        steps.append(f"PyTorchUtils.installTorch(torchVersionRequirement={plan.torch!r})")
    if plan.pip:
        name, run = pip_installer(slicer)
        run(list(plan.pip))
        steps.append(f"{name}({', '.join(plan.pip)})")
    return steps


def probe_torch(python: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> dict[str, Any] | None:
    """What torch reports in ``python`` (a child process, so this process imports no torch):
    version, CUDA build, CUDA and MPS availability, GPU names. None if torch is missing there
    or does not answer."""
    kwargs: dict = {"creationflags": subprocess.CREATE_NO_WINDOW} if os.name == "nt" else {}
    try:
        done = subprocess.run([python, "-c", TORCH_PROBE], capture_output=True, text=True, timeout=timeout, env=env,
                              check=False, stdin=subprocess.DEVNULL, **kwargs)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return None
    try:
        return json.loads(lines[-1])
    except ValueError:
        return None


def device_text(report: dict[str, Any] | None, nvidia_gpu: str | None = None) -> str:
    """One line for the panel from :func:`probe_torch`'s report (``nvidia_gpu``: what
    nvidia-smi found, to say when a CPU-only torch leaves it unused)."""
    if report is None:
        return "PyTorch is not installed yet: Apply installs it (PyTorch Utils picks the build for your GPU)."
    if report.get("cuda"):
        names = report.get("cuda_devices") or ["CUDA GPU"]
        return f"GPU: {names[0]} (CUDA {report.get('cuda_build')}, PyTorch {report['torch']}): auto uses it."
    if report.get("mps"):
        return f"Apple GPU (MPS, PyTorch {report['torch']}): choose device mps to use it; auto runs on the CPU."
    if nvidia_gpu and not report.get("cuda_build"):
        return (f"PyTorch {report['torch']} is a CPU-only build, so the GPU ({nvidia_gpu}) is not used: reinstall "
                "PyTorch from the PyTorch Utils module.")
    return f"No GPU that PyTorch {report['torch']} can use: the engine runs on the CPU."


def device_choices(report: dict[str, Any] | None) -> list[str]:
    """The devices to offer: auto and cpu always, then CUDA, then MPS where torch has them."""
    choices = ["auto", "cpu"]
    if report and report.get("cuda"):
        choices.append("cuda")
    if report and report.get("mps"):
        choices.append("mps")
    return choices


def nvidia_gpu() -> str | None:
    """The first NVIDIA GPU's name from nvidia-smi (a second at most), None if there is none."""
    import shutil

    tool = shutil.which("nvidia-smi")
    if tool is None:
        return None
    kwargs: dict = {"creationflags": subprocess.CREATE_NO_WINDOW} if os.name == "nt" else {}
    try:
        out = subprocess.run([tool, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=3, check=False, **kwargs).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None
