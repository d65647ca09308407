"""Running a segmentation model: device choice, model loading, sliding-window inference.

Mixed precision and padding to the network's multiple come from the attacks'
:mod:`..attacks.network`, which the attacks need without the rest of the engine."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..attacks.network import AMP_DTYPES, autocast, predict_logits  # noqa: F401  (re-exported: the job's names)
# The job's label map is the attacks' own (one implementation): [B, 1, H, W, D], the argmax of predict_logits.
from ..attacks.network import predict_labels as segment  # noqa: F401
from ..models import LoadOptions, ModelSpec, load_model, resolve_model, with_input_normalization
from ..models.families import family_of
from ..models.registry import registry_spec

# Load options for callers that only pass a model name (evaluate's case loop); the CLI sets them
# with using_load_options so that --arch, --fold, ... reach every model it loads.
_LOAD_OPTIONS: contextvars.ContextVar[LoadOptions | None] = contextvars.ContextVar("load_options", default=None)


@dataclass
class LoadedModel:
    """A network with the metadata that says how to run it (see :class:`ModelSpec`).

    ``model`` maps the attack's windowed [0, 1] input [B, C, H, W, D] to logits [B, K, H, W, D],
    with the model's own normalisation inside it (see models.normalize).
    """

    model: torch.nn.Module
    spec: ModelSpec
    name: str
    device: torch.device
    family: str = "monai"


@contextlib.contextmanager
def using_load_options(options: LoadOptions) -> Iterator[None]:
    """Within this block, load_segmentation_model uses ``options`` when given none."""
    token = _LOAD_OPTIONS.set(options)
    try:
        yield
    finally:
        _LOAD_OPTIONS.reset(token)


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``
    (Apple's GPU: asked for by name only, as not every operation has an MPS kernel)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {device!r} asked for, but this PyTorch has no Apple GPU (MPS); use --device cpu")
        return dev
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count() > 0:
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but this machine has no CUDA GPU; use --device cpu")
    return dev


def load_segmentation_model(
    name_or_path: str | os.PathLike = "demo-unet",
    device: str | torch.device = "cpu",
    spec: ModelSpec | None = None,
    options: LoadOptions | None = None,
) -> LoadedModel:
    """A registry model (see ``freqadv models``) or any family's file/folder, in eval mode.

    options: --arch, --spec, --fold, ... (see LoadOptions); default: those set with
    using_load_options, else none. The returned model takes the attack's [0, 1] input.
    """
    dev = resolve_device(device) if isinstance(device, str) else device
    options = options or _LOAD_OPTIONS.get() or LoadOptions()
    path = resolve_model(name_or_path)
    if spec is None and options.spec is None and isinstance(name_or_path, str):
        spec = registry_spec(name_or_path)
    family = family_of(path).NAME
    network, spec = load_model(path, spec=spec, device=str(dev), options=options)
    model = with_input_normalization(network, spec).to(dev).eval()
    return LoadedModel(model, spec, str(name_or_path), dev, family)
