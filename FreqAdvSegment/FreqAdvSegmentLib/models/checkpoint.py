"""Save and load segmentation models without ever running code stored in a file.

save_model writes .safetensors with the ModelSpec in its metadata. load_model reads any model
family's source (models.families: safetensors / .pt state dicts, MONAI bundles, nnU-Net v2
folders, Auto3DSeg model.pt; TorchScript only when trusted), builds the network with the one
build step (factory.build_model) and loads the weights strictly.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..files.atomic_file import replace_file
from .factory import build_model
from .size import check_network_size
from .families import LoadOptions, read_source
from .families.common import SPEC_METADATA_KEY
from .normalize import InputNormalization
from .remap import StateDict, fit_state_dict, strip_wrapper_prefixes
from .spec import ModelSpec


def save_model(path: str | os.PathLike, model: torch.nn.Module, spec: ModelSpec) -> Path:
    """Write model's weights and spec to a .safetensors file, atomically.

    The spec JSON goes in the file's metadata under "freqadv_spec". The file is written to a
    temporary name in the same folder and then renamed, so a crash never leaves a half-written
    model where a good one was. Raises ValueError if the weights do not fit spec.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save_model writes .safetensors files; got {path.name!r}")
    if isinstance(model, InputNormalization):  # the normalisation travels in the spec
        model = model.network
    if spec.arch == "torchscript":
        raise ValueError("a TorchScript model cannot be saved as weights + spec; save its state dict from Python")
    state = strip_wrapper_prefixes(model.state_dict())
    _check_fits(state, spec, str(path))
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in _drop_aliases(state).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, tensors, {SPEC_METADATA_KEY: spec.to_json(), "format": "pt"})
    return path


def load_model(
    path: str | os.PathLike,
    spec: ModelSpec | None = None,
    device: str | torch.device = "cpu",
    options: LoadOptions | None = None,
) -> tuple[torch.nn.Module, ModelSpec]:
    """Build the network and load its weights; returns (model in eval mode on device, spec).

    Any family's source (see models.families): a .safetensors or .pt file, a MONAI bundle, an
    nnU-Net folder, an Auto3DSeg model.pt, TorchScript with options.trust_model_code.
    spec: overrides any spec found in the source; required for files that carry none (plain
    .pt state dicts such as the paper's checkpoints; see paper_unetr_spec()), unless
    options.arch names the network. The model takes the network's own input (see
    normalize.with_input_normalization for the attack's [0, 1] one).
    Raises FileNotFoundError for a missing path and ValueError for anything unreadable, for a
    missing spec, or for weights that do not fit the spec (naming the parameters).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file or folder not found: {path}")
    options = options or LoadOptions()
    if spec is not None:
        options = replace(options, spec=spec)
    source = read_source(path, options)
    if source.module is not None:  # TorchScript: a ready module, nothing to build
        return source.module.to(device).eval(), source.spec
    check_network_size(source.spec, source=str(path.name))  # before allocating what an untrusted spec asks
    model = build_model(source.spec)
    state = _fill_aliases(strip_wrapper_prefixes(source.state), model)
    state = fit_state_dict(state, model.state_dict(), source.spec.arch, source=str(path))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), source.spec


# ---- tensors under several names (nnU-Net: decoder.encoder is the encoder; all_modules.0 is conv)


def _alias_groups(state: StateDict) -> list[list[str]]:
    """Keys whose tensors are the same parameter, in state-dict order; groups of two or more."""
    groups: dict[tuple[int, tuple[int, ...]], list[str]] = {}
    for key, value in state.items():
        groups.setdefault((value.data_ptr(), tuple(value.shape)), []).append(key)
    return [keys for keys in groups.values() if len(keys) > 1 and state[keys[0]].numel()]


def _drop_aliases(state: StateDict) -> StateDict:
    """state with only the first name of each shared tensor (safetensors stores each once)."""
    dropped = {key for keys in _alias_groups(state) for key in keys[1:]}
    return {k: v for k, v in state.items() if k not in dropped}


def _fill_aliases(state: StateDict, model: torch.nn.Module) -> StateDict:
    """Names the model shares with a name present in state get that tensor too."""
    state = dict(state)
    for keys in _alias_groups(model.state_dict()):
        present = next((k for k in keys if k in state), None)
        for key in keys:
            if present is not None and key not in state:
                state[key] = state[present]
    return state


# ---- messages and checks


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
    replace_file(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
