"""The model's own input normalisation, inside the module the attacks differentiate through.

Every attack perturbs x, the volume windowed to [0, 1] (see preprocess.prepare), and budgets are
stated on that scale. Models expect other inputs: a bundle's ScaleIntensityRange to [-1, 1],
nnU-Net's z-score after a percentile clip, Auto3DSeg's sigmoid of a range. Putting that map
inside the network module (rather than in preprocessing) keeps one [0, 1] input for every family,
so gradients, budgets and the HU conversion (window width x [0, 1] units) are exact for all.
"""

from __future__ import annotations

import torch

from .spec import ModelSpec


class InputNormalization(torch.nn.Module):
    """network(act(x * scale + shift)); x [B, C, H, W, D] in [0, 1] -> logits [B, K, H, W, D].

    The wrapped network stays reachable as ``.network``; save_model saves that (scale and shift
    are plain floats, not parameters or buffers, and travel in the spec).
    """

    def __init__(self, network: torch.nn.Module, scale: float, shift: float, activation: str = "none") -> None:
        super().__init__()
        self.network = network
        self.scale, self.shift, self.activation = float(scale), float(shift), activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x * self.scale + self.shift
        if self.activation == "sigmoid":
            z = torch.sigmoid(z)
        return self.network(z)

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}, shift={self.shift:g}, activation={self.activation}"


def is_identity(spec: ModelSpec) -> bool:
    """True when the network takes the windowed [0, 1] tensor as it is."""
    return spec.input_scale == 1.0 and spec.input_shift == 0.0 and spec.input_activation == "none"


def with_input_normalization(network: torch.nn.Module, spec: ModelSpec) -> torch.nn.Module:
    """network unchanged when spec's normalisation is the identity, else wrapped."""
    if is_identity(spec):
        return network
    return InputNormalization(network, spec.input_scale, spec.input_shift, spec.input_activation)


def affine_after_window(window: tuple[float, float], out_low: float, out_high: float) -> tuple[float, float]:
    """(scale, shift) mapping x in [0, 1] (window low..high) linearly onto out_low..out_high."""
    return out_high - out_low, out_low


def zscore_after_window(window: tuple[float, float], mean: float, std: float) -> tuple[float, float]:
    """(scale, shift) of (hu - mean) / std for hu = low + x * (high - low): nnU-Net's CT scheme.

    std is floored at 1e-8 as nnU-Net's CTNormalization does.
    """
    low, high = window
    std = max(float(std), 1e-8)
    return (high - low) / std, (low - mean) / std
