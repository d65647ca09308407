"""Family: a MONAI network's weights in one file (.safetensors, or a PyTorch state dict).

- ``.safetensors`` written by save_model / ``freqadv models import`` carry their ModelSpec.
- ``.pt`` / ``.pth`` / ``.ckpt`` / ``.bin``: a raw state dict, or one under "state_dict",
  "model_state_dict" or "model", optionally with a "spec" entry holding ModelSpec JSON.
  Files without a spec need one from the user (--spec, or --arch for default arguments).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...organs import BTCV_LABELS
from ..remap import guess_arch, strip_wrapper_prefixes
from ..spec import ModelSpec
from .common import (
    LoadOptions,
    Source,
    StateDict,
    generic_labels,
    parse_spec,
    read_safetensors,
    read_torch,
    tensors_only,
)

NAME = "monai"
DESCRIPTION = "MONAI network weights: .safetensors (with spec) or a .pt/.pth state dict"
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
SUFFIXES = (".safetensors", *TORCH_SUFFIXES)
# Where training scripts put the weights inside a checkpoint dict, in order of preference.
STATE_KEYS = ("state_dict", "model_state_dict", "model")


def detect(path: Path) -> bool:
    """A single weights file."""
    return path.is_file() and path.suffix in SUFFIXES


def read(path: Path, options: LoadOptions) -> Source:
    """Weights and spec: options.spec, else the file's own, else one built from options.arch."""
    if path.suffix == ".safetensors":
        state, found = read_safetensors(path)
    else:
        state, found = unwrap(read_torch(path), path)
    spec = options.spec or found or spec_from_arch(options.arch, state)
    if spec is None:
        raise ValueError(no_spec_message(path, state))
    return Source(spec, state, NAME)


def unwrap(content: Any, path: Path) -> tuple[StateDict, ModelSpec | None]:
    """Find the state dict (and optional "spec" JSON) inside what torch.load returned."""
    if not isinstance(content, Mapping):
        raise ValueError(f"{path} holds a {type(content).__name__}, not a state dict")
    spec_text = content.get("spec")
    spec = parse_spec(spec_text, path) if isinstance(spec_text, str) else None
    state = next(
        (content[k] for k in STATE_KEYS if isinstance(content.get(k), Mapping)),
        {k: v for k, v in content.items() if k != "spec"},
    )
    if state and not all(hasattr(v, "shape") for v in state.values()):
        bad = [k for k, v in state.items() if not hasattr(v, "shape")]
        raise ValueError(
            f"{path} is not a state dict: entries such as {bad[:3]} are not tensors; expected "
            f"parameter tensors, directly or under one of {list(STATE_KEYS)}"
        )
    return tensors_only(state, path), spec


def spec_from_arch(arch: str | None, state: StateDict) -> ModelSpec | None:
    """ModelSpec(arch) with the channel counts read off the weights, or None without an arch.

    Only the first and last convolutions are looked at; everything else keeps the arch's
    defaults, and a mismatch is reported by the state-dict fit (naming the parameters).
    """
    if arch is None:
        return None
    channels = _channel_counts(state)
    if channels is None:
        return ModelSpec(arch=arch)
    in_channels, out_channels = channels
    labels = BTCV_LABELS if out_channels == len(BTCV_LABELS) else generic_labels(out_channels)
    return ModelSpec(arch=arch, arch_args={"in_channels": in_channels, "out_channels": out_channels}, label_names=labels)


def _channel_counts(state: StateDict) -> tuple[int, int] | None:
    # 5-D weights are 3-D convolutions: [out, in, k, k, k], but transposed ones are
    # [in, out, k, k, k]; a bias is [out] either way, so the last layer's bias decides.
    state = strip_wrapper_prefixes(state)
    convs = [(k, v) for k, v in state.items() if k.endswith("weight") and v.ndim == 5]
    if not convs:
        return None
    (_, first), (last_key, last) = convs[0], convs[-1]
    bias = state.get(last_key[: -len("weight")] + "bias")
    out_channels = int(bias.shape[0]) if bias is not None and bias.ndim == 1 else int(last.shape[0])
    return int(first.shape[1]), out_channels


def no_spec_message(path: Path, state: StateDict) -> str:
    guessed = guess_arch(list(strip_wrapper_prefixes(state)))
    hint = f" Its parameter names look like a {guessed}: try --arch {guessed}." if guessed else ""
    return (
        f"{path} holds weights but no model spec, so the network to build is unknown: pass "
        "--arch NAME (default arguments) or --spec SPEC.json (spec=ModelSpec(...) in Python; "
        f"paper_unetr_spec() for the paper's UNETR checkpoints).{hint}"
    )
