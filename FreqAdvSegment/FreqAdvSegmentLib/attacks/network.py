"""Running the network an attack works against: mixed precision, and whole-volume prediction.

An attack needs the model's clean prediction (the labels it attacks when there is no ground
truth) and its logits under autocast. This lives here, inside ``attacks/``, so that the attacks
depend on nothing else in the engine; the job's inference (:mod:`..job.inference`) builds on it.

    with autocast(device, "bf16"):
        logits = padded_forward(model, x)               # see .padding
    labels = predict_labels(model, x, roi_size=(96, 96, 96))   # [B, 1, H, W, D]
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from .padding import padded_forward
from .windows import batched, window_grid

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Window blending: MONAI's two, and nnU-Net's tiles and Gaussian (see nnunet_sliding_logits).
BLEND_MODES = ("gaussian", "constant", "nnunet")


def autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    """Autocast for ``amp`` in (None, "bf16", "fp16"); fp16 only on CUDA."""
    if amp is None:
        return contextlib.nullcontext()
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be None, 'bf16' or 'fp16', got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("fp16 autocast needs a CUDA device; use amp='bf16' or None on CPU")
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp])


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    x: torch.Tensor,
    roi_size: Sequence[int] | None,
    overlap: float = 0.25,
    sw_batch_size: int = 2,
    amp: str | None = None,
    mode: str = "gaussian",
) -> torch.Tensor:
    """Logits [B, K, H, W, D] (float32) for images [B, C, H, W, D]: one padded pass when
    ``roi_size`` is None, else sliding windows of ``roi_size`` blended by ``mode``: "gaussian"
    or "constant" (MONAI's inferer), or "nnunet" (:func:`nnunet_sliding_logits`)."""
    device = next(model.parameters()).device
    x = x.to(device)
    with autocast(device, amp):
        if roi_size is None:
            logits = padded_forward(model, x)  # padded to the model's multiple, cropped back
        elif mode == "nnunet":
            logits = nnunet_sliding_logits(model, x, tuple(roi_size), overlap, sw_batch_size)
        else:
            logits = sliding_window_inference(x, tuple(roi_size), sw_batch_size, model, overlap=overlap, mode=mode)
    return logits.float()


def nnunet_gaussian(roi_size: Sequence[int], device: torch.device) -> torch.Tensor:
    """nnU-Net's tile weights [X, Y, Z]: a Gaussian of sigma 1/8 of the tile, peak 10, float16.

    Unlike MONAI's "gaussian" mode it has no 1e-3 floor: nnU-Net's tails fall to ~1e-10, and
    where two tiles overlap near their edges that changes the blend a great deal. Zeros (float16
    underflow) become the smallest non-zero weight, as nnU-Net does.
    """
    from scipy.ndimage import gaussian_filter

    impulse = np.zeros(tuple(roi_size))
    impulse[tuple(size // 2 for size in roi_size)] = 1
    weights = torch.from_numpy(gaussian_filter(impulse, [size / 8 for size in roi_size], 0, mode="constant", cval=0))
    weights = (weights / (weights.max() / 10)).to(torch.float16)
    weights[weights == 0] = weights[weights != 0].min()
    return weights.float().to(device)


def nnunet_sliding_logits(
    model: torch.nn.Module, x: torch.Tensor, roi_size: tuple[int, int, int], overlap: float, sw_batch_size: int
) -> torch.Tensor:
    """Logits [B, K, H, W, D] for x [B, C, H, W, D] as nnUNetPredictor computes them.

    Its tile placement (:func:`~..attacks.windows.nnunet_axis_starts`, tile step = 1 - overlap),
    its Gaussian (:func:`nnunet_gaussian`), and its padding of a volume smaller than a tile:
    centred, with the value the network sees as 0 after its normalisation (nnU-Net pads the
    normalised image with 0). MONAI's inferer places tiles by another rule, which changed a
    quarter of a real CT's voxels against nnU-Net's own output.
    """
    pads = centred_pad_amounts(x.shape[2:], roi_size)
    padded = torch.nn.functional.pad(x, pads, value=normalised_zero(model)) if any(pads) else x
    weights = nnunet_gaussian(roi_size, x.device)
    windows = window_grid(padded.shape[2:], roi_size, overlap, mode="nnunet")
    logits: torch.Tensor | None = None
    counts = torch.zeros(padded.shape[2:], device=x.device)
    for group in batched(windows, sw_batch_size):
        out = model(torch.cat([padded[(..., *w)] for w in group])).float()  # [n*B, K, *roi]
        if logits is None:
            logits = torch.zeros((x.shape[0], out.shape[1], *padded.shape[2:]), device=x.device)
        for i, w in enumerate(group):
            logits[(..., *w)] += out[i * x.shape[0] : (i + 1) * x.shape[0]] * weights
            counts[w] += weights
    logits = logits / counts
    h, w, d = x.shape[2:]
    return logits[..., pads[4] : pads[4] + h, pads[2] : pads[2] + w, pads[0] : pads[0] + d]


def centred_pad_amounts(shape: Sequence[int], roi: Sequence[int]) -> tuple[int, ...]:
    """F.pad amounts (last axis first) growing ``shape`` to ``roi``, split as nnU-Net splits them
    (half below, the odd voxel above)."""
    pads: list[int] = []
    for n, r in reversed(list(zip(shape, roi))):
        extra = max(r - n, 0)
        pads += [extra // 2, extra - extra // 2]
    return tuple(pads)


def normalised_zero(model: torch.nn.Module) -> float:
    """The [0, 1] input value the network receives as 0 (its normalisation's zero), else 0."""
    scale, shift = getattr(model, "scale", None), getattr(model, "shift", None)
    if getattr(model, "activation", "none") != "none" or not scale:
        return 0.0
    return -float(shift) / float(scale)


def predict_labels(
    model: torch.nn.Module,
    x: torch.Tensor,
    roi_size: Sequence[int] | None,
    overlap: float = 0.25,
    sw_batch_size: int = 2,
    amp: str | None = None,
    mode: str = "gaussian",
) -> torch.Tensor:
    """Label map [B, 1, H, W, D]: the argmax of :func:`predict_logits`."""
    return predict_logits(model, x, roi_size, overlap, sw_batch_size, amp, mode).argmax(1, keepdim=True)
