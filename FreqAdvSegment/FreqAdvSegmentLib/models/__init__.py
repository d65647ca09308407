"""The model layer: which network (ModelSpec), building it (MONAI), saving and loading weights.

    from FreqAdvSegmentLib.models import load_model, resolve_model
    model, spec = load_model(resolve_model("demo-unet"))

Modules: spec (ModelSpec, no torch), factory (the one build step), checkpoint (safe save/load),
families/ (one file per model family: monai_checkpoint, bundle, nnunet, auto3dseg, torchscript),
normalize (the model's own normalisation inside the attacked module), remap (fitting foreign
state dicts, MONAI 0.7 UNETR), registry (resources/Models.json).
"""

from .checkpoint import load_model, save_model
from .factory import build_model
from .families import LoadOptions, family_of
from .normalize import with_input_normalization
from .registry import list_models, registry_spec, resolve_model
from .spec import ModelSpec, paper_unetr_spec

__all__ = [
    "ModelSpec",
    "LoadOptions",
    "family_of",
    "with_input_normalization",
    "paper_unetr_spec",
    "build_model",
    "save_model",
    "load_model",
    "list_models",
    "resolve_model",
    "registry_spec",
]
