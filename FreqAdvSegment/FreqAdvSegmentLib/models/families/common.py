"""What every model family shares: load options, what a family returns, safe file reading.

Nothing here runs code stored in a file: PyTorch files are read with
``torch.load(weights_only=True)`` (plus numpy scalars, rebuilt from a dtype and raw bytes), and
safetensors files hold only tensors and string metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from ..spec import ModelSpec

StateDict = dict[str, torch.Tensor]
SPEC_METADATA_KEY = "freqadv_spec"


@dataclass(frozen=True)
class LoadOptions:
    """What the user said about how to load a model (CLI: --arch, --spec, --fold, ...).

    Attributes:
        spec: a full ModelSpec that overrides whatever the source says.
        arch: for weights without a spec: build this arch with its default arguments.
        folds: nnU-Net folds to ensemble (None: every fold_* folder with a checkpoint).
        configuration: nnU-Net configuration (None: 3d_fullres).
        tta: nnU-Net mirroring test-time augmentation where the checkpoint allows it.
        trust_model_code: allow TorchScript models (they are code, not data).
    """

    spec: ModelSpec | None = None
    arch: str | None = None
    folds: tuple[int, ...] | None = None
    configuration: str | None = None
    tta: bool = True
    trust_model_code: bool = False


@dataclass
class Source:
    """What a family read from a file or folder.

    Attributes:
        spec: how to build and feed the network.
        state: its weights, to load into build_model(spec); None when module is given.
        module: a ready module (TorchScript only: it cannot be rebuilt from a spec).
        family: the family's name, for messages and reports.
    """

    spec: ModelSpec
    state: StateDict | None
    family: str
    module: torch.nn.Module | None = None


def read_torch(path: Path) -> Any:
    """torch.load(path, weights_only=True) with numpy scalars allowed; ValueError otherwise."""
    try:
        with torch.serialization.safe_globals(numpy_scalar_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # weights_only refusals, corrupt zips, random bytes alike
        raise ValueError(unsafe_message(path, error)) from None


def numpy_scalar_globals() -> list[Any]:
    """Allow numpy scalars such as a float64 "best_acc" beside the weights.

    Training scripts (the paper's trainer.py, nnU-Net's "logging") store np.mean(...) results in
    their checkpoints; weights_only refuses those by default. Rebuilding a scalar from a dtype and
    its raw bytes runs no stored code. Files written under numpy 1 name the function
    numpy.core.multiarray.scalar, numpy 2 numpy._core.multiarray.scalar.
    """
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import scalar
    names = ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar")
    return [np.dtype, *[(scalar, name) for name in names], *_numpy_dtype_classes()]


def _numpy_dtype_classes() -> list[type]:
    """Numeric dtype classes (Float64DType...), which numpy >= 1.25 pickles restore a dtype to.

    Only number and bool dtypes: object, string and void dtypes are left out on purpose.
    """
    dtypes = getattr(np, "dtypes", None)
    classes = [getattr(dtypes, name) for name in dir(dtypes) if name.endswith("DType")]
    return [c for c in classes if issubclass(getattr(c, "type", object), (np.number, np.bool_))]


def unsafe_message(path: Path, error: Exception) -> str:
    detail = str(error).strip().splitlines()
    # torch's refusal names the offending global on a line of its own; show that line.
    first = detail[0] if detail else ""
    reason = next((line.strip() for line in detail if "GLOBAL" in line), first)
    return (
        f"could not read {path} safely as a PyTorch checkpoint ({type(error).__name__}: "
        f"{reason}). FreqAdvSegment only loads files with torch.load(weights_only=True), which "
        "refuses pickled Python objects because they can run code. If the file is a checkpoint "
        "you trust, re-save just its weights: torch.save(model.state_dict(), 'weights.pt')."
    )


def read_safetensors(path: Path) -> tuple[StateDict, ModelSpec | None]:
    """(tensors, the spec in the metadata or None)."""
    from ..size import MAX_WEIGHT_BYTES

    try:
        with safe_open(str(path), framework="pt", device="cpu") as file:
            metadata = file.metadata() or {}
            declared = _declared_bytes(file)
            if declared <= MAX_WEIGHT_BYTES:  # checked before a byte is allocated (a sparse file is cheap to make)
                state = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118 (not a dict)
    except Exception as error:  # any failure means: not a readable safetensors file
        raise ValueError(f"could not read {path} as a safetensors file: {error}") from None
    if declared > MAX_WEIGHT_BYTES:
        raise ValueError(f"{path} declares {declared / 2**30:,.1f} GiB of tensors, over the "
                         f"{MAX_WEIGHT_BYTES / 2**30:.0f} GiB limit for a model's weights; it is not a real model")
    text = metadata.get(SPEC_METADATA_KEY)
    return state, parse_spec(text, path) if text is not None else None


_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def _declared_bytes(file: Any) -> int:
    """Bytes the tensors of an open safetensors file declare (shapes x dtype sizes), from its header."""
    total = 0
    for key in file.keys():  # noqa: SIM118 (not a dict)
        piece = file.get_slice(key)
        count = 1
        for n in piece.get_shape():
            count *= int(n)
        total += count * _DTYPE_BYTES.get(piece.get_dtype(), 8)
    return total


def parse_spec(text: str, path: Path) -> ModelSpec:
    try:
        return ModelSpec.from_json(text)
    except ValueError as error:
        raise ValueError(f"{path}: the model spec stored in the file is invalid: {error}") from None


def tensors_only(state: Any, path: Path, where: str = "") -> StateDict:
    """state as a dict of tensors, or ValueError saying what else it holds."""
    if not isinstance(state, Mapping) or not state:
        raise ValueError(f"{path} holds no weights{where} (expected a non-empty state dict)")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(
            f"{path} is not a state dict{where}: entries such as {bad[:3]} are not tensors"
        )
    return dict(state)


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from path, or ValueError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"could not read {what} {path}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} must hold a JSON object")
    return data


def generic_labels(count: int) -> tuple[str, ...]:
    """background, label 1, label 2, ... for models that name no labels."""
    return ("background",) + tuple(f"label {i}" for i in range(1, count))
