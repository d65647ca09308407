"""What a training run is: the regime, the data, the optimisation and the bookkeeping.

A :class:`TrainConfig` is plain data (JSON values only). It is written to ``config.json`` in the
run folder and into every training checkpoint, so ``--resume`` continues with exactly the
settings the run started with; :func:`check_resume_compatible` names any setting that a resumed
run would change and that changes the mathematics.

Regimes (Hanif et al., MICCAI 2023; PAPER.md section 2), derived from the attack registry:

| regime    | paper name  | loss per mini-batch                                           |
|-----------|-------------|---------------------------------------------------------------|
| natural   | clean model | DiceCE(M(x), y)                                               |
| NAME (every trainable attack: vafa, pgd, fgsm, ...) | M_VAFA, M_PGD ... | DiceCE(M(x'), y), x' = attack(x): the batch is replaced |
| vafa-fr   | M_VAFA-FR (VAFT) | DiceCE(M(x), y) + DiceCE(M(x'), y) + L_fr(M(x), M(x'))   |

``vaft`` is accepted as another name for ``vafa-fr``. Each attack starts from its spec's
``training_preset`` (the paper's AT setting, e.g. VAFA ``table5``: q_max 20 on 32^3 blocks);
``attack_preset`` replaces it, ``attack_params`` go on top.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..attacks import registry

REGIME_ALIASES = {"vaft": "vafa-fr", "clean": "natural"}


def regimes() -> dict[str, str | None]:
    """regime -> the attack that makes its adversarial batch (None: no attack), from the registry:
    ``natural``, one regime per trainable attack, and ``vafa-fr`` (VAFT)."""
    found: dict[str, str | None] = {"natural": None}
    found.update({s.name: s.name for s in registry.specs() if s.trainable})
    if "vafa" in found:
        found["vafa-fr"] = "vafa"
    return found


def trainable_params() -> set[str]:
    """Every parameter name of a trainable attack (what ``attack_params`` may hold)."""
    return {p for s in registry.specs() if s.trainable for p in s.param_names}


def __getattr__(name: str) -> Any:
    # REGIMES is read from the registry on each access, so a plug-in attack is a regime too.
    if name == "REGIMES":
        return regimes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


FR_FORMS = ("l1", "normalized")
SELECT_BY = ("clean", "vafa")
AMP_CHOICES = ("auto", "none", "fp16", "bf16")

# Settings a resumed run may change without changing what is computed.
RESUME_MUTABLE = frozenset({
    "output", "datalist", "data_root", "device", "num_workers", "threads", "ckpt_every",
    "keep_checkpoints", "log_every", "tensorboard", "progress", "export", "export_which",
    "epochs", "max_steps", "val_every", "val_sw_batch_size", "cache_rate", "init",
})


def canonical_regime(name: str) -> str:
    """The regime's canonical name; ValueError listing the choices for an unknown one."""
    key = REGIME_ALIASES.get(name.lower(), name.lower())
    if key not in regimes():
        choices = ", ".join([*regimes(), *REGIME_ALIASES])
        raise ValueError(f"unknown training regime {name!r}; choose one of {choices}")
    return key


@dataclass
class TrainConfig:
    """Every setting of a training run (defaults: the paper's recipe, PAPER.md 2.3).

    Data:
        datalist: MONAI Decathlon-style JSON (``{"training": [...], "validation": [...]}``).
        data_root: folder the datalist's relative paths start from (default: the JSON's folder).
        train_split, val_split: datalist keys; an empty or absent validation split skips validation.
        crop: training patch size (default: the model spec's roi_size).
        num_samples: random crops per volume and step (RandCropByPosNegLabel; paper 4).
        batch_size: volumes per step and process; a step sees batch_size * num_samples patches.
        pos, neg: RandCropByPosNegLabel's foreground/background ratio (paper 1:1).
        flip_prob, flip_axes: RandFlip per axis (paper: p 0.2 on each of the 3 axes).
        rot90_prob: RandRotate90 (paper 0.2, max_k 3, in the first two axes).
        scale_prob, scale_factor, shift_prob, shift_offset: RandScaleIntensity / RandShiftIntensity
            (paper: 0.1 each). The augmented patch is clipped back to [0, 1], the attacks' domain.
        slab_prob: keep only a random slab of a patch, zeroing the rest as sliding-window padding
            does for thin scans (not in the paper; default off).
        crop_foreground: CropForeground on the windowed image before cropping (paper: yes).
        cache_rate: share of volumes CacheDataset keeps preprocessed in memory.
    Model:
        arch: a new network of this architecture (``unet``, ``unetr``, ``swinunetr``, ``segresnet``,
            or ``paper_unetr`` for the paper's UNETR) when ``init`` is not given.
        spec: a full ModelSpec dict (overrides ``arch``).
        init: model file or registry name to fine-tune from (its spec is used).
        spacing, window, roi: override the spec's target_spacing / intensity_window / roi_size.
        grad_checkpoint: gradient checkpointing (activation recomputation) to save memory.
    Regime:
        regime: see the module docstring.
        attack_preset: a preset of the regime's attack (``--preset public-code``) used instead of
            the attack's ``training_preset``.
        attack_params: overrides of the regime's attack parameters, on top of the preset (values
            for parameters the regime's attack does not take are ignored).
        clean_weight, adv_weight, fr_weight: weights of the VAFT terms (paper: 1, 1, 1).
        fr_form: ``l1`` (the paper's Eq. 4, mean absolute difference of the DCT coefficients) or
            ``normalized`` (the public code: sum |D(c) - D(a)| / sum |D(c)|).
        fr_block: DCT block side for L_fr; None = one DCT over the whole patch (as the code).
    Optimisation:
        epochs, max_steps: training length (max_steps, when given, wins).
        lr, weight_decay: AdamW (paper 1e-4, 1e-5).
        warmup_steps: linear warm-up from 0, then cosine decay to 0 (paper: 50 of 5000 epochs);
            None = 1% of the steps.
        amp: ``auto`` (fp16 with a GradScaler on CUDA, off on CPU), ``none``, ``fp16``, ``bf16``.
        seed: seeds the weights, the data order, the augmentations and the attacks.
    Validation and bookkeeping:
        val_every: validate every N epochs (0: never); sliding window on whole volumes.
        val_overlap, val_sw_batch_size: sliding-window settings (paper 0.5, 1).
        val_include_background: count background in the mean Dice (the paper's convention).
        select_by: ``clean`` (the paper) or ``vafa``: the metric that picks the best model.
        val_attack_steps: VAFA steps for ``select_by="vafa"`` (its other parameters: the regime's).
        ckpt_every: write a training checkpoint every N steps (also after each validation and at
            the end; 0: only then).
        keep_checkpoints: how many step checkpoints to keep.
        export: also write the final (or best, ``export_which``) model to this .safetensors path.
    """

    datalist: str
    output: str
    regime: str = "natural"
    data_root: str | None = None
    train_split: str = "training"
    val_split: str = "validation"
    # model
    arch: str | None = None
    spec: dict[str, Any] | None = None
    init: str | None = None
    spacing: list[float] | None = None
    window: list[float] | None = None
    roi: list[int] | None = None
    grad_checkpoint: bool = False
    # data
    crop: list[int] | None = None
    num_samples: int = 4
    batch_size: int = 1
    pos: float = 1.0
    neg: float = 1.0
    flip_prob: float = 0.2
    flip_axes: list[int] = field(default_factory=lambda: [0, 1, 2])
    rot90_prob: float = 0.2
    scale_prob: float = 0.1
    scale_factor: float = 0.1
    shift_prob: float = 0.1
    shift_offset: float = 0.1
    slab_prob: float = 0.0
    crop_foreground: bool = True
    cache_rate: float = 1.0
    num_workers: int = 0
    # regime
    attack_preset: str | None = None
    attack_params: dict[str, Any] = field(default_factory=dict)
    clean_weight: float = 1.0
    adv_weight: float = 1.0
    fr_weight: float = 1.0
    fr_form: str = "l1"
    fr_block: int | None = None
    # optimisation
    epochs: int = 100
    max_steps: int | None = None
    lr: float = 1e-4
    weight_decay: float = 1e-5
    warmup_steps: int | None = None
    amp: str = "auto"
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    # validation and bookkeeping
    val_every: int = 15
    val_overlap: float = 0.5
    val_sw_batch_size: int = 1
    val_include_background: bool = False
    select_by: str = "clean"
    val_attack_steps: int = 10
    ckpt_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 1
    tensorboard: bool = True
    progress: bool = True
    export: str | None = None
    export_which: str = "final"

    def __post_init__(self) -> None:
        self.regime = canonical_regime(self.regime)
        self.validate()

    @property
    def attack_name(self) -> str | None:
        """The attack the regime trains against (None for natural training)."""
        return regimes()[self.regime]

    def attack_kwargs(self, name: str | None = None) -> dict[str, Any]:
        """Every constructor keyword of attack ``name`` (default: the regime's): the preset
        (``attack_preset`` if the attack has it, else its ``training_preset``), then the
        ``attack_params`` it takes. Equals ``registry.resolve(name[:preset], params)``."""
        name = name or self.attack_name
        if name is None:
            return {}
        spec = registry.get(name)
        own = {p.name for p in spec.presets}
        preset = self.attack_preset if self.attack_preset in own else spec.training_preset
        return spec.resolve(preset, **{k: v for k, v in self.attack_params.items() if k in spec.param_names})

    def validate(self) -> None:
        """ValueError naming the first setting that cannot work."""
        _positive_int(self.num_samples, "num_samples")
        _positive_int(self.batch_size, "batch_size")
        _positive_int(self.epochs, "epochs")
        if self.max_steps is not None:
            _positive_int(self.max_steps, "max_steps")
        for name in ("lr", "weight_decay", "pos", "neg", "clean_weight", "adv_weight", "fr_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.pos + self.neg <= 0:
            raise ValueError("pos + neg must be > 0 (RandCropByPosNegLabel's ratio)")
        for name in ("flip_prob", "rot90_prob", "scale_prob", "shift_prob", "slab_prob", "cache_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.val_overlap < 1.0:
            raise ValueError(f"val_overlap must lie in [0, 1), got {self.val_overlap}")
        if any(a not in (0, 1, 2) for a in self.flip_axes):
            raise ValueError(f"flip_axes must be among 0, 1, 2, got {self.flip_axes}")
        if self.fr_form not in FR_FORMS:
            raise ValueError(f"fr_form must be one of {FR_FORMS}, got {self.fr_form!r}")
        if self.fr_block is not None:
            _positive_int(self.fr_block, "fr_block")
        if self.select_by not in SELECT_BY:
            raise ValueError(f"select_by must be one of {SELECT_BY}, got {self.select_by!r}")
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"amp must be one of {AMP_CHOICES}, got {self.amp!r}")
        if self.export_which not in ("final", "best"):
            raise ValueError(f"export_which must be 'final' or 'best', got {self.export_which!r}")
        if self.export is not None and not str(self.export).endswith(".safetensors"):
            raise ValueError(f"export must be a .safetensors path, got {self.export!r}")
        for name in ("val_every", "ckpt_every", "log_every", "keep_checkpoints", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        _positive_int(self.val_sw_batch_size, "val_sw_batch_size")
        for name in ("crop", "roi"):
            value = getattr(self, name)
            if value is not None and (len(value) != 3 or min(value) < 1):
                raise ValueError(f"{name} needs three positive sides, got {value}")
        unknown = sorted(set(self.attack_params) - trainable_params())
        if unknown:
            raise ValueError(f"unknown attack parameter(s) {unknown}; the trainable attacks take {sorted(trainable_params())}")
        self._check_attack()

    def _check_attack(self) -> None:
        """The regime's attack settings resolve (bounds, preset), or a ValueError names them."""
        name = self.attack_name
        if self.attack_preset is not None:
            having = [s.name for s in registry.specs() if self.attack_preset in {p.name for p in s.presets}]
            if not having:
                raise ValueError(f"no attack has a preset {self.attack_preset!r}")
            if name is not None and name not in having:
                raise ValueError(f"attack_preset {self.attack_preset!r} is a preset of {', '.join(having)}, "
                                 f"not of the {self.regime} regime's attack {name}")
        names = {name, "vafa" if self.select_by == "vafa" else None} - {None}
        for attack in sorted(names):
            self.attack_kwargs(attack)

    # --- (de)serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))  # tuples -> lists, a deep copy

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"training config has unknown setting(s) {unknown}")
        return cls(**data)


def check_resume_compatible(saved: TrainConfig, new: TrainConfig) -> None:
    """ValueError listing the settings that differ and would change what a resumed run computes."""
    a, b = saved.to_dict(), new.to_dict()
    changed = sorted(k for k in a if k not in RESUME_MUTABLE and a[k] != b[k])
    if changed:
        details = "; ".join(f"{k}: {a[k]!r} -> {b[k]!r}" for k in changed)
        raise ValueError(
            f"cannot resume with different settings ({details}); a resumed run keeps the settings "
            "it started with: drop these options, or start a new run in another output folder "
            "(fine-tune from the old run's model with --init)"
        )


def _positive_int(value: Any, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
