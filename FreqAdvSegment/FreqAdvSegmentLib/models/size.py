"""How big the network a spec describes would be, found without allocating it.

A model file is untrusted: a 10-byte safetensors whose spec asks for 2^20 channels would make
``build_model`` allocate terabytes before its weights were ever compared with the spec. The
network is built on PyTorch's meta device (shapes only) and its size checked first.
"""

from __future__ import annotations

import torch

from .factory import build_model
from .spec import ModelSpec

# No segmentation network this tool runs comes near this: SwinUNETR-48 is 62 M parameters
# (250 MB); 4 GB of float32 weights is ~1 G parameters.
MAX_WEIGHT_BYTES = 4 << 30


def parameter_count(spec: ModelSpec) -> int | None:
    """Number of parameters of ``spec``'s network, from a meta-device build; None when the
    network cannot be built there (SwinUNETR calls ``.item()`` while building)."""
    try:
        with torch.device("meta"):
            net = build_model(spec)
    except (RuntimeError, NotImplementedError):
        return _swinunetr_estimate(spec) if spec.arch == "swinunetr" else None
    return sum(p.numel() for p in net.parameters()) + sum(b.numel() for b in net.buffers())


def _swinunetr_estimate(spec: ModelSpec) -> int | None:
    """A SwinUNETR's parameters without building it (it cannot be built on the meta device):
    they grow with feature_size squared, 62 M at 48 (MONAI's BTCV model; 60 M counted low here so
    the check never refuses a real model). A spec asking for feature_size 960 needed 5.8 GB before."""
    size = spec.arch_args.get("feature_size", 48)
    if isinstance(size, bool) or not isinstance(size, (int, float)) or size <= 0:
        return None
    return int(60e6 * (size / 48) ** 2)


def check_network_size(spec: ModelSpec, max_bytes: int = MAX_WEIGHT_BYTES, source: str = "the model") -> None:
    """ValueError if ``spec``'s network would hold more than ``max_bytes`` of float32 weights.

    Call before ``build_model`` on any spec read from a file. Raises ValueError for specs that
    cannot be built at all (as ``build_model`` does).
    """
    count = parameter_count(spec)
    if count is not None and 4 * count > max_bytes:
        raise ValueError(
            f"{source}: its spec describes a {spec.arch} of {count:,} parameters "
            f"({4 * count / 2**30:,.1f} GiB of weights), over the {max_bytes / 2**30:.0f} GiB limit; "
            f"the spec (arch_args) is wrong or the file is not a real model"
        )
