"""Web uploads beyond one volume file: a DICOM series as a zip, and a label map for the CT.

Real files: a small DICOM series written by SimpleITK (GDCM), zipped; label maps on and off the
CT's grid. The zip checks run before anything is unpacked outside the upload; the labels check
refuses what would give meaningless Dice figures.
"""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from FreqAdvSegmentLib.files.images import read_image
from FreqAdvSegmentLib.web import dicom_zip, uploads


def _ct(size=(16, 12, 6)) -> sitk.Image:
    array = np.random.default_rng(0).integers(-1000, 1000, size[::-1]).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.8, 2.5))
    image.SetOrigin((-10.0, -20.0, 30.0))
    return image


def _dicom_zip(image: sitk.Image, path: Path, extra: dict[str, bytes] | None = None) -> Path:
    """``image`` as one DICOM series (a slice a file), zipped."""
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for k in range(image.GetDepth()):
            plane = image[:, :, k]
            for tag, value in (("0008|0060", "CT"), ("0020|000e", "1.2.826.0.1.3680043.2.1125.1.42"),
                               ("0020|000d", "1.2.826.0.1.3680043.2.1125.1.41"), ("0020|0013", str(k + 1)),
                               ("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k))))),
                               ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0018|0050", "2.5"), ("0028|1052", "0"),
                               ("0028|1053", "1")):
                plane.SetMetaData(tag, value)
            file = path.parent / f"slice{k}.dcm"
            writer.SetFileName(str(file))
            writer.Execute(plane)
            archive.write(file, f"series/IM{k:04d}")
            file.unlink()
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    path.write_bytes(buffer.getvalue())
    return path


async def _chunks(data: bytes, size: int = 4096):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def _receive(store: uploads.UploadStore, name: str, data: bytes) -> str:
    return asyncio.run(store.receive(name, len(data), _chunks(data)))


def test_a_dicom_zip_upload_is_unpacked_and_reads_as_the_series(tmp_path):
    ct = _ct()
    data = _dicom_zip(ct, tmp_path / "series.zip").read_bytes()
    store = uploads.UploadStore(tmp_path / "up")
    stored = store.get(_receive(store, "scan.zip", data))
    assert stored.path.is_dir() and stored.size == (16, 12, 6) and stored.name == "scan.zip"
    assert not list((tmp_path / "up").glob("*.zip")), "the archive itself is not kept"
    image = read_image(stored.path)
    assert image.GetSize() == ct.GetSize() and np.allclose(image.GetSpacing(), ct.GetSpacing(), atol=1e-3)
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(ct))
    store.discard_all()
    assert not stored.path.exists()


def _zip(members: dict[str, bytes], path: Path, link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (0o120777 << 16)
            archive.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize("make, status, words", [
    (lambda p: (p.write_bytes(b"PK not really" * 40), p)[1], 415, "not a zip"),
    (lambda p: _zip({}, p), 415, "no files"),
    (lambda p: _zip({"../evil.dcm": b"x" * 200}, p), 415, "outside the archive"),
    (lambda p: _zip({"/abs.dcm": b"x" * 200}, p), 415, "outside the archive"),
    (lambda p: _zip({"a.dcm": b"x" * 200}, p, link="link.dcm"), 415, "is a link"),
    (lambda p: _zip({"bomb.dcm": bytes(50 * 2**20)}, p), 413, "expands"),
    # Members of exactly 1 MiB once skipped the ratio check (issue 29).
    (lambda p: _zip({f"s{k}.dcm": bytes(2**20) for k in range(40)}, p), 413, "expands"),
    (lambda p: _zip({"notes.txt": b"hello" * 100}, p), 415, "no DICOM series"),
])
def test_bad_zips_are_refused_before_they_are_read(tmp_path, make, status, words):
    path = make(tmp_path / "upload.zip")
    with pytest.raises(uploads.UploadError, match=words) as err:
        dicom_zip.unpack_dicom_zip(path, tmp_path / "out", uploads.Limits())
    assert err.value.status == status and not (tmp_path / "out").exists()


def test_a_series_over_the_voxel_limit_or_two_series_are_refused(tmp_path):
    path = _dicom_zip(_ct(), tmp_path / "series.zip")
    with pytest.raises(uploads.UploadError, match="16x12x6 = 1,152 voxels") as err:
        dicom_zip.unpack_dicom_zip(path, tmp_path / "out", uploads.Limits(max_voxels=1000))
    assert err.value.status == 413 and not (tmp_path / "out").exists()
    two = _dicom_zip(_ct(), tmp_path / "two.zip")
    other = zipfile.ZipFile(_dicom_zip(_ct((8, 8, 2)), tmp_path / "other.zip"))
    with zipfile.ZipFile(two, "a") as archive:
        for name in other.namelist():
            data = other.read(name).replace(b"1.2.826.0.1.3680043.2.1125.1.42", b"1.2.826.0.1.3680043.2.1125.1.43")
            archive.writestr("second/" + name, data)
    with pytest.raises(uploads.UploadError, match="2 DICOM series"):
        dicom_zip.unpack_dicom_zip(two, tmp_path / "out2", uploads.Limits())


# --- labels --------------------------------------------------------------------------------------


def test_labels_must_fit_the_ct_on_show():
    pytest.importorskip("slicer", reason="the CT on show is an MRML volume node (slicer-core)")
    from FreqAdvSegmentLib.mrml.scene import new_scene
    from FreqAdvSegmentLib.mrml.volumes import volume_node_from_image
    from FreqAdvSegmentLib.web.labels_check import check_labels

    ct = _ct()
    volume = volume_node_from_image(new_scene(), ct, "ct")
    labels = sitk.Image(ct.GetSize(), sitk.sitkUInt8)
    labels.CopyInformation(ct)
    labels[4, 4, 2] = 6
    check_labels(labels, volume)
    shifted = sitk.Image(labels)
    shifted.SetOrigin((0.0, 0.0, 0.0))
    cropped = labels[:, :, :5]
    too_high = sitk.Image(labels)
    too_high[1, 1, 1] = 40
    fractional = sitk.Cast(labels, sitk.sitkFloat32) * 0.25  # 6 -> 1.5
    for bad, words in ((shifted, "origin"), (cropped, "16 x 12 x 5 voxels but the CT is 16 x 12 x 6"),
                       (too_high, "values 0..40"), (fractional, "fractional")):
        with pytest.raises(ValueError, match=words):
            check_labels(bad, volume)


# --- NRRD headers that ITK splits differently (issue 29) -------------------------------------------


def _nrrd_with_hidden_field(secret: Path, separator: bytes) -> bytes:
    """A 4x4x4 short NRRD whose comment hides a ``data file:`` field behind ``separator``."""
    return (b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 4\nencoding: raw\nendian: little\n"
            b"# a harmless note" + separator + b"data file: " + str(secret).encode() + b"\n\n" + bytes(128))


@pytest.mark.parametrize("separator", [b"\r", b"\r\r", b" \r "])
def test_a_carriage_return_cannot_smuggle_a_server_file_into_an_upload(tmp_path, separator):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(128)))
    data = _nrrd_with_hidden_field(secret, separator)
    if separator == b"\r":  # the threat is real: ITK reads the server file as the voxels
        (tmp_path / "probe.nrrd").write_bytes(data)
        voxels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "probe.nrrd")))
        assert voxels.tobytes() == secret.read_bytes()
    store = uploads.UploadStore(tmp_path / "up", uploads.Limits(max_bytes=2**20))
    with pytest.raises(uploads.UploadError, match="carriage return") as err:
        _receive(store, "ct.nrrd", data)
    assert err.value.status == 415 and list((tmp_path / "up").iterdir()) == []


@pytest.mark.parametrize("line", [b"# see data file: /etc/passwd", b"Data  File: /etc/passwd", b"datafile: LIST",
                                  b"data file:=/etc/passwd"])
def test_any_data_file_mention_is_refused(tmp_path, line):
    data = b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 4\n" + line + b"\n\n" + bytes(128)
    store = uploads.UploadStore(tmp_path / "up", uploads.Limits(max_bytes=2**20))
    with pytest.raises(uploads.UploadError, match="detached") as err:
        _receive(store, "ct.nrrd", data)
    assert err.value.status == 415


def test_a_plain_nrrd_upload_still_passes(tmp_path):
    sitk.WriteImage(_ct(), str(tmp_path / "ct.nrrd"))
    store = uploads.UploadStore(tmp_path / "up", uploads.Limits(max_bytes=2**20))
    upload_id = _receive(store, "ct.nrrd", (tmp_path / "ct.nrrd").read_bytes())
    assert store.get(upload_id).size == (16, 12, 6)
