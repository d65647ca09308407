"""atomic_file: a file is replaced whole or not at all, readable like any file the user writes."""

import os
import stat

import pytest

from FreqAdvSegmentLib.files.atomic_file import replace_file, replace_text


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_replaced_file_has_the_umask_permissions_not_mkstemps_private_ones(tmp_path):
    old = os.umask(0o027)
    try:
        path = replace_text(tmp_path / "summary.json", "{}\n")
    finally:
        os.umask(old)
    assert path.read_text(encoding="utf-8") == "{}\n"
    assert _mode(path) == 0o640  # 0666 less the umask; mkstemp alone would give 0600


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"old")

    def half_then_crash(tmp):
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replace_file(path, half_then_crash)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_durable_replace_writes_the_content(tmp_path):
    path = replace_file(tmp_path / "step_00000020.pt", lambda tmp: tmp.write_bytes(b"ckpt"), durable=True)
    assert path.read_bytes() == b"ckpt" and [p.name for p in tmp_path.iterdir()] == ["step_00000020.pt"]
