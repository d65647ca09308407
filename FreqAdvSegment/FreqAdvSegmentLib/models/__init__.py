"""The model layer: which network (ModelSpec), building it (MONAI), saving and loading weights.

    from FreqAdvSegmentLib.models import load_model, resolve_model
    model, spec = load_model(resolve_model("demo-unet"))

Modules: spec (ModelSpec, no torch), factory (MONAI networks), checkpoint (safe save/load),
remap (fitting foreign state dicts, MONAI 0.7 UNETR), bundle (MONAI bundle folders, read only),
registry (resources/Models.json).
"""

from .checkpoint import load_model, save_model
from .factory import build_model
from .registry import list_models, registry_spec, resolve_model
from .spec import ModelSpec, paper_unetr_spec

__all__ = [
    "ModelSpec",
    "paper_unetr_spec",
    "build_model",
    "save_model",
    "load_model",
    "list_models",
    "resolve_model",
    "registry_spec",
]
