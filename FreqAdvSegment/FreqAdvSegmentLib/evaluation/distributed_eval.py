"""``freqadv evaluate`` under torchrun: cases sharded across ranks, rows gathered on rank 0.

    torchrun --nproc_per_node 4 -m FreqAdvSegmentLib.cli evaluate datalist.json --models a b ...

Rank r evaluates cases r, r + N, r + 2N, ... of the datalist; rank 0 gathers every rank's rows,
puts them back in datalist order and writes results.csv, summary.json and summary.md exactly as a
single process would. Run as a single process it is ``evaluate.evaluate_datalist`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import evaluate
from ..files.output_dir import check_output_target
from ..job.pipeline import AttackRequest, RunOptions, StageProgress
from ..training.distributed import (
    DistContext,
    all_gather_objects,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
    launched_distributed,
)


def evaluate_datalist_distributed(
    datalist: str | Path,
    models: Sequence[str],
    attacks: Sequence[AttackRequest],
    out_dir: str | Path,
    options: RunOptions | None = None,
    device: str = "auto",
    split: str = "validation",
    overwrite: bool = False,
    progress: StageProgress | None = None,
    ctx: DistContext | None = None,
) -> str:
    """``evaluate_datalist`` sharded over the ranks of a torchrun job.

    Same arguments and outputs as :func:`FreqAdvSegmentLib.evaluation.evaluate.evaluate_datalist`; returns
    summary.md's text on rank 0 and "" on the other ranks (which write nothing).
    """
    if ctx is None and not launched_distributed():
        return evaluate.evaluate_datalist(datalist, models, attacks, out_dir, options, device, split,
                                          overwrite, progress)
    own = ctx is None
    ctx = ctx or init_distributed(device)
    try:
        cases = evaluate.load_datalist(datalist, split)
        # Fail before anyone spends an hour attacking; every rank raises, so none is left waiting.
        problem = _output_problem(out_dir, overwrite) if ctx.is_main else None
        problem = broadcast_object(ctx, problem)
        if problem:
            raise FileExistsError(problem)
        mine = list(range(ctx.rank, len(cases), ctx.world_size))
        names = evaluate.case_names(cases)  # from the whole datalist, so every rank names cases alike
        rows = evaluate.evaluate_cases(models, [cases[i] for i in mine], attacks, options or RunOptions(),
                                       ctx.device, progress if ctx.is_main else None,
                                       names=[names[i] for i in mine])
        gathered = all_gather_objects(ctx, (mine, rows))
        text = ""
        if ctx.is_main:
            ordered = _in_datalist_order(models, gathered)
            text = evaluate.write_results(ordered, out_dir, datalist, split, len(cases), overwrite)
        barrier(ctx)  # every rank leaves when the results are written
        return text
    finally:
        if own:
            cleanup(ctx)


def _in_datalist_order(models: Sequence[str], parts: list[tuple[list[int], dict]]) -> list[dict[str, Any]]:
    """Rows ordered model by model, case by case in datalist order, as a single process writes them."""
    rows = []
    for name in models:
        by_case = {i: case_rows for indices, per_model in parts for i, case_rows in zip(indices, per_model[name])}
        for i in sorted(by_case):
            rows += by_case[i]
    return rows


def _output_problem(out_dir: str | Path, overwrite: bool) -> str | None:
    """Why the output folder cannot be written (io's own check), or None."""
    try:
        check_output_target(Path(out_dir), overwrite)
    except FileExistsError as error:
        return str(error)
    return None
