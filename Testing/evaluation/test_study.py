"""The study runner: units, parts, resume after a kill, merge, transfer (evaluation/study.py).

Real models (the shipped demo-unet and its VAFT twin), real CT (two crops of the shipped sample),
real attacks with tiny budgets of steps, a tiny sliding window: a few seconds per study on a CPU.
"""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

import FreqAdvSegmentLib
from FreqAdvSegmentLib.cli import main
from FreqAdvSegmentLib.evaluation.study import run_study
from FreqAdvSegmentLib.evaluation.units import part_of, plan_study
from FreqAdvSegmentLib.job.pipeline import AttackRequest, RunOptions
from FreqAdvSegmentLib.samples.sample_data import sample_ct_path, sample_labels_path

MODELS = ["demo-unet", "demo-unet-vaft"]
ATTACKS = ["fgsm", "pgd,steps=2"]


@pytest.fixture(scope="module")
def datalist(tmp_path_factory) -> Path:
    """Two cases: two 40x40x24-voxel crops of the sample CT (and its labels), both through organs."""
    folder = tmp_path_factory.mktemp("data")
    ct, labels = sitk.ReadImage(str(sample_ct_path())), sitk.ReadImage(str(sample_labels_path()))
    cases = []
    for i, start in enumerate([(30, 30, 40), (50, 40, 56)]):
        for name, image in (("ct", ct), ("labels", labels)):
            sitk.WriteImage(sitk.RegionOfInterest(image, (40, 40, 24), start), str(folder / f"case{i}_{name}.nii.gz"))
        cases.append({"image": f"case{i}_ct.nii.gz", "label": f"case{i}_labels.nii.gz"})
    path = folder / "datalist.json"
    path.write_text(json.dumps({"validation": cases}), encoding="utf-8")
    return path


def _argv(datalist: Path, out: Path, *extra: str) -> list[str]:
    methods = [arg for a in ATTACKS for arg in ("--method", a)]
    return ["evaluate", str(datalist), "--models", *MODELS, *methods, "--device", "cpu", "--roi", "32",
            "-o", str(out), *extra]


def _tables(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def whole(datalist, tmp_path_factory) -> Path:
    """The transfer study as one part."""
    out = tmp_path_factory.mktemp("whole") / "out"
    assert main(_argv(datalist, out, "--transfer")) == 0
    return out


def test_three_parts_one_killed_and_resumed_merge_to_the_one_part_tables(datalist, whole, tmp_path, capsys):
    parts = [tmp_path / f"part{k}" for k in range(3)]
    for k in (0, 2):
        assert main(_argv(datalist, parts[k], "--transfer", "--num-parts", "3", "--part-id", str(k))) == 0
    assert not (parts[0] / "results.csv").exists()  # a part alone is not the study

    # Part 1 is killed while crafting an attack on its second model: the units it finished stay, none is half-written.
    seen = []

    def kill(stage: str, done: int, total: int) -> None:
        if done == 0:
            seen.append(stage)
        if stage != "segment" and done == 0 and seen.count("segment") >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(datalist, MODELS, [AttackRequest.from_text(a) for a in ATTACKS], parts[1],
                  RunOptions(roi_size=(32, 32, 32)), "cpu", transfer=True, num_parts=3, part_id=1, progress=kill)
    killed = {p.name: p.stat().st_mtime_ns for p in (parts[1] / "units").glob("*.json")}
    assert 0 < len(killed) < 20 // 3 and not list((parts[1] / "units").glob(".*"))

    # Merging now says what is missing; rerunning the same command resumes without redoing finished units.
    assert main(["evaluate", "merge", *map(str, parts), "-o", str(tmp_path / "early")]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(_argv(datalist, parts[1], "--transfer", "--num-parts", "3", "--part-id", "1")) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (parts[1] / "units").glob("*.json")}
    assert all(after[name] == mtime for name, mtime in killed.items()) and len(after) > len(killed)

    assert sum(len(list((p / "units").glob("*.json"))) for p in parts) == 20  # 2 cases x (2 clean + 2x2x2 transfer)
    merged = tmp_path / "merged"
    assert main(["evaluate", "merge", *map(str, reversed(parts)), "-o", str(merged)]) == 0
    mine, reference = _tables(merged), _tables(whole)
    assert set(mine) >= {"results.csv", "summary.json", "summary.md", "study.json", "transfer_fgsm.csv", "transfer_pgd.csv"}
    assert set(mine) == set(reference)
    for name in mine:
        assert mine[name] == reference[name], name


def test_transfer_diagonal_equals_the_white_box_study(datalist, whole, tmp_path):
    white = tmp_path / "white"
    assert main(_argv(datalist, white)) == 0
    summary = json.loads((white / "summary.json").read_text(encoding="utf-8"))
    for attack in ("fgsm", "pgd"):
        with (whole / f"transfer_{attack}.csv").open(encoding="utf-8") as f:
            matrix = {row["source \\ target"]: row for row in csv.DictReader(f)}
        assert set(matrix) == set(MODELS)
        for model in MODELS:
            drop = summary[model]["clean"]["mean_dice"] - summary[model][attack]["mean_dice"]
            assert float(matrix[model][model]) == pytest.approx(drop, abs=1e-12), (attack, model)
    # The attacks did something, and the transferred rows are the targets' own predictions.
    with (whole / "transfer_fgsm.csv").open(encoding="utf-8") as f:
        fgsm = {row["source \\ target"]: row for row in csv.DictReader(f)}
    assert float(fgsm["demo-unet"]["demo-unet"]) > 0.01
    results = (whole / "results.csv").read_text(encoding="utf-8")
    assert "fgsm<-demo-unet-vaft" in results and "pgd<-demo-unet" in results


def test_a_folder_of_another_study_is_refused(datalist, whole, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(_argv(datalist, out, "--num-parts", "4", "--part-id", "3")) == 0
    argv = _argv(datalist, out, "--num-parts", "4", "--part-id", "2", "--seed", "7")
    assert main(argv) == 2
    assert "other settings" in capsys.readouterr().err
    assert main(["evaluate", "merge", str(out), str(whole), "-o", str(tmp_path / "m")]) == 2
    assert "different studies" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_torchrun_ranks_and_a_second_part_in_one_folder_give_the_same_tables(datalist, whole, tmp_path):
    # Part 0 of 2 split again over 2 gloo ranks; part 1 as one process into the same folder: the
    # units never collide, and the run that completes the folder writes the tables.
    out = tmp_path / "shared"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(FreqAdvSegmentLib.__file__).parents[1])}
    for _ in range(2):  # a second try only if another process took the free port meanwhile
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "FreqAdvSegmentLib.cli",
               *_argv(datalist, out, "--transfer", "--num-parts", "2", "--part-id", "0")]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=240, check=False)
        if "address already in use" not in proc.stderr.lower():
            break
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((out / "units").glob("*.json"))) == 2 * 2 * 2 + 2  # the attack groups: 8 of 16 units; 2 of 4 clean
    assert main(_argv(datalist, out, "--transfer", "--num-parts", "2", "--part-id", "1")) == 0
    # The ranks run one thread each and this process more: float sums in the budget may differ in
    # their last bits (seen: 6.570264760003841 vs ...747), so numbers are compared to 10 digits.
    assert _rounded(_tables(out)) == _rounded(_tables(whole))


def _rounded(tables: dict[str, str]) -> dict[str, str]:
    """Every number with a fraction in the tables' text written to 10 significant digits."""
    number = re.compile(r"-?\d+\.\d+(?:e-?\d+)?")
    return {name: number.sub(lambda m: f"{float(m.group()):.10g}", text) for name, text in tables.items()}


def test_parts_cover_every_unit_once_and_deal_the_attacks_out_evenly():
    groups = plan_study([f"c{i}" for i in range(5)], MODELS, ["fgsm", "pgd", "vafa"], transfer=True)
    keys = [u.key for g in groups for u in g.units]
    assert len(keys) == len(set(keys)) == 5 * (2 + 2 * 3 * 2)
    assert [u.index for g in groups for u in g.units] == list(range(len(keys)))
    for n in (1, 3, 7):
        parts = [part_of(groups, n, k) for k in range(n)]
        assert sorted(u.key for p in parts for g in p for u in g.units) == sorted(keys)
        attacked = [sum(g.attack is not None for g in p) for p in parts]
        assert max(attacked) - min(attacked) <= 1  # the costly groups are spread, not stacked on some parts


def test_a_bad_part_or_merge_is_one_line(datalist, tmp_path, capsys):
    assert main(_argv(datalist, tmp_path / "o", "--num-parts", "3", "--part-id", "3")) == 2
    assert "--part-id must be in 0..2" in capsys.readouterr().err
    assert main(["evaluate", "merge", str(tmp_path), "-o", str(tmp_path / "m")]) == 2
    assert "no units/ folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "m").exists()
