"""Build a segmentation network from a ModelSpec: the one build step every family goes through.

MONAI networks (UNETR, SwinUNETR, UNet, SegResNet, DynUNet, SegResNetDS) are built here; other
families' networks (nnU-Net) by a builder that family module owns, named in FAMILY_BUILDERS (a
fixed table of this package's own functions, never a name read from a file).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch
from monai.networks.nets import UNETR, DynUNet, SegResNet, SegResNetDS, SwinUNETR, UNet

from .spec import KNOWN_ARCHS, ModelSpec

NETWORKS: dict[str, type[torch.nn.Module]] = {
    "unetr": UNETR,
    "swinunetr": SwinUNETR,
    "unet": UNet,
    "segresnet": SegResNet,
    "dynunet": DynUNet,
    "segresnetds": SegResNetDS,
}

# arch -> (module of this package, function(spec) -> nn.Module); imported only when needed, so
# an optional dependency (dynamic-network-architectures) is only needed for its family.
FAMILY_BUILDERS: dict[str, tuple[str, str]] = {
    "nnunet": ("FreqAdvSegmentLib.models.families.nnunet", "build_nnunet"),
    "torchscript": ("FreqAdvSegmentLib.models.families.torchscript", "build_torchscript"),
}

# Written out rather than left to MONAI's own defaults, so that a spec with minimal arch_args
# keeps meaning the same network if a MONAI release changes a default.
DEFAULT_ARGS: dict[str, dict[str, Any]] = {
    # MONAI's UNETR defaults (proj_type "conv"); paper_unetr_spec() gives the paper's variant.
    "unetr": {
        "feature_size": 16,
        "hidden_size": 768,
        "mlp_dim": 3072,
        "num_heads": 12,
        "proj_type": "conv",
        "norm_name": "instance",
        "conv_block": True,
        "res_block": True,
        "dropout_rate": 0.0,
    },
    # The MONAI model zoo's BTCV Swin-UNETR (feature_size 48).
    "swinunetr": {
        "feature_size": 48,
        "depths": (2, 2, 2, 2),
        "num_heads": (3, 6, 12, 24),
        "norm_name": "instance",
        "use_checkpoint": False,
    },
    "unet": {
        "channels": (16, 32, 64, 128),
        "strides": (2, 2, 2),
        "num_res_units": 2,
        "norm": "instance",
    },
    "segresnet": {
        "init_filters": 8,
        "blocks_down": (1, 2, 2, 4),
        "blocks_up": (1, 1, 1),
    },
    # A four-level DynUNet (nnU-Net-like); bundles and Auto3DSeg give their own sizes.
    "dynunet": {
        "kernel_size": (3, 3, 3, 3),
        "strides": (1, 2, 2, 2),
        "upsample_kernel_size": (2, 2, 2),
        "norm_name": "instance",
        "res_block": False,
        "deep_supervision": False,
    },
    # Auto3DSeg's SegResNet (segresnet2 algorithm) defaults.
    "segresnetds": {
        "init_filters": 32,
        "blocks_down": (1, 2, 2, 4, 4),
        "norm": "instance",
        "dsdepth": 1,
    },
}


def network_args(spec: ModelSpec) -> dict[str, Any]:
    """Full constructor arguments for spec's network: defaults, then spec.arch_args on top.

    Always 3D (spatial_dims=3). UNETR's img_size defaults to spec.roi_size.
    """
    if spec.arch not in NETWORKS:
        raise ValueError(f"unknown arch {spec.arch!r}; known: {', '.join(KNOWN_ARCHS)}")
    args = {**DEFAULT_ARGS[spec.arch], **spec.arch_args}
    if args.setdefault("spatial_dims", 3) != 3:
        raise ValueError(
            f"arch_args.spatial_dims is {args['spatial_dims']}; FreqAdvSegment works on "
            "volumes only, so leave spatial_dims out (it is 3)"
        )
    if spec.arch == "unetr":
        args.setdefault("img_size", spec.roi_size)
    _check_names(spec.arch, args)
    return args


def build_model(spec: ModelSpec) -> torch.nn.Module:
    """Freshly initialised network for spec, in eval mode, on the CPU.

    Input [B, in_channels, X, Y, Z] -> logits [B, out_channels, X, Y, Z]. X, Y, Z must suit
    the arch: UNETR exactly roi_size; SwinUNETR multiples of 32; UNet multiples of the product of
    its strides; SegResNet multiples of 2**(len(blocks_down) - 1).
    """
    if spec.arch in FAMILY_BUILDERS:
        module, function = FAMILY_BUILDERS[spec.arch]
        return getattr(importlib.import_module(module), function)(spec).eval()
    args = network_args(spec)
    try:
        model = NETWORKS[spec.arch](**args)
    except (ValueError, TypeError, AssertionError) as error:
        raise ValueError(
            f"could not build {spec.arch} from arch_args {spec.arch_args}: {error}"
        ) from error
    return model.eval()


def _check_names(arch: str, args: dict[str, Any]) -> None:
    """ValueError naming arguments the MONAI class does not take (before it raises TypeError)."""
    accepted = set(inspect.signature(NETWORKS[arch]).parameters)
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise ValueError(
            f"{NETWORKS[arch].__name__} does not take argument(s) {unknown} given in arch_args; "
            f"it takes: {', '.join(sorted(accepted))}"
        )
