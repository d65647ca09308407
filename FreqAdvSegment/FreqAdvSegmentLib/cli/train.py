"""``freqadv train``: natural, adversarial (PGD/FGSM/BIM/GN/VAFA) and VAFT training.

    freqadv train dataset_synapse_18_12.json -o runs/natural --arch paper_unetr
    freqadv train dataset_synapse_18_12.json -o runs/vaft --regime vafa-fr \\
        --init runs/natural/model_final.safetensors --q-max 20 --block-size 32
    freqadv train --resume -o runs/vaft                      # continue a stopped run exactly
    torchrun --nproc_per_node 4 -m FreqAdvSegmentLib.cli train ... # DDP, one process per GPU
    python -m FreqAdvSegmentLib.training ...                 # the same as freqadv train ... (``main``)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..attacks import registry
from ..attacks.options import add_param_flags, chosen_preset, given_params, param_help, preset_names, typed_value
from ..models import ModelSpec
from ..training.config import REGIME_ALIASES, TrainConfig, regimes
from .options import triple

DESCRIPTION = """\
Train a segmentation model on a MONAI Decathlon-style datalist ({{"training": [...], "validation":
[...]}}, paths relative to the JSON's folder or --data-root), naturally or adversarially:

  natural          DiceCE on the clean batch
  {attacks:<16s} AT: the batch is replaced by its adversarial version (vafa: M_VAFA)
  vafa-fr (vaft)   VAFT, M_VAFA-FR: DiceCE(clean) + DiceCE(VAFA) + frequency consistency loss

The run folder gets config.json, checkpoints/, train_log.csv, val_log.csv (and tensorboard/ when
tensorboard is installed), model_best.safetensors, model_final.safetensors and summary.json.
Ctrl-C stops after the current step with a checkpoint; --resume continues exactly.
Several processes: torchrun --nproc_per_node N -m FreqAdvSegmentLib.cli train ...
"""

_NOT_CONFIG = {"command", "debug", "resume", "overwrite", "public_code", "preset", "_attack_dests", "no_tensorboard", "no_progress", "no_crop_foreground"}


def _trainable_specs() -> list:
    return [s for s in registry.specs() if s.trainable]


def _finite(text: str) -> float:
    """A finite number (``1e-4``, ``0.5``, ``4/255``); 1e309, nan and inf are refused."""
    from ..finite import parse_number

    try:
        return parse_number(text, "the value")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _finite_list(text: str) -> list[float]:
    try:
        return [_finite(p) for p in text.replace("x", ",").split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected finite numbers separated by commas, got {text!r}") from None


def _pair(text: str) -> tuple[float, float]:
    parts = _finite_list(text)
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected two numbers like -175,250, got {text!r}")
    return parts[0], parts[1]


def _spacing(text: str) -> tuple[float, float, float]:
    parts = _finite_list(text)
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"expected a spacing like 1.5,1.5,2 (mm), got {text!r}")
    return tuple(parts)  # type: ignore[return-value]


def _axes(text: str) -> list[int]:
    if text.lower() in ("", "none"):
        return []
    try:
        return [int(a) for a in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected axes like 0,1,2 or none, got {text!r}") from None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``train`` to ``freqadv``'s sub-command parsers; returns its parser."""
    trainable = _trainable_specs()
    p = subparsers.add_parser(
        "train", help="train a model: natural, adversarial or VAFT (one process or torchrun)",
        description=DESCRIPTION.format(attacks=" ".join(s.name for s in trainable)), formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # only options given on the command line reach the config
    )
    p.add_argument("datalist", nargs="?", help="datalist JSON (not needed with --resume)")
    p.add_argument("-o", "--output", required=True, help="run folder (checkpoints, logs, models)")
    p.add_argument("--regime", choices=[*regimes(), *REGIME_ALIASES],
                   help="what to train against (default: natural)")
    p.add_argument("--resume", nargs="?", const=True, default=None,
                   help="continue the run in --output from its newest checkpoint, or from the checkpoint PATH given")

    g = p.add_argument_group("model")
    g.add_argument("--init", help="fine-tune this model (registry name or .safetensors/.pt file; its spec is kept)")
    g.add_argument("--arch", choices=["unet", "unetr", "swinunetr", "segresnet", "paper_unetr"],
                   help="train a new network of this kind (paper_unetr: the paper's UNETR, 96^3, 14 labels)")
    g.add_argument("--spec", help="a new network's full ModelSpec: JSON text or a .json file")
    g.add_argument("--spacing", type=_spacing, help="override the spec's voxel spacing in mm, e.g. 1.5,1.5,2")
    g.add_argument("--window", type=_pair, help="override the spec's intensity window in HU, e.g. -175,250")
    g.add_argument("--roi", type=triple, help="override the spec's sliding-window roi, e.g. 96")
    g.add_argument("--grad-checkpoint", action="store_true", help="gradient checkpointing: less memory, ~30%% more time")

    g = p.add_argument_group("data and augmentation (defaults: the paper's)")
    g.add_argument("--data-root", help="folder the datalist's relative paths start from (default: the JSON's folder)")
    g.add_argument("--train-split", help="datalist key of the training cases (default: training)")
    g.add_argument("--val-split", help="datalist key of the validation cases (default: validation)")
    g.add_argument("--crop", type=triple, help="training patch size (default: the spec's roi)")
    g.add_argument("--num-samples", type=int, help="patches per volume and step (default 4)")
    g.add_argument("--batch-size", type=int, help="volumes per step and process (default 1)")
    g.add_argument("--pos", type=_finite, help="RandCropByPosNegLabel foreground weight (default 1)")
    g.add_argument("--neg", type=_finite, help="RandCropByPosNegLabel background weight (default 1)")
    g.add_argument("--flip-prob", type=_finite, help="RandFlip probability per axis (default 0.2)")
    g.add_argument("--flip-axes", type=_axes, help="axes to flip, e.g. 1,2 or none (default 0,1,2)")
    g.add_argument("--rot90-prob", type=_finite, help="RandRotate90 probability (default 0.2)")
    g.add_argument("--scale-prob", type=_finite, help="RandScaleIntensity probability (default 0.1)")
    g.add_argument("--shift-prob", type=_finite, help="RandShiftIntensity probability (default 0.1)")
    g.add_argument("--slab-prob", type=_finite, help="keep a random slab of a patch, zero the rest, as padding of thin scans (default 0; not the paper's)")
    g.add_argument("--no-crop-foreground", action="store_true", help="skip CropForeground")
    g.add_argument("--cache-rate", type=_finite, help="share of volumes cached in memory (default 1)")
    g.add_argument("--num-workers", type=int, help="DataLoader worker processes (default 0)")

    g = p.add_argument_group("attack of the regime", "defaults: each attack's training preset (the paper's AT setting, "
                             "e.g. vafa:table5);\nflags for parameters the regime's attack does not take are ignored")
    g.add_argument("--preset", choices=preset_names(trainable),
                   help="the attack's preset instead of its training preset (e.g. public-code, paper, eps8)")
    g.add_argument("--public-code", action="store_true", help="the same as --preset public-code (VAFA as the authors' code runs it)")
    attack_group = g  # its parameter flags are added last, once every other flag is known

    g = p.add_argument_group("VAFT loss (vafa-fr)")
    g.add_argument("--clean-weight", type=_finite, help="weight of DiceCE on the clean batch (default 1)")
    g.add_argument("--adv-weight", type=_finite, help="weight of DiceCE on the VAFA batch (default 1)")
    g.add_argument("--fr-weight", type=_finite, help="weight of the frequency consistency loss (default 1)")
    g.add_argument("--fr-form", choices=["l1", "normalized"],
                   help="l1: the paper's mean |DCT(c) - DCT(a)| (default); normalized: the code's sum|D(c)-D(a)|/sum|D(c)|")
    g.add_argument("--fr-block", type=int, help="DCT block of the loss (default: one DCT over the whole patch)")

    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, help="passes over the training set (default 100)")
    g.add_argument("--max-steps", type=int, help="stop after this many steps (wins over --epochs)")
    g.add_argument("--lr", type=_finite, help="AdamW learning rate (default 1e-4)")
    g.add_argument("--weight-decay", type=_finite, help="AdamW weight decay (default 1e-5)")
    g.add_argument("--warmup-steps", type=int, help="linear warm-up steps before the cosine decay (default 1%% of the steps)")
    g.add_argument("--amp", choices=["auto", "none", "fp16", "bf16"], help="mixed precision (default auto: fp16 on CUDA, off on CPU)")
    g.add_argument("--seed", type=int, help="seed of weights, data order, augmentation and attacks (default 0)")
    g.add_argument("--device", help="auto, cpu or cuda (under torchrun: cuda:LOCAL_RANK) (default auto)")
    g.add_argument("--threads", type=int, help="CPU threads per process")

    g = p.add_argument_group("validation and bookkeeping")
    g.add_argument("--val-every", type=int, help="validate every N epochs; 0 = never (default 15)")
    g.add_argument("--val-overlap", type=_finite, help="sliding-window overlap (default 0.5)")
    g.add_argument("--val-sw-batch-size", type=int, help="windows per forward pass (default 1)")
    g.add_argument("--val-include-background", action="store_true", help="count background in the mean Dice (the paper's convention)")
    g.add_argument("--select-by", choices=["clean", "vafa"], help="best model by clean Dice (default) or Dice under VAFA")
    g.add_argument("--val-attack-steps", type=int, help="VAFA steps when selecting by Dice under VAFA (default 10)")
    g.add_argument("--ckpt-every", type=int, help="training checkpoint every N steps (default 100)")
    g.add_argument("--keep-checkpoints", type=int, help="step checkpoints to keep; 0 = all (default 2)")
    g.add_argument("--log-every", type=int, help="CSV/TensorBoard row every N steps (default 1)")
    g.add_argument("--no-tensorboard", action="store_true", help="CSV logs only")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--export", help="also write the final (or --export-which best) model to this .safetensors file")
    g.add_argument("--overwrite", action="store_true", default=False,
                   help="let --export replace an existing file (never the --init model or another input)")
    g.add_argument("--export-which", choices=["final", "best"], help="which model --export writes (default final)")

    dests = add_param_flags(p, attack_group, trainable, training=True)
    if dests.get("steps") == "steps":
        attack_group.add_argument("--attack-steps", dest="steps",
                                  help="the same as --steps: " + param_help("steps", trainable, training=True))
    return p


def config_from_args(args: argparse.Namespace, saved: dict[str, Any] | None = None):
    """TrainConfig from the options given on the command line, on top of ``saved`` (a resumed
    run's settings) or of the defaults."""
    flags = given_params(args)
    dests = set(vars(args).get("_attack_dests", {}).values())
    given = {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG and k not in dests}
    fields: dict[str, Any] = dict(saved or {})
    attack_params = dict(fields.get("attack_params") or {})
    for name, text in flags.items():
        attack_params[name] = typed_value(name, text)
    fields["attack_params"] = attack_params
    preset = chosen_preset(args)
    if preset is not None:
        fields["attack_preset"] = preset
    if getattr(args, "no_tensorboard", False):
        fields["tensorboard"] = False
    if getattr(args, "no_progress", False):
        fields["progress"] = False
    if getattr(args, "no_crop_foreground", False):
        fields["crop_foreground"] = False
    if "spec" in given:
        given["spec"] = _read_spec(given["spec"])
    for key in ("crop", "roi", "spacing", "window"):
        if key in given:
            given[key] = list(given[key])
    fields.update({k: v for k, v in given.items() if v is not None})
    if fields.get("datalist") is None:
        raise ValueError("give the datalist JSON (or --resume a run that has one)")
    return TrainConfig.from_dict(fields)


def _read_spec(text: str) -> dict[str, Any]:
    source = Path(text)
    try:
        data = json.loads(source.read_text() if source.suffix == ".json" and source.is_file() else text)
    except json.JSONDecodeError as error:
        raise ValueError(f"--spec is neither a .json file nor JSON text: {error}") from None
    return ModelSpec.from_dict(data).to_dict()


def run(args: argparse.Namespace) -> int:
    """Run ``freqadv train``; 0 when done, 130 when stopped early (with a checkpoint to resume)."""
    # torch, MONAI: loaded when a command runs, not for --help.
    from ..training.checkpoint import latest_checkpoint, load_checkpoint
    from ..training.distributed import cleanup, init_distributed
    from ..training.trainer import Trainer

    resume = getattr(args, "resume", None)
    state = None
    if resume is not None:
        ckpt_dir = Path(args.output) / "checkpoints"
        path = latest_checkpoint(ckpt_dir) if resume is True else Path(resume)
        if path is None:
            raise FileNotFoundError(f"nothing to resume: {ckpt_dir} holds no checkpoint (start the run without --resume)")
        state = load_checkpoint(path)
        state["path"] = str(path)
    saved = json.loads(state["config"]) if state is not None else None
    cfg = config_from_args(args, saved)
    ctx = init_distributed(cfg.device)
    try:
        result = Trainer(cfg, ctx, resume=state, overwrite_export=getattr(args, "overwrite", False)).fit()
    except FloatingPointError as err:  # diverged: say so in one line; the checkpoints are intact
        print(f"freqadv train: error: {err}", file=sys.stderr)
        return 1
    except FileExistsError as err:  # an occupied run folder: one line, like freqadv's other input errors
        print(f"freqadv train: error: {err}", file=sys.stderr)
        return 2
    finally:
        cleanup(ctx)
    if not ctx.is_main:
        return 130 if result.interrupted else 0
    if result.interrupted:
        print(f"stopped at step {result.steps}/{result.total_steps}; a checkpoint is in {cfg.output}/checkpoints.\n"
              f"continue with: freqadv train --resume -o {cfg.output}", file=sys.stderr)
        return 130
    print(f"trained {result.steps} steps ({cfg.regime}) in {result.seconds:.0f} s; final model: {result.final_model}")
    if result.best_model is not None:
        print(f"best model ({cfg.select_by} Dice {result.best_metric:.4f}): {result.best_model}")
    if cfg.export:
        print(f"exported the {cfg.export_which} model to {cfg.export}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m FreqAdvSegmentLib.training``) with the same errors as freqadv."""
    parser = argparse.ArgumentParser(prog="freqadv")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run(args)
    except (FileNotFoundError, ValueError, MemoryError) as err:
        print(f"freqadv train: error: {err}", file=sys.stderr)
        return 2
