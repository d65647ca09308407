#!/usr/bin/env python
"""Robustness curves: Dice and perturbation size (SSIM, L-inf) of each model under attacks swept
over their strength, on every case of a datalist.

A stand-in for ``freqadv curve`` (not on main when the robust twins were evaluated): the same
engine (``pipeline.run_job``: one clean segmentation per case, then every attack against the
reference labels), one CSV row per model, case and attack point, so that models can be compared
at equal budget and at equal SSIM.

    python scripts/robust_curves.py DATALIST -o OUT --models natural=demo-unet vaft=path.safetensors \
        --sweep pgd eps 1/255,2/255,4/255,8/255 --sweep vafa:public-code q_max 5,10,20,30 \
        --set steps=5 --set block_size=8

``--set`` values go to every swept attack that takes the parameter. Writes OUT/curve.csv
(atomically). Intensities are on the engine's [0, 1] scale; ``shown`` is the value in the units
the attack's parameter is shown in (x255 for eps and std).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT / "FreqAdvSegment") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO_ROOT / "FreqAdvSegment"))

from FreqAdvSegmentLib.attacks import registry  # noqa: E402
from FreqAdvSegmentLib.evaluate import load_datalist  # noqa: E402
from FreqAdvSegmentLib.inference import load_segmentation_model  # noqa: E402
from FreqAdvSegmentLib.io import read_image  # noqa: E402
from FreqAdvSegmentLib.pipeline import AttackRequest, RunOptions, run_job  # noqa: E402

COLUMNS = ["model", "case", "method", "param", "value", "shown", "ssim", "linf", "psnr_db",
           "mean_dice", "mean_hd95_mm", "seconds"]


def sweep_requests(sweeps: list[tuple[str, str, str]], common: dict[str, str]) -> list[AttackRequest]:
    """One AttackRequest per swept point; values parsed and checked by the attack's own Param."""
    requests = []
    for method, name, values in sweeps:
        spec, _ = registry.split_method(method)
        takes = spec.param_names
        if name not in takes:
            raise ValueError(f"--sweep {method}: it has no parameter {name!r}; it takes {', '.join(takes)}")
        fixed = {k: spec.param(k).parse(v) for k, v in common.items() if k in takes and k != name}
        for text in values.split(","):
            requests.append(AttackRequest(method, {**fixed, name: spec.param(name).parse(text)}))
    return requests


def curve_rows(model_label: str, model: str, cases: list[dict[str, Path]], requests: list[AttackRequest],
               sweeps: list[tuple[str, str, str]], device: str, seed: int) -> list[dict[str, Any]]:
    """Rows for one model: the clean point (SSIM 1) and every attack point, per case."""
    loaded = load_segmentation_model(model, device)
    swept = [name for _, name, values in sweeps for _ in values.split(",")]
    rows = []
    for case in cases:
        job = run_job(read_image(case["image"]), loaded, requests, read_image(case["label"]),
                      RunOptions(seed=seed))
        base = {"model": model_label, "case": case["image"].name}
        clean = job.clean_metrics
        rows.append({**base, "method": "clean", "param": "", "value": 0.0, "shown": 0.0, "ssim": 1.0,
                     "linf": 0.0, "psnr_db": float("inf"), "mean_dice": clean["mean_dice"],
                     "mean_hd95_mm": clean["mean_hd95_mm"], "seconds": 0.0})
        for outcome, name in zip(job.outcomes, swept):
            request = outcome.request
            method = request.method if request.preset is None else f"{request.method}:{request.preset}"
            scale = registry.get(request.method).param(name).display_scale or 1
            value = request.params[name]
            pert, ref = outcome.metrics["perturbation"], outcome.metrics["vs_reference"]
            rows.append({**base, "method": method, "param": name, "value": value,
                         "shown": round(value * scale, 6), "ssim": pert["ssim"], "linf": pert["linf"],
                         "psnr_db": pert["psnr_db"], "mean_dice": ref["mean_dice"],
                         "mean_hd95_mm": ref["mean_hd95_mm"], "seconds": round(outcome.seconds, 1)})
    return rows


def write_csv_atomic(rows: list[dict[str, Any]], path: Path) -> None:
    """CSV written to a temporary file in the same folder, then renamed over ``path``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(buf.getvalue())
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("datalist")
    p.add_argument("-o", "--output", required=True, help="folder for curve.csv")
    p.add_argument("--split", default="validation")
    p.add_argument("--models", nargs="+", required=True, help="LABEL=MODEL (registry name or file)")
    p.add_argument("--sweep", nargs=3, action="append", required=True, metavar=("METHOD", "PARAM", "VALUES"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        common = dict(item.split("=", 1) for item in args.set)
        models = [m.split("=", 1) if "=" in m else (m, m) for m in args.models]
        requests = sweep_requests(args.sweep, common)
        cases = load_datalist(args.datalist, args.split)
    except (ValueError, OSError) as err:  # a bad sweep or an unreadable datalist: one line
        print(f"robust_curves: error: {err}", file=sys.stderr)
        return 2
    rows = []
    for label, model in models:
        rows += curve_rows(label, model, cases, requests, args.sweep, args.device, args.seed)
        write_csv_atomic(rows, Path(args.output) / "curve.csv")  # after each model: partial results survive
        print(f"{label}: {len(requests)} attack points on {len(cases)} case(s) done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
