"""The training loop: natural, voxel-domain AT, VAFA AT and VAFT, on one process or many.

    from FreqAdvSegmentLib.training import TrainConfig, Trainer
    cfg = TrainConfig(datalist="dataset_synapse_18_12.json", output="runs/vaft", regime="vafa-fr",
                      init="runs/natural/model_final.safetensors")
    result = Trainer(cfg).fit()

Per step (PAPER.md 2.2): the attack (if the regime has one) runs on the current batch with the
model frozen in eval mode; then, in train mode, the regime's loss; AdamW; the warm-up + cosine
schedule. Every ``ckpt_every`` steps (and at epoch ends that validated, and at the end) a training
checkpoint is written atomically; ``resume`` continues from one exactly. Ctrl-C or SIGTERM
finishes the current step, writes a checkpoint and stops. Under torchrun the model is wrapped in
DistributedDataParallel, each rank sees its share of every epoch, and only rank 0 writes.

The run folder (``cfg.output``)::

    config.json                 the settings (TrainConfig)
    checkpoints/step_*.pt       training checkpoints (the newest ``keep_checkpoints``)
    train_log.csv, val_log.csv  the logs; tensorboard/ when tensorboard is installed
    model_best.safetensors      best validation model (by clean Dice or Dice under VAFA)
    model_final.safetensors     the model after the last step
    summary.json                what happened, when the run finished
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..files.atomic_file import replace_text
from ..attacks import registry
from ..attacks.network import autocast
from ..models import ModelSpec, build_model, load_model, paper_unetr_spec, resolve_model, save_model
from ..models.registry import registry_spec, sha256_of
from ..models.remap import strip_wrapper_prefixes
from .checkpoint import (
    CheckpointError,
    capture_rng_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_state,
    save_checkpoint,
    step_checkpoint_path,
)
from .config import TrainConfig, check_resume_compatible
from .data import (
    batch_tensors,
    build_train_loader,
    build_val_dataset,
    check_files_exist,
    draw_seed,
    read_datalist,
    steps_per_epoch,
)
from .distributed import DistContext, all_gather_objects, any_rank, barrier, unwrap
from .losses import frequency_consistency_loss, segmentation_loss
from .grad_checkpointing import enable_gradient_checkpointing
from .run_folder import check_export, check_run_folder, write_run_stamp
from .runlog import RunLog
from .validation import validate

StepHook = Callable[[int, dict[str, float]], None]
"""Called as hook(step, losses) after every step (tests use it to simulate a crash)."""


@dataclass
class TrainResult:
    """What a run produced (paths are None on ranks other than 0)."""

    output: Path
    steps: int
    total_steps: int
    seconds: float
    losses: list[float]
    final_model: Path | None
    best_model: Path | None
    best_metric: float | None
    interrupted: bool = False


class Trainer:
    """One training run. Build it on every rank (same ``cfg``), then call :meth:`fit`.

    Args:
        cfg: the settings.
        ctx: this process's place in the process group (default: a single process on
            ``cfg.device``; see :func:`~.distributed.init_distributed`).
        resume: False/None for a new run, True to continue from the newest checkpoint in
            ``cfg.output/checkpoints``, the path of a checkpoint, or a checkpoint already read
            with :func:`~.checkpoint.load_checkpoint`.
        hook: called after every step; see :data:`StepHook`.
        overwrite_export: ``cfg.export`` may replace an existing file (never an input of the run).

    Raises:
        FileExistsError: ``cfg.output`` is not a new or empty folder nor this kind of run's own
            folder, or ``cfg.export`` may not be written (see :mod:`.run_folder`).
    """

    def __init__(
        self, cfg: TrainConfig, ctx: DistContext | None = None,
        resume: bool | str | Path | dict[str, Any] | None = None,
        hook: StepHook | None = None,
        overwrite_export: bool = False,
    ) -> None:
        from .distributed import init_distributed

        self.cfg = cfg
        self.ctx = ctx or init_distributed(cfg.device)
        self.hook = hook
        self._init_sha256: str | None = None
        self.out = Path(cfg.output)
        self.ckpt_dir = self.out / "checkpoints"
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        resumed_from = resume if isinstance(resume, (str, Path)) else resume.get("path") if isinstance(resume, dict) else None
        inputs = [cfg.datalist, cfg.init, resumed_from]
        check_run_folder(self.out, resume not in (None, False), inputs)  # before anything is read or written
        check_export(cfg.export, self.out, overwrite_export, inputs)
        self._overwrite_export = overwrite_export
        state = self._resume_state(resume)
        # The data first: a wrong path should fail before a large network is built.
        self.train_cases = read_datalist(cfg.datalist, cfg.train_split, cfg.data_root)
        if not self.train_cases:
            raise ValueError(f"the datalist's {cfg.train_split!r} split is empty: nothing to train on")
        check_files_exist(self.train_cases, cfg.train_split)
        self.val_cases = []
        if cfg.val_every > 0:
            self.val_cases = read_datalist(cfg.datalist, cfg.val_split, cfg.data_root, required=False)
            check_files_exist(self.val_cases, cfg.val_split)
        self.amp = _resolve_amp(cfg.amp, self.ctx.device)
        self.spec, model = self._build_model(state)
        freeze_unused_parameters(model)
        if cfg.grad_checkpoint:
            enable_gradient_checkpointing(model)
        model.to(self.ctx.device)
        if self.ctx.distributed:
            ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.model = model
        self.net = unwrap(model)

        self.patch = tuple(cfg.crop or self.spec.roi_size)
        self._check_patch()
        self.steps_per_epoch = steps_per_epoch(len(self.train_cases), self.ctx.world_size, cfg.batch_size)
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.n_epochs = math.ceil(self.total_steps / self.steps_per_epoch)

        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        warmup = cfg.warmup_steps if cfg.warmup_steps is not None else self.total_steps // 100
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(warmup, self.total_steps)
        )
        self.scaler = torch.amp.GradScaler(self.ctx.device.type, enabled=self.amp == "fp16")
        self.loss_fn = segmentation_loss()
        self.attack = None
        if cfg.attack_name is not None:
            self.attack = registry.build(cfg.attack_name, self.net, cfg.attack_kwargs(), amp=self.amp)

        self.step = self.epoch = self.batch_in_epoch = 0
        self.best_metric: float | None = None
        self.best_step: int | None = None
        if state is not None:
            self._restore(state)
        self.loader, self.sampler = build_train_loader(
            cfg, self.spec, self.patch, self.train_cases, self.ctx.world_size, self.ctx.rank
        )
        shard = self.val_cases[self.ctx.rank :: self.ctx.world_size]
        self.val_data = build_val_dataset(cfg, self.spec, shard) if self.val_cases and shard else []
        self.log = None
        if self.ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_run_stamp(self.out)
            replace_text(self.out / "config.json", cfg.to_json() + "\n")
            self.log = RunLog(self.out, self.step if state is not None else None, cfg.tensorboard)
        self._stop_requested = False

    # --- setup -------------------------------------------------------------------------------

    def _resume_state(self, resume: bool | str | Path | dict[str, Any] | None) -> dict[str, Any] | None:
        if resume in (None, False):
            existing = list_checkpoints(self.ckpt_dir)
            if existing:
                raise FileExistsError(
                    f"{self.out} already holds a training run ({len(existing)} checkpoint(s) in "
                    f"{self.ckpt_dir}); pass --resume to continue it, or choose another output folder"
                )
            return None
        if isinstance(resume, dict):  # already read (by the command line)
            state, path = resume, Path(resume.get("path", "checkpoint"))
        else:
            path = latest_checkpoint(self.ckpt_dir) if resume is True else Path(resume)
            if path is None:
                raise FileNotFoundError(
                    f"nothing to resume: {self.ckpt_dir} holds no checkpoint (start the run without --resume)"
                )
            state = load_checkpoint(path)
        try:
            saved = TrainConfig.from_dict(json.loads(state["config"]))
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"{path}: its stored training settings are unreadable: {error}") from None
        check_resume_compatible(saved, self.cfg)
        state["path"] = str(path)
        return state

    def _build_model(self, state: dict[str, Any] | None) -> tuple[ModelSpec, torch.nn.Module]:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank and every run
        if state is not None:
            spec = ModelSpec.from_json(state["spec"])
            model = build_model(spec)
            try:
                model.load_state_dict(state["model"], strict=True)
            except RuntimeError as error:
                raise CheckpointError(
                    f"{state['path']}: its weights do not fit its model spec: {str(error).splitlines()[0]}"
                ) from None
            return spec, model
        if cfg.init is not None:
            if cfg.arch is not None or cfg.spec is not None:
                raise ValueError("give either --init (fine-tune a model) or --arch/--spec (a new one), not both")
            path = resolve_model(cfg.init)
            self._init_sha256 = sha256_of(path) if path.is_file() else None  # provenance, in summary.json
            model, spec = load_model(path, spec=registry_spec(cfg.init) if isinstance(cfg.init, str) else None)
            spec = _override_spec(spec, cfg)
            if spec.arch == "unetr" and cfg.roi is not None:
                raise ValueError("a UNETR's roi is fixed by its position embeddings; do not change --roi")
            return spec, model
        if cfg.spec is not None:
            spec = ModelSpec.from_dict(cfg.spec)
        elif cfg.arch == "paper_unetr":
            spec = paper_unetr_spec()
        elif cfg.arch is not None:
            spec = ModelSpec(arch=cfg.arch)
        else:
            raise ValueError("say which model to train: --init MODEL (fine-tune) or --arch / --spec (new)")
        spec = _override_spec(spec, cfg)
        return spec, build_model(spec)

    def _check_patch(self) -> None:
        block = self.cfg.attack_kwargs().get("block_size")  # the frequency attacks' DCT blocks
        if block is not None and block > min(self.patch):
            raise ValueError(f"{self.cfg.attack_name}'s block_size {block} exceeds the training patch {self.patch}; "
                             f"use --block-size <= {min(self.patch)}")
        if self.spec.arch == "unetr" and tuple(self.patch) != tuple(self.spec.roi_size):
            raise ValueError(f"UNETR trains on patches of its img_size {self.spec.roi_size}; --crop {self.patch} differs")

    def _restore(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.best_metric, self.best_step = state["best"].get("metric"), state["best"].get("step")
        rng = state["rng"]
        if state["world_size"] == self.ctx.world_size and len(rng) == self.ctx.world_size:
            restore_rng_state(rng[self.ctx.rank])
        elif self.ctx.is_main:
            print(f"note: resuming a {state['world_size']}-process run on {self.ctx.world_size}; "
                  "the data order and random states follow the new process count from here on")

    # --- the loop ----------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Train to ``total_steps`` (or until stopped); returns what was produced."""
        cfg, start, losses = self.cfg, time.perf_counter(), []
        bar = tqdm(total=self.total_steps, initial=self.step, desc=f"train {cfg.regime}", unit="step",
                   disable=not (self.ctx.is_main and cfg.progress), dynamic_ncols=True)
        interrupted = False
        with self._signals(), bar:
            for epoch in range(self.epoch, self.n_epochs):
                if self.step >= self.total_steps:
                    break
                self.epoch = epoch
                self.sampler.set_epoch(epoch, skip=self.batch_in_epoch * cfg.batch_size)
                for batch in self.loader:
                    terms = self._train_step(batch)
                    self.step += 1
                    self.batch_in_epoch += 1
                    losses.append(terms["loss"])
                    self._log_step(epoch, terms, time.perf_counter() - start)
                    bar.update(1)
                    bar.set_postfix(loss=f"{terms['loss']:.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
                    stop = any_rank(self.ctx, self._stop_requested)
                    finished = self.step >= self.total_steps or self.batch_in_epoch >= self.steps_per_epoch
                    if stop or (self._due(self.step) and not finished):
                        self._save_checkpoint()  # epoch ends and the last step save below
                    if self.hook is not None:
                        self.hook(self.step, terms)
                    if stop:
                        interrupted = True
                        break
                    if self.step >= self.total_steps:
                        break
                if interrupted:
                    break
                if self.batch_in_epoch < self.steps_per_epoch:  # the last step fell mid-epoch
                    self._maybe_validate(epoch, force=True)
                    self._save_checkpoint()
                    break
                self.epoch, self.batch_in_epoch = epoch + 1, 0
                last = self.step >= self.total_steps
                validated = self._maybe_validate(epoch, force=last)
                if validated or last or self._due(self.step):
                    self._save_checkpoint()
        return self._finish(losses, time.perf_counter() - start, interrupted)

    def _due(self, step: int) -> bool:
        return self.cfg.ckpt_every > 0 and step % self.cfg.ckpt_every == 0

    def _train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        cfg = self.cfg
        x, y = batch_tensors(batch, self.ctx.device)
        x_adv = None
        if self.attack is not None:
            # Stateless seeding: the attack's noise depends only on (seed, step, rank).
            self.attack.seed = draw_seed(cfg.seed + 1, self.step * self.ctx.world_size + self.ctx.rank)
            x_adv = self.attack.run(x, y).adv
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms = self._objective(x, x_adv, y)
        loss = terms["loss"]
        # (With fp16 the GradScaler skips a non-finite step and lowers its scale instead.)
        if self.amp != "fp16" and not torch.isfinite(loss.detach()):
            raise FloatingPointError(
                f"the training loss became {float(loss)} at step {self.step + 1}; lower --lr, or "
                "resume from the last checkpoint"
            )
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        values = {k: v.detach().float() for k, v in terms.items()}
        if self.ctx.distributed:
            values = _mean_over_ranks(values)
        return {k: float(v) for k, v in values.items()}

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits in float32; only the network runs under autocast, the losses in full precision."""
        with autocast(self.ctx.device, self.amp):
            return self.model(x).float()

    def _objective(self, x: torch.Tensor, x_adv: torch.Tensor | None, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The regime's loss and its terms."""
        cfg = self.cfg
        if x_adv is None:  # natural training
            clean = self.loss_fn(self._forward(x), y)
            return {"loss": clean, "loss_clean": clean}
        if cfg.regime != "vafa-fr":  # voxel AT and M_VAFA: the batch is replaced by its adversarial version
            adv = self.loss_fn(self._forward(x_adv), y)
            return {"loss": adv, "loss_adv": adv}
        logits_clean = self._forward(x)
        logits_adv = self._forward(x_adv)
        clean = self.loss_fn(logits_clean, y)
        adv = self.loss_fn(logits_adv, y)
        fr = frequency_consistency_loss(logits_clean, logits_adv, cfg.fr_form, cfg.fr_block)
        loss = cfg.clean_weight * clean + cfg.adv_weight * adv + cfg.fr_weight * fr
        return {"loss": loss, "loss_clean": clean, "loss_adv": adv, "loss_fr": fr}

    # --- validation, checkpoints, logs --------------------------------------------------------

    def _maybe_validate(self, epoch: int, force: bool = False) -> bool:
        cfg = self.cfg
        due = cfg.val_every > 0 and (epoch + 1) % cfg.val_every == 0
        if not self.val_cases or not (due or (force and cfg.val_every > 0)):
            return False
        start = time.perf_counter()
        vafa = None
        if cfg.select_by == "vafa":
            vafa = {**cfg.attack_kwargs("vafa"), "steps": cfg.val_attack_steps}
        result = validate(self.net, self.val_data, self.spec, self.ctx, cfg.val_overlap, cfg.val_sw_batch_size,
                          cfg.val_include_background, self.amp, vafa, cfg.seed)
        metric = result["dice_clean"] if cfg.select_by == "clean" else result["dice_vafa"]
        if self.ctx.is_main:
            if not math.isnan(metric) and (self.best_metric is None or metric > self.best_metric):
                self.best_metric, self.best_step = metric, self.step
                save_model(self.out / "model_best.safetensors", self.net, self.spec)
            self.log.val({"step": self.step, "epoch": epoch, "dice_clean": result["dice_clean"],
                          "dice_vafa": None if vafa is None else result["dice_vafa"], "metric": metric,
                          "best_metric": self.best_metric, "best_step": self.best_step,
                          "seconds": time.perf_counter() - start})
            tqdm.write(f"validation at step {self.step}: Dice {result['dice_clean']:.4f}"
                       + ("" if vafa is None else f", under VAFA {result['dice_vafa']:.4f}")
                       + f" (best {self.best_metric if self.best_metric is not None else float('nan'):.4f} "
                       f"at step {self.best_step})")
        return True

    def _save_checkpoint(self) -> None:
        """Checkpoint the state between two steps (all ranks call it; rank 0 writes)."""
        rng = all_gather_objects(self.ctx, capture_rng_state())
        if self.ctx.is_main:
            content = {
                "model": strip_wrapper_prefixes(self.net.state_dict()),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "epoch": self.epoch,
                "step": self.step,
                "batch_in_epoch": self.batch_in_epoch,
                "rng": rng,
                "best": {"metric": self.best_metric, "step": self.best_step},
                "config": self.cfg.to_json(),
                "spec": self.spec.to_json(),
                "world_size": self.ctx.world_size,
            }
            save_checkpoint(step_checkpoint_path(self.ckpt_dir, self.step), content)
            prune_checkpoints(self.ckpt_dir, self.cfg.keep_checkpoints)
        barrier(self.ctx)

    def _log_step(self, epoch: int, terms: dict[str, float], seconds: float) -> None:
        every = self.cfg.log_every
        if self.log is not None and every > 0 and (self.step % every == 0 or self.step == 1):
            self.log.train({"step": self.step, "epoch": epoch, **terms,
                            "lr": self.scheduler.get_last_lr()[0], "seconds": seconds})

    def _finish(self, losses: list[float], seconds: float, interrupted: bool) -> TrainResult:
        final = best = None
        if self.ctx.is_main:
            if not interrupted:
                final = save_model(self.out / "model_final.safetensors", self.net.eval(), self.spec)
            best_path = self.out / "model_best.safetensors"
            best = best_path if best_path.exists() else None
            if self.cfg.export and not interrupted:
                self._export(final, best)
            summary = {
                "regime": self.cfg.regime, "steps": self.step, "total_steps": self.total_steps,
                "seconds_this_session": round(seconds, 2), "interrupted": interrupted,
                "final_loss": losses[-1] if losses else None,
                "best_metric": self.best_metric, "best_step": self.best_step, "select_by": self.cfg.select_by,
                "final_model": str(final) if final else None, "best_model": str(best) if best else None,
                "world_size": self.ctx.world_size, "device": str(self.ctx.device), "amp": self.amp,
                "init": self.cfg.init, "init_sha256": self._init_sha256,
            }
            replace_text(self.out / "summary.json", json.dumps(summary, indent=2) + "\n")
            self.log.close()
        barrier(self.ctx)
        self._release_ddp()
        return TrainResult(self.out, self.step, self.total_steps, seconds, losses, final, best,
                           self.best_metric, interrupted)

    def _release_ddp(self) -> None:
        """Drop the DDP wrapper once training is over. A DDP object still alive when the process
        group is destroyed can abort the process at exit (gloo: "terminate called without an
        active exception"); the bare network stays in ``self.model`` / ``self.net``."""
        if self.model is not self.net:
            self.model = self.net
            gc.collect()  # DDP's reducer sits in reference cycles

    def _export(self, final: Path | None, best: Path | None) -> None:
        source = best if self.cfg.export_which == "best" and best is not None else final
        if self.cfg.export_which == "best" and best is None:
            tqdm.write("note: no validation ran, so there is no best model; exporting the final one")
        model, spec = load_model(source)
        inputs = [self.cfg.datalist, self.cfg.init]
        check_export(self.cfg.export, self.out, self._overwrite_export, inputs)  # again: hours have passed
        save_model(self.cfg.export, model, spec)

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM: finish the step, save a checkpoint, stop. A second Ctrl-C aborts."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            if self.ctx.is_main:
                tqdm.write("stopping after this step; a checkpoint will be written (Ctrl-C again to abort)")

        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


# --- helpers ---------------------------------------------------------------------------------


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """LR factor per step: linear warm-up to 1 over ``warmup`` steps, then cosine decay to 0
    (per-step version of MONAI's LinearWarmupCosineAnnealingLR, eta_min 0)."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        span = max(total - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))

    return factor


def freeze_unused_parameters(model: torch.nn.Module) -> list[str]:
    """Stop training parameters that no forward pass uses; returns their names.

    MONAI's TransformerBlock (UNETR's ViT) always builds ``norm_cross_attn`` but uses it only
    with cross-attention. A parameter that never gets a gradient makes DDP wait for it forever
    (or, with find_unused_parameters, costs a graph traversal every step).
    """
    names = []
    for prefix, module in model.named_modules():
        norm = getattr(module, "norm_cross_attn", None)
        if norm is not None and isinstance(getattr(module, "cross_attn", None), torch.nn.Identity):
            for name, param in norm.named_parameters():
                param.requires_grad_(False)
                names.append(f"{prefix}.norm_cross_attn.{name}")
    return names


def _resolve_amp(amp: str, device: torch.device) -> str | None:
    if amp == "auto":
        return "fp16" if device.type == "cuda" else None
    if amp == "none":
        return None
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("--amp fp16 needs a CUDA device; use --amp bf16 or none on the CPU")
    return amp


def _override_spec(spec: ModelSpec, cfg: TrainConfig) -> ModelSpec:
    data = spec.to_dict()
    if cfg.spacing is not None:
        data["target_spacing"] = list(cfg.spacing)
    if cfg.window is not None:
        data["intensity_window"] = list(cfg.window)
    if cfg.roi is not None:
        data["roi_size"] = list(cfg.roi)
    return ModelSpec.from_dict(data)


def _mean_over_ranks(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    import torch.distributed as dist

    keys = sorted(values)
    t = torch.stack([values[k].reshape(()) for k in keys])
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.unbind()))
