"""The common base of every attack: input checks, the model's loss gradient, sliding windows.

Usage is torchattacks-style::

    attack = PGD(model, eps=4 / 255, steps=20)
    x_adv = attack(images, labels)          # images [B, 1, H, W, D] in [0, 1]
    result = attack.run(images, labels)     # x_adv plus what a user wants to inspect

``labels`` may be ``None``: the attack then works against the model's own clean prediction,
which is what a radiologist without ground truth needs.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .losses import SegLoss, paper_dice_ce
from .network import AMP_DTYPES, BLEND_MODES, autocast, predict_labels
from .padding import padded_forward
from .windows import batched, pad_amounts, window_grid

Progress = Callable[[int, int], None]
"""Called as progress(done, total) after each attack step; raising from it cancels the attack."""


@dataclass
class AttackResult:
    """What an attack produced.

    Attributes:
        adv: adversarial images [B, C, H, W, D] in [0, 1].
        clean: the clean images [B, C, H, W, D] (a copy of the input).
        labels: the labels attacked [B, 1, H, W, D] (ground truth, or the clean prediction).
        history: one dict per step (e.g. ``{"step": 3, "loss": 0.9, "ssim": 0.98}``).
        extras: attack-specific state, e.g. VAFA's final quantisation tables under ``"q_tables"``.
    """

    adv: torch.Tensor
    clean: torch.Tensor
    labels: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def perturbation(self) -> torch.Tensor:
        """adv - clean, [B, C, H, W, D], in normalised [0, 1] units."""
        return self.adv - self.clean


class AttackInputError(ValueError):
    """An input the attack cannot work on; the message says what was wrong and what to do."""


def _finite_arguments(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` with a ValueError first for any number argument that is NaN or infinite."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def checked(self, *args: Any, **kwargs: Any) -> None:
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:
            return init(self, *args, **kwargs)  # let Python say what is wrong with the call
        for name, value in bound.arguments.items():
            values = value.items() if isinstance(value, dict) and name != "self" else [(name, value)]
            for key, item in values:
                if isinstance(item, (float, np.floating)) and not math.isfinite(item):
                    raise ValueError(f"{type(self).__name__}: {key} must be a finite number, got {item}")
        return init(self, *args, **kwargs)

    checked._checks_finite = True  # type: ignore[attr-defined]
    return checked


class Attack:
    """Base class. Subclasses implement :meth:`_attack`.

    Args:
        model: a segmentation network mapping [N, C, h, w, d] to logits [N, K, h, w, d].
        roi_size: window size for whole-volume attacks; ``None`` feeds the whole volume at once.
        overlap: overlap of neighbouring windows, in [0, 1).
        sw_batch_size: windows per forward/backward pass; bounds the memory.
        loss: the loss to maximise (default: the paper's DiceCE).
        amp: ``"bf16"`` or ``"fp16"`` for autocast of the model's passes (fp16 on CUDA only).
        seed: seeds the attack's own randomness (random starts, noise) for repeatable runs.
        mode: how the model's windows are placed and blended, as it was validated: "gaussian"
            or "constant" (MONAI's inferer) or "nnunet" (nnU-Net's tile rule and Gaussian); the
            attack's windows and its clean prediction follow it.
    """

    name = "attack"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every attack's constructor refuses a NaN or infinite number (eps=nan gave all-NaN
        # volumes silently), without each attack repeating the check.
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_checks_finite", False):
            cls.__init__ = _finite_arguments(init)

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        roi_size: Sequence[int] | None = None,
        overlap: float = 0.25,
        sw_batch_size: int = 4,
        loss: SegLoss | None = None,
        amp: str | None = None,
        seed: int | None = None,
        mode: str = "gaussian",
    ) -> None:
        if amp is not None and amp not in AMP_DTYPES:
            raise ValueError(f"amp must be None, 'bf16' or 'fp16', got {amp!r}")
        if roi_size is not None and len(roi_size) != 3:
            raise ValueError(f"roi_size needs three sides (h, w, d), got {roi_size!r}")
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        if mode not in BLEND_MODES:
            raise ValueError(f"mode must be one of {list(BLEND_MODES)}, got {mode!r}")
        self.model = model
        self.roi_size = tuple(int(r) for r in roi_size) if roi_size is not None else None
        self.overlap = float(overlap)
        self.sw_batch_size = int(sw_batch_size)
        self.loss_fn: SegLoss = loss if loss is not None else paper_dice_ce()
        self.amp = amp
        self.seed = seed
        self.mode = mode
        self.generator: torch.Generator | None = None

    # --- public API -------------------------------------------------------------------------

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Adversarial images [B, C, H, W, D] in [0, 1]."""
        return self.run(images, labels).adv

    def run(
        self, images: torch.Tensor, labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> AttackResult:
        """Attack ``images`` [B, C, H, W, D] in [0, 1] against ``labels`` [B, 1, H, W, D] or the
        model's clean prediction when ``labels`` is None. The inputs are never modified."""
        check_images(images, self.model)
        device = _model_device(self.model)
        x = images.detach().to(device=device, dtype=torch.float32).clone()
        self.generator = _generator(device, self.seed)
        with _frozen_eval(self.model), _explain_oom(x.shape, device):
            if labels is None:
                y = self.predict(x)
            else:
                check_labels(labels, images)
                y = labels.detach().to(device=device, dtype=torch.long).clone()
            self._tick(progress, 0, int(getattr(self, "steps", 1)))  # show the bar before step 1
            result = self._attack(x, y, progress)
        result.adv = result.adv.detach()
        return result

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The model's label map [B, 1, H, W, D] for images [B, C, H, W, D] (sliding window if set)."""
        return predict_labels(self.model, x, self.roi_size, self.overlap, self.sw_batch_size, self.amp, self.mode)

    # --- for subclasses ---------------------------------------------------------------------

    def _attack(self, x: torch.Tensor, y: torch.Tensor, progress: Progress | None) -> AttackResult:
        raise NotImplementedError

    def loss_grad(
        self, x_adv: torch.Tensor, y: torch.Tensor, loss_fn: SegLoss | None = None
    ) -> tuple[float, torch.Tensor]:
        """The attack loss at ``x_adv`` and its gradient with respect to ``x_adv``.

        Args:
            x_adv: [B, C, H, W, D] (treated as a constant: callers chain the gradient themselves).
            y: labels [B, 1, H, W, D].
        Returns:
            (loss, grad) with grad [B, C, H, W, D]. In sliding-window mode the loss is the mean of
            the per-window losses, and grad accumulates over windows batch by batch, so memory is
            bounded by ``sw_batch_size`` windows, never by the volume.
        """
        loss_fn = loss_fn or self.loss_fn
        leaf = x_adv.detach().requires_grad_(True)
        if self.roi_size is None:
            loss = self._window_loss(leaf, y, loss_fn)
            (grad,) = torch.autograd.grad(self._scaled(loss), leaf)
            return float(loss.detach()), self._unscaled(grad)
        return self._sliding_loss_grad(leaf, y, loss_fn)

    def _sliding_loss_grad(
        self, leaf: torch.Tensor, y: torch.Tensor, loss_fn: SegLoss
    ) -> tuple[float, torch.Tensor]:
        pads = pad_amounts(leaf.shape[2:], self.roi_size)
        y_pad = F.pad(y, pads)  # padding labels are background; they only fill the ROI
        windows = window_grid(y_pad.shape[2:], self.roi_size, self.overlap, self.mode)
        grad = torch.zeros_like(leaf)
        total = 0.0
        for group in batched(windows, self.sw_batch_size):
            # Pad inside the graph so gradients of padded windows flow back to the real voxels.
            x_pad = F.pad(leaf, pads, mode="replicate") if any(pads) else leaf
            xs = torch.cat([x_pad[(..., *w)] for w in group])
            ys = torch.cat([y_pad[(..., *w)] for w in group])
            # Weighting by the group's share makes the sum over groups the mean over windows.
            loss = self._window_loss(xs, ys, loss_fn) * (len(group) / len(windows))
            (g,) = torch.autograd.grad(self._scaled(loss), leaf)
            grad += self._unscaled(g)
            total += float(loss.detach())
        return total, grad

    def _window_loss(self, x: torch.Tensor, y: torch.Tensor, loss_fn: SegLoss) -> torch.Tensor:
        with self._autocast():
            logits = padded_forward(self.model, x)  # sides the model cannot take are padded, logits cropped
        check_logits(logits, x, y)
        return loss_fn(logits.float(), y)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(_model_device(self.model), self.amp)

    # fp16 gradients of a small loss can underflow; a fixed scale keeps their sign intact.
    def _scaled(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * 1024.0 if self.amp == "fp16" else loss

    def _unscaled(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.float() / 1024.0 if self.amp == "fp16" else grad.float()

    def _tick(self, progress: Progress | None, done: int, total: int) -> None:
        if progress is not None:
            progress(done, total)


# --- input checks ---------------------------------------------------------------------------


def check_images(images: torch.Tensor, model: torch.nn.Module | None = None) -> None:
    """Raise :class:`AttackInputError` unless ``images`` is a finite [B, C, H, W, D] tensor in [0, 1]
    whose channel count the model takes."""
    if not isinstance(images, torch.Tensor):
        raise AttackInputError(f"images must be a torch.Tensor [B, 1, H, W, D], got {type(images).__name__}")
    if images.ndim != 5:
        hint = " (a 2D image?)" if images.ndim <= 4 else ""
        raise AttackInputError(
            f"images must be 5D [B, C, H, W, D] volumes, got shape {tuple(images.shape)}{hint}; "
            "add batch and channel axes with images[None, None] for a single [H, W, D] volume"
        )
    if not images.is_floating_point():
        raise AttackInputError(f"images must be floating point in [0, 1], got dtype {images.dtype}")
    bad = (~torch.isfinite(images)).sum().item()
    if bad:
        raise AttackInputError(f"images contain {bad} NaN/Inf voxels; clean or mask them before attacking")
    lo, hi = images.min().item(), images.max().item()
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise AttackInputError(
            f"images must be normalised to [0, 1], got values in [{lo:.4g}, {hi:.4g}]; "
            "window the CT first (e.g. -175..250 HU -> [0, 1])"
        )
    expected = model_in_channels(model) if model is not None else None
    if expected is not None and images.shape[1] != expected:
        raise AttackInputError(f"the model takes {expected} input channel(s), the images have {images.shape[1]}")


def check_labels(labels: torch.Tensor, images: torch.Tensor) -> None:
    """Raise :class:`AttackInputError` unless ``labels`` is an integer-valued [B, 1, H, W, D] map
    matching ``images``."""
    if not isinstance(labels, torch.Tensor):
        raise AttackInputError(f"labels must be a torch.Tensor [B, 1, H, W, D] or None, got {type(labels).__name__}")
    want = (images.shape[0], 1, *images.shape[2:])
    if tuple(labels.shape) != want:
        raise AttackInputError(f"labels must have shape {want} to match the images, got {tuple(labels.shape)}")
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise AttackInputError("labels must hold integer class indices, not probabilities or one-hot")
    if labels.min() < 0:
        raise AttackInputError(f"labels must be >= 0, got a minimum of {labels.min().item()}")


def check_logits(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
    """The model must segment: logits [N, K, h, w, d] on the input's grid, with K > max label."""
    if logits.ndim != 5 or logits.shape[2:] != x.shape[2:]:
        raise AttackInputError(
            f"the model returned shape {tuple(logits.shape)} for input {tuple(x.shape)}; "
            "a segmentation model must return logits [N, K, H, W, D] on the input's grid"
        )
    if y.max() >= logits.shape[1]:
        raise AttackInputError(
            f"labels go up to {int(y.max())} but the model predicts only {logits.shape[1]} classes"
        )


def model_in_channels(model: torch.nn.Module) -> int | None:
    """Input channels of the model's first 3D convolution, or None if it has none."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv3d):
            return module.in_channels
    return None


# --- helpers --------------------------------------------------------------------------------


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _generator(device: torch.device, seed: int | None) -> torch.Generator:
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    return gen


@contextlib.contextmanager
def _frozen_eval(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients during the attack; the model's state comes back after."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train(was_training)


@contextlib.contextmanager
def _explain_oom(shape: torch.Size, device: torch.device) -> Iterator[None]:
    try:
        yield
    except torch.OutOfMemoryError as err:
        raise MemoryError(
            f"a volume of shape {tuple(shape)} does not fit in {device} memory; attack it with "
            "sliding windows (roi_size=(96, 96, 96), or --roi on the command line) and a smaller "
            "sw_batch_size, or use the CPU"
        ) from err


def eps_from_255(value: float) -> float:
    """Convert the paper's 0-255 units (e.g. eps = 4) to this package's [0, 1] scale."""
    return float(value) / 255.0
