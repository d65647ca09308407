"""Where the time and memory of one attack job go, as a share of the attack's own seconds.

Runs the whole job in this process (read, segment, attack, metrics, budget, writing) on

* the shipped sample CT (122 x 101 x 112 at 3 mm), and
* a full-resolution CT made from it: the sample resampled to 0.75 x 0.75 x 1.0 mm
  (488 x 404 x 336 = 66 Mvox, a normal abdominal CT; linear for the CT, nearest for the labels),
  written once into ``benchmarks/.cache/`` (git-ignored) and reused,

and prints, for each stage, its seconds (time inside nested stages is counted only there), that
time as a multiple of the attack's own seconds (``AttackOutcome.seconds``, report.json
``seconds``), and the peak resident memory (RSS) reached while it ran. The figures that matter
are ratios measured in one process, so a shared machine changes them less than raw seconds.

    python benchmarks/end_to_end.py                          # both CTs, PGD 10 steps, CPU
    python benchmarks/end_to_end.py --case large --steps 1   # quick look while developing
    python benchmarks/end_to_end.py --method pgd --method vafa --steps 3

Goal (issue 25): on the large CT, total wall <= 2.0 x the attack's seconds with peak RSS <= 3 GB
on 2 CPU cores; the sample no slower than before.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import SimpleITK as sitk

CACHE = Path(__file__).resolve().parent / ".cache"
LARGE_SPACING = (0.75, 0.75, 1.0)


# --- the large CT ---------------------------------------------------------------------------------


def large_case() -> tuple[Path, Path]:
    """(CT, labels) of the sample resampled to 0.75 x 0.75 x 1.0 mm, made once into the cache."""
    from FreqAdvSegmentLib.samples.sample_data import sample_ct_path, sample_labels_path

    CACHE.mkdir(exist_ok=True)
    ct_path, labels_path = CACHE / "patientA_ct_fullres.nii.gz", CACHE / "patientA_labels_fullres.nii.gz"
    if not (ct_path.exists() and labels_path.exists()):
        ct, labels = sitk.ReadImage(str(sample_ct_path())), sitk.ReadImage(str(sample_labels_path()))
        size = [round(n * s / t) for n, s, t in zip(ct.GetSize(), ct.GetSpacing(), LARGE_SPACING)]
        for image, interpolator, path in ((ct, sitk.sitkLinear, ct_path), (labels, sitk.sitkNearestNeighbor, labels_path)):
            out = sitk.Resample(image, size, sitk.Transform(), interpolator, image.GetOrigin(), LARGE_SPACING,
                                image.GetDirection(), 0, image.GetPixelID())
            sitk.WriteImage(out, str(path), useCompression=True, compressionLevel=1)
    return ct_path, labels_path


# --- stage timing -----------------------------------------------------------------------------------


class RssSampler:
    """Peak RSS between ``mark()`` calls, sampled from /proc every few milliseconds."""

    def __init__(self, every_s: float = 0.005) -> None:
        self.every_s, self.peak, self._stop = every_s, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        threading.Thread(target=self._run, daemon=True).start()

    def rss(self) -> int:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.every_s)

    def mark(self) -> int:
        """The peak since the last mark (at least the RSS now); starts a new interval."""
        peak, now = max(self.peak, self.rss()), self.rss()
        self.peak = now
        return peak

    def stop(self) -> None:
        self._stop.set()


class Stages:
    """Self time (nested stages excluded) and peak RSS per named stage."""

    def __init__(self, sampler: RssSampler) -> None:
        self.sampler, self.seconds, self.peak, self._stack = sampler, {}, {}, []

    def wrap(self, owner, attr: str, name: str | None = None) -> None:
        """Replace ``owner.attr`` (a module function or a class method) by a timed version."""
        fn, label = getattr(owner, attr), name or attr

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self._enter(label)
            try:
                return fn(*args, **kwargs)
            finally:
                self._leave()

        setattr(owner, attr, timed)

    def _enter(self, label: str) -> None:
        self._account()
        self._stack.append(label)

    def _leave(self) -> None:
        self._account()
        self._stack.pop()

    def _account(self) -> None:
        """Book the time and peak since the last event to the stage on top of the stack."""
        now, peak = time.perf_counter(), self.sampler.mark()
        label = self._stack[-1] if self._stack else "other (outside the timed stages)"
        last = getattr(self, "_last", now)
        self.seconds[label] = self.seconds.get(label, 0.0) + now - last
        self.peak[label] = max(self.peak.get(label, 0), peak)
        self._last = now


def instrument(stages: Stages) -> None:
    """Time the job's stages where the pipeline calls them."""
    from FreqAdvSegmentLib.attacks.base import Attack
    from FreqAdvSegmentLib.evaluation import report
    from FreqAdvSegmentLib.files import images
    from FreqAdvSegmentLib.job import inference, pipeline

    for attr in ("labels_onto_image_grid", "check_run_memory", "prepare", "segment", "labels_to_original",
                 "_ground_truth_on_model_grid", "_metrics", "perturbation_to_hu", "flip_rate", "summarize",
                 "_budget_metrics", "organ_drops", "label_changes", "adversarial_to_original",
                 "label_change_maps", "write_image"):
        if hasattr(pipeline, attr):
            stages.wrap(pipeline, attr, f"{attr}")
    for attr in ("budget", "body_mask"):  # where they are looked up: the measures module or the pipeline
        if hasattr(pipeline, attr):
            stages.wrap(pipeline, attr)
    stages.wrap(report, "write_report")
    stages.wrap(images, "read_image")
    stages.wrap(inference, "load_segmentation_model", "load model")
    stages.wrap(Attack, "run", "ATTACK (attack.run)")
    stages.wrap(Attack, "predict", "attack.predict (segment the adversarial)")


# --- one job ------------------------------------------------------------------------------------------


def run_case(name: str, ct: Path, labels: Path, methods: list[str], steps: int, device: str, threads: int | None) -> None:
    import torch

    from FreqAdvSegmentLib.files import images
    from FreqAdvSegmentLib.job import inference, pipeline

    if threads:
        torch.set_num_threads(threads)
    sampler = RssSampler()
    stages = Stages(sampler)
    instrument(stages)
    start = time.perf_counter()
    stages._account()
    image = images.read_image(ct)
    gt = images.read_image(labels)
    loaded = inference.load_segmentation_model("demo-unet", device)
    requests = [pipeline.AttackRequest(m, {"steps": steps}) for m in methods]
    job = pipeline.run_job(image, loaded, requests, gt, pipeline.RunOptions(seed=0))
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        pipeline.write_outputs(job, Path(tmp) / "out")
        stages._account()
    total = time.perf_counter() - start
    sampler.stop()
    attack_s = sum(o.seconds for o in job.outcomes)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    size = "x".join(map(str, image.GetSize()))
    print(f"\n== {name}: {size} = {image.GetNumberOfPixels() / 1e6:.1f} Mvox, model grid "
          f"{'x'.join(map(str, job.ctx.model_shape))}; {', '.join(methods)} {steps} steps on {device}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'stage':48s} {'seconds':>9s} {'x attack':>9s} {'peak RSS GB':>12s}")
    for label, seconds in sorted(stages.seconds.items(), key=lambda kv: -kv[1]):
        print(f"{label:48s} {seconds:9.2f} {seconds / attack_s:9.2f} {stages.peak[label] / 1e9:12.2f}")
    print(f"{'TOTAL wall':48s} {total:9.2f} {total / attack_s:9.2f} {peak / 1e9:12.2f}")
    print(f"attack's own seconds (sum of AttackOutcome.seconds): {attack_s:.2f}; "
          f"total / attack = {total / attack_s:.2f}x (goal on the large CT: <= 2.0x, peak RSS <= 3 GB)")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=["sample", "large", "both"], default="both")
    parser.add_argument("--method", action="append", default=None, help="attack(s) to run (default: pgd)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    from FreqAdvSegmentLib.samples.sample_data import sample_ct_path, sample_labels_path

    CACHE.mkdir(exist_ok=True)
    methods = args.method or ["pgd"]
    # Each case in its own process: peak RSS (ru_maxrss) and the stage wrappers are per process.
    if args.case == "both":
        import subprocess

        for case in ("sample", "large"):
            cmd = [sys.executable, __file__, "--case", case, "--steps", str(args.steps), "--device", args.device]
            cmd += [a for m in methods for a in ("--method", m)]
            cmd += ["--threads", str(args.threads)] if args.threads else []
            subprocess.run(cmd, check=True)
        return
    if args.case == "sample":
        run_case("sample CT", sample_ct_path(), sample_labels_path(), methods, args.steps, args.device, args.threads)
    else:
        t = time.perf_counter()
        ct, labels = large_case()
        print(f"large CT ready in {time.perf_counter() - t:.1f} s: {ct}", file=sys.stderr)
        run_case("full-resolution CT", ct, labels, methods, args.steps, args.device, args.threads)


if __name__ == "__main__":
    main()
