"""Save and load segmentation models without ever running code stored in a file.

Formats read:
- ``.safetensors`` written by save_model (the ModelSpec is in its metadata);
- ``.pt`` / ``.pth`` / ``.ckpt`` / ``.bin`` PyTorch files, read only with
  ``torch.load(weights_only=True)``: a raw state dict, or one under "state_dict",
  "model_state_dict" or "model" (optionally with a "spec" entry holding ModelSpec JSON);
- a MONAI bundle folder (configs/inference.json + models/model.pt).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .bundle import bundle_spec, bundle_weights, is_bundle
from .factory import build_model
from .size import check_network_size
from .remap import StateDict, fit_state_dict, guess_arch, strip_wrapper_prefixes
from .spec import ModelSpec

SPEC_METADATA_KEY = "freqadv_spec"
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
# Where training scripts put the weights inside a checkpoint dict, in order of preference.
STATE_KEYS = ("state_dict", "model_state_dict", "model")


def save_model(path: str | os.PathLike, model: torch.nn.Module, spec: ModelSpec) -> Path:
    """Write model's weights and spec to a .safetensors file, atomically.

    The spec JSON goes in the file's metadata under "freqadv_spec". The file is written to a
    temporary name in the same folder and then renamed, so a crash never leaves a half-written
    model where a good one was. Raises ValueError if the weights do not fit spec.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save_model writes .safetensors files; got {path.name!r}")
    state = strip_wrapper_prefixes(model.state_dict())
    _check_fits(state, spec, str(path))
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, tensors, {SPEC_METADATA_KEY: spec.to_json(), "format": "pt"})
    return path


def load_model(
    path: str | os.PathLike,
    spec: ModelSpec | None = None,
    device: str | torch.device = "cpu",
) -> tuple[torch.nn.Module, ModelSpec]:
    """Build the network and load its weights; returns (model in eval mode on device, spec).

    spec: overrides any spec found in the file; required for files that carry none (plain
    .pt state dicts such as the paper's checkpoints; see paper_unetr_spec()).
    Raises FileNotFoundError for a missing path and ValueError for anything unreadable, for a
    missing spec, or for weights that do not fit the spec (naming the parameters).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file or folder not found: {path}")
    state, found_spec = _read(path, want_spec=spec is None)
    spec = spec if spec is not None else found_spec
    if spec is None:
        raise ValueError(_no_spec_message(path, state))
    check_network_size(spec, source=str(path.name))  # before allocating what an untrusted spec asks
    model = build_model(spec)
    state = fit_state_dict(state, model.state_dict(), spec.arch, source=str(path))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), spec


# ---- reading


def _read(path: Path, want_spec: bool) -> tuple[StateDict, ModelSpec | None]:
    """(state dict, spec stored with it or None) for any supported file or folder."""
    if path.is_dir():
        if not is_bundle(path):
            raise ValueError(f"{path} is a folder but not a MONAI bundle (no configs/ inside)")
        spec = bundle_spec(path) if want_spec else None  # first: its errors say more
        state, _ = _read_torch(bundle_weights(path))
        return state, spec
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    if path.suffix in TORCH_SUFFIXES:
        return _read_torch(path)
    raise ValueError(
        f"{path.name}: unsupported model file type {path.suffix!r}; use .safetensors, "
        f"{', '.join(TORCH_SUFFIXES)} or a MONAI bundle folder"
    )


def _read_safetensors(path: Path) -> tuple[StateDict, ModelSpec | None]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as file:
            metadata = file.metadata() or {}
            state = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118 (not a dict)
    except Exception as error:  # any failure means: not a readable safetensors file
        raise ValueError(f"could not read {path} as a safetensors file: {error}") from None
    text = metadata.get(SPEC_METADATA_KEY)
    return state, _parse_spec(text, path) if text is not None else None


def _read_torch(path: Path) -> tuple[StateDict, ModelSpec | None]:
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # weights_only refusals, corrupt zips, random bytes alike
        raise ValueError(_unsafe_message(path, error)) from None
    return _unwrap(content, path)


def _numpy_scalar_globals() -> list[Any]:
    """Allow numpy scalars such as a float64 "best_acc" beside the weights.

    Training scripts (the paper's trainer.py included) store np.mean(...) results in their
    checkpoints; weights_only refuses those by default. Rebuilding a scalar from a dtype and
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


def _unwrap(content: Any, path: Path) -> tuple[StateDict, ModelSpec | None]:
    """Find the state dict (and optional "spec" JSON) inside what torch.load returned."""
    if not isinstance(content, Mapping):
        raise ValueError(f"{path} holds a {type(content).__name__}, not a state dict")
    spec_text = content.get("spec")
    spec = _parse_spec(spec_text, path) if isinstance(spec_text, str) else None
    state = next(
        (content[k] for k in STATE_KEYS if isinstance(content.get(k), Mapping)),
        {k: v for k, v in content.items() if k != "spec"},
    )
    if not state:
        raise ValueError(f"{path} holds no weights (an empty state dict)")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(
            f"{path} is not a state dict: entries such as {bad[:3]} are not tensors; expected "
            f"parameter tensors, directly or under one of {list(STATE_KEYS)}"
        )
    return dict(state), spec


def _parse_spec(text: str, path: Path) -> ModelSpec:
    try:
        return ModelSpec.from_json(text)
    except ValueError as error:
        raise ValueError(f"{path}: the model spec stored in the file is invalid: {error}") from None


# ---- messages and checks


def _unsafe_message(path: Path, error: Exception) -> str:
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


def _no_spec_message(path: Path, state: StateDict) -> str:
    guessed = guess_arch(list(strip_wrapper_prefixes(state)))
    hint = f" Its parameter names look like a {guessed}." if guessed else ""
    return (
        f"{path} holds weights but no model spec, so the network to build is unknown: pass "
        "spec=ModelSpec(...) (paper_unetr_spec() for the paper's UNETR checkpoints), or "
        f"--arch on the command line.{hint}"
    )


def _check_fits(state: StateDict, spec: ModelSpec, source: str) -> None:
    source = f"the model being saved to {source}"
    fit_state_dict(state, _reference_state(spec), spec.arch, source=source)


def _reference_state(spec: ModelSpec) -> StateDict:
    """State dict of a fresh network for spec; only its names and shapes are used."""
    try:
        # The meta device skips allocation and initialisation (UNETR: ~370 MB, ~1 s)...
        with torch.device("meta"):
            return build_model(spec).state_dict()
    except RuntimeError:
        # ...but SwinUNETR calls .item() while building, which meta tensors cannot do.
        return build_model(spec).state_dict()


def _write_atomically(path: Path, tensors: StateDict, metadata: dict[str, str]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a saved model is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
