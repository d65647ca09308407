"""Fault injection, round 3 (issues 26 and 29): runs that must not touch what they did not create.

Same contract as test_faults.py, over the real ``freqadv`` command line: exit 2, one line on
stderr (no traceback), and every file and folder of the case, hidden ones, links and the files
links point at, byte-for-byte as it was. Here the state is read with lstat (a link is recorded
as a link, never followed), so replacing a link or writing through one both show.
"""

from __future__ import annotations

import hashlib
import json
import locale
import os
import shutil
import struct
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from safetensors.torch import save_file

from FreqAdvSegmentLib.cli import main
from FreqAdvSegmentLib.files.output_dir import STAMP, atomic_output_dir
from FreqAdvSegmentLib.samples.sample_data import sample_ct_path, sample_labels_path

CT = sample_ct_path()
LABELS = sample_labels_path()
DEMO_MODEL = Path(__file__).parents[2] / "FreqAdvSegment/FreqAdvSegmentLib/resources/models/demo_unet.safetensors"


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (lstat: links recorded as their target text, not followed)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = "link->" + os.readlink(path)
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = _fingerprint(path)
    return out


def _fingerprint(path: Path) -> str:
    """SHA-256 of a file; of its size, head and tail for a huge (sparse) one, which reading whole takes minutes."""
    size = path.stat().st_size
    if size <= 64 << 20:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    with path.open("rb") as f:
        head = f.read(1 << 20)
        f.seek(size - (1 << 20))
        return hashlib.sha256(str(size).encode() + head + f.read()).hexdigest()


def copy_ct(d: Path, name: str = "ct.nii.gz") -> Path:
    shutil.copy(CT, d / name)
    return d / name


def own_results(folder: Path, files: dict[str, bytes] | None = None) -> Path:
    """A results folder FreqAdvSegment really wrote (stamp with run id and hashes)."""
    with atomic_output_dir(folder) as tmp:
        for name, data in (files or {"segmentation.nii.gz": b"old results"}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
    return folder


def user_file(d: Path, name: str = "thesis.docx") -> Path:
    (d / name).write_text("years of work")
    return d / name


Builder = Callable[[Path], tuple[list[str], str]]
CASES: dict[str, Builder] = {}


def case(name: str):
    def register(fn: Builder) -> Builder:
        CASES[name] = fn
        return fn

    return register


def _segment(d: Path, inp, *extra: str, out: str = "out") -> list[str]:
    return ["segment", str(inp), "--device", "cpu", "-o", str(d / out), *extra]


def _attack(d: Path, *extra: str) -> list[str]:
    return ["attack", str(copy_ct(d)), "--device", "cpu", "-o", str(d / "out"), *extra]


# --- stale clean-up: only names the program made, matched exactly ------------------------------


@case("failed run keeps the user's .out.old-*/.out.tmp-* folders")
def _(d):
    (d / ".out.old-backup").mkdir()
    user_file(d / ".out.old-backup")
    (d / ".out.tmp-notes").mkdir()
    (d / ".out.tmp-123-abcdef").mkdir()  # the old naming, with a dead PID
    # Our exact naming, but no marker inside: the user's, kept.
    (d / ".out.freqadv-tmp-999999999-0123456789ab").mkdir()
    user_file(d / ".out.freqadv-tmp-999999999-0123456789ab", "notes.txt")
    return _segment(d, d / "nope.nii.gz"), "does not exist"


@case("-o 'x/*' is a name, not a glob")
def _(d):
    (d / "x").mkdir()
    (d / "x" / ".config.old-2023").mkdir()
    user_file(d / "x" / ".config.old-2023", "settings.ini")
    (d / "x" / ".ssh.tmp-1").mkdir()
    return _segment(d, d / "nope.nii.gz", out="x/*"), "does not exist"


@case("-o 'x/[a-z]*' leaves other outputs' backups")
def _(d):
    (d / "x").mkdir()
    (d / "x" / ".results.old-1-abc").mkdir()
    user_file(d / "x" / ".results.old-1-abc", "run1.csv")
    return _segment(d, d / "nope.nii.gz", out="x/[a-z]*"), "does not exist"


@case("a set-aside old folder whose stamp does not verify is kept")
def _(d):
    old = d / ".out.freqadv-old-999999999-0123456789ab"
    old.mkdir()
    user_file(old)
    (old / STAMP).write_text(json.dumps({"files": ["thesis.docx"]}))
    return _segment(d, d / "nope.nii.gz"), "does not exist"


# --- --overwrite: the stamp is verified, links are never followed --------------------------------


@case("--overwrite with a forged stamp listing the user's file")
def _(d):
    (d / "out").mkdir()
    user_file(d / "out")
    (d / "out" / STAMP).write_text(json.dumps({"files": ["thesis.docx"]}))
    return _segment(d, copy_ct(d), "--overwrite"), "differ from what FreqAdvSegment wrote"


@case("--overwrite with a forged stamp of the new form, wrong hash")
def _(d):
    (d / "out").mkdir()
    user_file(d / "out")
    stamp = {"run_id": "0" * 32, "dirs": [], "files": {"thesis.docx": {"size": 13, "sha256": "0" * 64}}}
    (d / "out" / STAMP).write_text(json.dumps(stamp))
    return _segment(d, copy_ct(d), "--overwrite"), "differ from what FreqAdvSegment wrote"


@case("--overwrite on results whose file was edited")
def _(d):
    own_results(d / "out")
    (d / "out" / "segmentation.nii.gz").write_bytes(b"hand-corrected segmentation")
    return _segment(d, copy_ct(d), "--overwrite"), "segmentation.nii.gz"


@case("--overwrite on results holding a link to a user file")
def _(d):
    user_file(d)
    own_results(d / "out")
    (d / "out" / "segmentation.nii.gz").unlink()
    (d / "out" / "segmentation.nii.gz").symlink_to(d / "thesis.docx")
    return _segment(d, copy_ct(d), "--overwrite"), "symbolic link"


@case("--overwrite on results holding the user's hidden folder")
def _(d):
    own_results(d / "out")
    (d / "out" / ".git").mkdir()
    return _segment(d, copy_ct(d), "--overwrite"), ".git"


@case("--overwrite through an output that is a link to results elsewhere")
def _(d):
    own_results(d / "elsewhere")
    (d / "out").symlink_to(d / "elsewhere")
    return _segment(d, copy_ct(d), "--overwrite"), "symbolic link"


@case("output is a link to the user's empty folder")
def _(d):
    (d / "mine").mkdir()
    (d / "out").symlink_to(d / "mine")
    return _segment(d, copy_ct(d)), "symbolic link"


@case("output is a dangling link")
def _(d):
    (d / "out").symlink_to(d / "nowhere")
    return _segment(d, copy_ct(d)), "symbolic link"


@case("evaluate --overwrite with a forged stamp")
def _(d):
    copy_ct(d)
    (d / "list.json").write_text(json.dumps({"validation": [{"image": "ct.nii.gz", "label": "ct.nii.gz"}]}))
    (d / "out").mkdir()
    user_file(d / "out")
    (d / "out" / STAMP).write_text(json.dumps({"files": ["thesis.docx"]}))
    return ["evaluate", str(d / "list.json"), "-o", str(d / "out"), "--overwrite"], "differ"


# --- models import ---------------------------------------------------------------------------------


@case("models import -o LINK --overwrite")
def _(d):
    shutil.copy(DEMO_MODEL, d / "other.safetensors")
    (d / "link.safetensors").symlink_to(d / "other.safetensors")
    return ["models", "import", str(DEMO_MODEL), "-o", str(d / "link.safetensors"), "--overwrite"], "symbolic link"


@case("models import over its own source")
def _(d):
    shutil.copy(DEMO_MODEL, d / "m.safetensors")
    return ["models", "import", str(d / "m.safetensors"), "-o", str(d / "m.safetensors"), "--overwrite"], "input of this run"


@case("models import over an existing file")
def _(d):
    shutil.copy(DEMO_MODEL, d / "other.safetensors")
    return ["models", "import", str(DEMO_MODEL), "-o", str(d / "other.safetensors")], "--overwrite"


# --- train -----------------------------------------------------------------------------------------


def _datalist(d: Path, name: str = "list.json") -> Path:
    copy_ct(d)
    shutil.copy(LABELS, d / "labels.nii.gz")
    entry = {"image": str(d / "ct.nii.gz"), "label": str(d / "labels.nii.gz")}
    (d / name).write_text(json.dumps({"training": [entry], "validation": []}))
    return d / name


def _train(d: Path, datalist: Path, *extra: str, out: str = "run") -> list[str]:
    return ["train", str(datalist), "-o", str(d / out), "--device", "cpu", "--max-steps", "1", "--no-progress",
            "--no-tensorboard", "--init", "demo-unet", *extra]


@case("train -o a folder of the user's files")
def _(d):
    (d / "run").mkdir()
    (d / "run" / "config.json").write_text('{"mine": true}')
    (d / "run" / "summary.json").write_text("{}")
    return _train(d, _datalist(d)), "not empty"


@case("train with the datalist as the run folder's config.json")
def _(d):
    (d / "run").mkdir()
    return _train(d, _datalist(d / "run", "config.json")), "config.json"


@case("train --init X --export X")
def _(d):
    shutil.copy(DEMO_MODEL, d / "m.safetensors")
    argv = _train(d, _datalist(d), "--export", str(d / "m.safetensors"), "--overwrite")
    argv[argv.index("demo-unet")] = str(d / "m.safetensors")
    return argv, "input of this run"


@case("train --export over an unrelated file")
def _(d):
    shutil.copy(DEMO_MODEL, d / "colleague.safetensors")
    return _train(d, _datalist(d), "--export", str(d / "colleague.safetensors")), "--overwrite"


@case("train --export through a link")
def _(d):
    shutil.copy(DEMO_MODEL, d / "colleague.safetensors")
    (d / "link.safetensors").symlink_to(d / "colleague.safetensors")
    return _train(d, _datalist(d), "--export", str(d / "link.safetensors"), "--overwrite"), "symbolic link"


@case("train -o a link")
def _(d):
    (d / "mine").mkdir()
    (d / "run").symlink_to(d / "mine")
    return _train(d, _datalist(d)), "symbolic link"


@case("train --resume into the user's folder")
def _(d):
    (d / "run").mkdir()
    user_file(d / "run")
    return ["train", "-o", str(d / "run"), "--resume"], "nothing to resume"


@case("train --lr 1e309")
def _(d):
    return _train(d, _datalist(d), "--lr", "1e309"), "--lr"


# --- curve's partial file ----------------------------------------------------------------------------


def _curve(d: Path, *extra: str) -> list[str]:
    return ["curve", str(copy_ct(d)), "--method", "pgd", "--points", "pgd=1/255", "--device", "cpu",
            "-o", str(d / "out"), *extra]


@case("curve: the partial file is a link to a user file")
def _(d):
    user_file(d)
    (d / ".out.curve-partial.jsonl").symlink_to(d / "thesis.docx")
    return _curve(d), "symbolic link"


@case("curve --resume: the partial file is a link to a user file")
def _(d):
    user_file(d)
    (d / ".out.curve-partial.jsonl").symlink_to(d / "thesis.docx")
    return _curve(d, "--resume"), "symbolic link"


@case("curve --points pgd=1e309")
def _(d):
    return ["curve", str(copy_ct(d)), "--method", "pgd", "--points", "pgd=1e309", "--device", "cpu",
            "-o", str(d / "out")], "1e309"


# --- numbers ---------------------------------------------------------------------------------------


@case("--eps 1e309")
def _(d):
    return _attack(d, "--method", "pgd", "--eps", "1e309"), "--eps"


@case("--eps-hu 1e309")
def _(d):
    return _attack(d, "--method", "pgd", "--eps-hu", "1e309"), "--eps-hu"


@case("--method pgd,eps=1e309")
def _(d):
    return _attack(d, "--method", "pgd,eps=1e309"), "eps"


@case("--method pgd,eps=nan")
def _(d):
    return _attack(d, "--method", "pgd,eps=nan"), "eps"


@case("--eps 1e999999999 (no billion-digit number is built)")
def _(d):
    return _attack(d, "--method", "pgd", "--eps", "1e999999999"), "--eps"


@case("--overlap nan")
def _(d):
    return _segment(d, copy_ct(d), "--overlap", "nan"), "--overlap"


@case("--label-map 6:1e400")
def _(d):
    shutil.copy(LABELS, d / "labels.nii.gz")
    return _attack(d, "--method", "gn", "--labels", str(d / "labels.nii.gz"), "--label-map", "6:1e400"), "label map"


@case("label map JSON with 1e400")
def _(d):
    shutil.copy(LABELS, d / "labels.nii.gz")
    (d / "map.json").write_text('{"6": 1e400}')
    return _attack(d, "--method", "gn", "--labels", str(d / "labels.nii.gz"), "--label-map", str(d / "map.json")), "label map"


# --- datalists, checked whole before the first case ------------------------------------------------


def _evaluate(d: Path, content: str) -> list[str]:
    (d / "list.json").write_text(content)
    return ["evaluate", str(d / "list.json"), "-o", str(d / "out"), "--device", "cpu"]


@case("evaluate: datalist whose top level is a list")
def _(d):
    return _evaluate(d, json.dumps([{"image": "ct.nii.gz", "label": "ct.nii.gz"}])), "JSON object"


@case("evaluate: datalist whose top level is a string")
def _(d):
    return _evaluate(d, json.dumps("validation")), "JSON object"


@case("evaluate: \"label\": null")
def _(d):
    copy_ct(d)
    return _evaluate(d, json.dumps({"validation": [{"image": "ct.nii.gz", "label": None}]})), "validation[0]"


@case("evaluate: \"image\": 3")
def _(d):
    return _evaluate(d, json.dumps({"validation": [{"image": 3, "label": "ct.nii.gz"}]})), "validation[0]"


@case("evaluate: the split is not a list")
def _(d):
    return _evaluate(d, json.dumps({"validation": "ct.nii.gz"})), "list of cases"


@case("evaluate: the last of 2,000 cases is missing")
def _(d):
    copy_ct(d)
    shutil.copy(LABELS, d / "labels.nii.gz")
    cases = [{"image": "ct.nii.gz", "label": "labels.nii.gz"}] * 1999 + [{"image": "gone.nii.gz", "label": "labels.nii.gz"}]
    return _evaluate(d, json.dumps({"validation": cases})), "gone.nii.gz"


@case("evaluate: not JSON")
def _(d):
    return _evaluate(d, "{validation: [}"), "not valid JSON"


# --- geometry: refused, never silently moved ---------------------------------------------------------


def _ct_array(shape=(6, 16, 16)) -> np.ndarray:
    arr = np.full(shape, -1000, dtype=np.int16)
    arr[1:-1, 4:-4, 4:-4] = 40
    return arr


def _dicom(folder: Path, positions: list[tuple[float, float, float]], orientation: str = "1\\0\\0\\0\\1\\0") -> Path:
    """One DICOM series, a slice a file, at the given ImagePositionPatient values."""
    saved = locale.setlocale(locale.LC_ALL)  # GDCM's writer leaves the process in the "C" locale
    try:
        folder.mkdir()
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        arr = _ct_array((len(positions), 16, 16))
        for k, position in enumerate(positions):
            s = sitk.GetImageFromArray(arr[k])
            for tag, value in (("0008|0060", "CT"), ("0020|000e", "1.2.826.0.1.3680043.2.1125.1.77"),
                               ("0020|0013", str(k + 1)), ("0020|0032", "\\".join(f"{v:g}" for v in position)),
                               ("0020|0037", orientation)):
                s.SetMetaData(tag, value)
            writer.SetFileName(str(folder / f"IM{k:03d}.dcm"))
            writer.Execute(s)
    finally:
        locale.setlocale(locale.LC_ALL, saved)
    return folder


@case("DICOM: a 30 mm gap in a 5 mm series")
def _(d):
    return _segment(d, _dicom(d / "dicom", [(0, 0, z) for z in (0, 5, 10, 40, 45, 50)])), "uneven slice spacing"


@case("DICOM: a duplicated slice position")
def _(d):
    return _segment(d, _dicom(d / "dicom", [(0, 0, z) for z in (0, 5, 10, 10, 15, 20)])), "two slices at one position"


@case("DICOM: gantry tilt")
def _(d):
    return _segment(d, _dicom(d / "dicom", [(0, 2.0 * k, 5.0 * k) for k in range(6)])), "tilted"


def _nifti(d: Path, name: str, edit: Callable[[bytearray], None], cut: int = 0) -> Path:
    img = sitk.GetImageFromArray(_ct_array((8, 12, 10)))
    img.SetSpacing((3.0, 3.0, 3.0))
    sitk.WriteImage(img, str(d / "_scratch.nii"))
    data = bytearray((d / "_scratch.nii").read_bytes())
    (d / "_scratch.nii").unlink()
    edit(data)
    (d / name).write_bytes(bytes(data[: len(data) - cut]))
    return d / name


@case("NIfTI: bitpix 8 with datatype int16, half the data")
def _(d):
    def edit(h):
        struct.pack_into("<h", h, 72, 8)
    path = _nifti(d, "half.nii", edit, cut=8 * 12 * 10)  # half of the int16 data
    return _segment(d, path), "bitpix"


@case("NIfTI: negative vox_offset")
def _(d):
    return _segment(d, _nifti(d, "neg.nii", lambda h: struct.pack_into("<f", h, 108, -64.0))), "vox_offset"


@case("NIfTI: voxel size 0")
def _(d):
    return _segment(d, _nifti(d, "zero.nii", lambda h: struct.pack_into("<f", h, 84, 0.0))), "voxel sizes"


@case("NIfTI: voxel size NaN")
def _(d):
    return _segment(d, _nifti(d, "nan.nii", lambda h: struct.pack_into("<f", h, 80, float("nan")))), "voxel sizes"


@case("NIfTI: a sheared sform beside a valid qform")
def _(d):
    def edit(h):
        struct.pack_into("<h", h, 254, 2)  # sform_code: aligned to another scan
        struct.pack_into("<4f", h, 280, -3.0, 1.5, 0.0, 0.0)  # x row: i and j no longer perpendicular
        struct.pack_into("<4f", h, 296, 0.0, -3.0, 0.0, 0.0)
        struct.pack_into("<4f", h, 312, 0.0, 0.0, 3.0, 0.0)
    return _segment(d, _nifti(d, "shear.nii", edit)), "sheared"


@case("NRRD: sheared space directions")
def _(d):
    header = (b"NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 8 8 8\n"
              b"space directions: (3,0,0) (3,3,0) (0,0,3)\nspace origin: (0,0,0)\nencoding: raw\nendian: little\n\n")
    (d / "shear.nrrd").write_bytes(header + _ct_array((8, 8, 8)).tobytes())
    return _segment(d, d / "shear.nrrd"), "sheared"


# --- resource bombs: refused before allocation -------------------------------------------------------


@case("a tiny NIfTI with 150 mm voxels (the model grid explodes)")
def _(d):
    img = sitk.GetImageFromArray(_ct_array((16, 16, 16)))
    img.SetSpacing((150.0, 150.0, 150.0))
    sitk.WriteImage(img, str(d / "huge_voxels.nii.gz"))
    return _segment(d, d / "huge_voxels.nii.gz"), "model's grid"


@case("a bundle whose @ references expand to billions of values")
def _(d):
    folder = d / "bundle"
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    config = {f"l{k}": [f"@l{k + 1}"] * 10 for k in range(9)}
    config["l9"] = [16] * 10
    config["network_def"] = {"_target_": "monai.networks.nets.UNet", "spatial_dims": 3, "in_channels": 1,
                             "out_channels": 2, "channels": "@l0", "strides": [2]}
    config["network"] = "$@network_def.to(device)"
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    (folder / "configs" / "metadata.json").write_text("{}")
    torch.save({}, folder / "models" / "model.pt")
    return _segment(d, copy_ct(d), "--model", str(folder)), "expand"


@case("a safetensors file declaring a 6 GiB (sparse) tensor")
def _(d):
    header = json.dumps({"w": {"dtype": "F32", "shape": [3 << 29], "data_offsets": [0, 6 << 30]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(d / "sparse.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + (6 << 30))  # a hole: 6 GiB that take no disk
    return _segment(d, copy_ct(d), "--model", str(d / "sparse.safetensors")), "GiB"


@case("a SwinUNETR spec with feature size 960")
def _(d):
    spec = {"format": 1, "arch": "swinunetr", "arch_args": {"feature_size": 960}}
    save_file({}, str(d / "swin.safetensors"), metadata={"freqadv_spec": json.dumps(spec)})
    return _segment(d, copy_ct(d), "--model", str(d / "swin.safetensors")), "parameters"


# --- running the table -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_fault(name, tmp_path, capfd):
    d = tmp_path / "case"
    d.mkdir()
    argv, expect = CASES[name](d)
    before = tree(tmp_path)
    capfd.readouterr()
    start = time.perf_counter()
    code = main(argv)
    seconds = time.perf_counter() - start
    stderr = capfd.readouterr().err
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, (code, stderr)
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, lines
    assert "error:" in lines[0] and expect in lines[0], lines[0]
    assert tree(tmp_path) == before, "a failed run must leave every file, folder and link as it was and write nothing"
    assert seconds < 60, f"refused only after {seconds:.0f} s"


# --- the pieces, directly ---------------------------------------------------------------------------


def test_overwrite_replaces_own_results_and_removes_killed_runs_leftovers(tmp_path):
    """The rules refuse what is not ours, and still do their job on what is."""
    from FreqAdvSegmentLib.files.output_dir import TMP_MARKER, clean_stale_temporaries

    own_results(tmp_path / "out", {"a.txt": b"1", "sub/b.txt": b"2"})
    stamp = json.loads((tmp_path / "out" / STAMP).read_text())
    assert len(stamp["run_id"]) == 32 and stamp["dirs"] == ["sub"]
    assert stamp["files"]["sub/b.txt"] == {"size": 1, "sha256": hashlib.sha256(b"2").hexdigest()}
    with atomic_output_dir(tmp_path / "out", overwrite=True) as tmp:
        (tmp / "c.txt").write_text("3")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [STAMP, "c.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "nothing set aside is left"
    # A killed run's temporary (our name, our marker, dead PID) is removed; a look-alike is kept.
    dead = tmp_path / ".out.freqadv-tmp-999999999-0123456789ab"
    dead.mkdir()
    (dead / TMP_MARKER).write_text("0123456789ab")
    fake = tmp_path / ".out.freqadv-tmp-999999999-ba9876543210"
    fake.mkdir()
    (fake / TMP_MARKER).write_text("0123456789ab")  # a marker naming another token
    assert clean_stale_temporaries(tmp_path / "out") == [dead]
    assert fake.is_dir()


def test_partial_sweep_refuses_edits_and_restarts_on_other_inputs(tmp_path, capsys):
    from FreqAdvSegmentLib.evaluation.curve import CurvePoint, PartialSweep

    point = CurvePoint("m", "pgd", "eps", 1 / 255, 1.0, "/255", "labels", 0.8, 0.7, 0.1, 0.75, 4.0, 1.0,
                       50.0, 0.99, False, 1.5)
    settings = {"input_sha256": "a" * 64, "labels_sha256": "b" * 64}
    partial = PartialSweep(tmp_path / "out", settings)
    assert partial.start(resume=False) == {}
    partial.add(point)
    assert PartialSweep(tmp_path / "out", settings).load() == {point.key: point}
    # Labels replaced at the same path: the points are not reused, and the run says so.
    assert PartialSweep(tmp_path / "out", {**settings, "labels_sha256": "c" * 64}).load() == {}
    assert "labels_sha256" in capsys.readouterr().err
    # A hand-edited Dice is refused with one line, not reported as measured.
    path = tmp_path / ".out.curve-partial.jsonl"
    path.write_text(path.read_text().replace('"mean_dice": 0.7', '"mean_dice": 0.999'))
    with pytest.raises(ValueError, match="line 2 .* damaged or was edited"):
        PartialSweep(tmp_path / "out", settings).load()
    # Malformed lines: refused, except a last line cut short by a kill (measured again).
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n{not json\n" + lines[1] + "\n")
    with pytest.raises(ValueError, match="line 2"):
        PartialSweep(tmp_path / "out", settings).load()
    path.write_text(lines[0] + "\n" + lines[1][:30])
    assert PartialSweep(tmp_path / "out", settings).load() == {}


def test_evaluate_names_cases_apart_and_writes_strict_json(tmp_path):
    from FreqAdvSegmentLib.evaluation.evaluate import case_names, load_datalist, write_results

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        copy_ct(tmp_path / folder, "img.nii.gz")
    (tmp_path / "list.json").write_text(json.dumps({"validation": [
        {"image": f"{f}/img.nii.gz", "label": f"{f}/img.nii.gz"} for f in ("a", "b")]}))
    cases = load_datalist(tmp_path / "list.json")
    assert case_names(cases) == ["a/img.nii.gz", "b/img.nii.gz"]
    rows = [{"model": "m", "case": "a/img.nii.gz", "condition": "clean", "mean_dice": float("nan"),
             "mean_hd95_mm": float("nan")}]
    write_results(rows, tmp_path / "out", tmp_path / "list.json", "validation", 1, False)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(),
                         parse_constant=lambda name: pytest.fail(f"summary.json holds {name}"))
    assert summary["m"]["clean"]["mean_dice"] is None


def test_run_folder_rules(tmp_path):
    from FreqAdvSegmentLib.training.run_folder import check_export, check_run_folder, write_run_stamp

    check_run_folder(tmp_path / "new", resuming=False)  # a new folder is fine
    (tmp_path / "run").mkdir()
    write_run_stamp(tmp_path / "run")
    (tmp_path / "run" / "config.json").write_text("{}")
    check_run_folder(tmp_path / "run", resuming=False)  # an earlier run of ours, stopped before a checkpoint
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        check_run_folder(tmp_path / "run", resuming=False)
    with pytest.raises(FileExistsError, match="--resume continues only a run in its own folder"):
        check_run_folder(tmp_path / "run", resuming=True)
    with pytest.raises(FileExistsError, match="own model_final"):
        (tmp_path / "run" / "model_final.safetensors").write_bytes(b"x")
        check_export(tmp_path / "run" / "model_final.safetensors", tmp_path / "run", True)


@pytest.mark.parametrize("make", [
    lambda m: __import__("FreqAdvSegmentLib.attacks.voxel", fromlist=["PGD"]).PGD(m, eps=float("nan")),
    lambda m: __import__("FreqAdvSegmentLib.attacks.voxel", fromlist=["GaussianNoise"]).GaussianNoise(m, std=float("nan")),
    lambda m: __import__("FreqAdvSegmentLib.attacks.vafa", fromlist=["VAFA"]).VAFA(m, q_max=float("nan")),
    lambda m: __import__("FreqAdvSegmentLib.attacks.voxel", fromlist=["PGD"]).PGD(m, alpha=float("inf")),
])
def test_attack_constructors_refuse_non_finite_numbers(make):
    import torch

    with pytest.raises(ValueError, match="must be a finite number"):
        make(torch.nn.Conv3d(1, 2, 1))


def test_the_number_parser():
    from FreqAdvSegmentLib.finite import parse_number

    assert parse_number("4/255") == 4 / 255 and parse_number("-1e-3") == -0.001
    for text in ("1e309", "nan", "inf", "-inf", "1/0", "1e999999999", "0x10", "", "1_0"):
        with pytest.raises(ValueError):
            parse_number(text)


def test_the_state_records_links_as_links(tmp_path):
    """tree() sees through nothing: a link replaced by a copy of its target is a change."""
    (tmp_path / "t").write_text("x")
    (tmp_path / "l").symlink_to(tmp_path / "t")
    before = tree(tmp_path)
    (tmp_path / "l").unlink()
    shutil.copy(tmp_path / "t", tmp_path / "l")
    assert tree(tmp_path) != before
