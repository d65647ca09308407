"""Family: TorchScript archives (only with trust_model_code) and ONNX files (always refused).

A TorchScript file is a program, not data: loading it runs its code. It is accepted only behind
an explicit --trust-model-code, and the user's --spec (or the default spec) says how to feed it.
ONNX models cannot be differentiated by PyTorch, so no gradient attack can run on them.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from ..spec import ModelSpec
from .common import LoadOptions, Source

NAME = "torchscript"
DESCRIPTION = "TorchScript archive (needs --trust-model-code); ONNX is refused"


def detect(path: Path) -> bool:
    """An .onnx file, or a zip archive with TorchScript's constants.pkl inside."""
    if path.is_file() and path.suffix.lower() == ".onnx":
        return True
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def read(path: Path, options: LoadOptions) -> Source:
    if path.suffix.lower() == ".onnx":
        raise ValueError(
            f"{path} is an ONNX model: PyTorch cannot compute gradients through it, so no attack "
            "can run; export the PyTorch weights (a state dict or .safetensors) instead"
        )
    if not options.trust_model_code:
        raise ValueError(
            f"{path} is a TorchScript archive, which is code, not data: loading it runs that code. "
            "Pass --trust-model-code (trust_model_code=True) only if you trust its author"
        )
    module = torch.jit.load(str(path), map_location="cpu")
    spec = options.spec or ModelSpec(arch="torchscript")
    if spec.arch != "torchscript":
        spec = ModelSpec.from_dict({**spec.to_dict(), "arch": "torchscript"})
    return Source(spec, None, NAME, module=module.eval())


def build_torchscript(spec: ModelSpec) -> torch.nn.Module:
    raise ValueError(
        "a TorchScript model cannot be rebuilt from its spec; load the .pt archive itself "
        "(with --trust-model-code), or save a state dict"
    )
