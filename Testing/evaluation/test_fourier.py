"""The 3D Fourier sensitivity map (issue 27 item 3): band-limited noise lies in its band at the
RMS asked for; a model that blurs first is only sensitive to the low bands; `freqadv fourier`
writes fourier.csv and fourier.png and names the most damaging band."""

from __future__ import annotations

import csv

import pytest
import torch

from FreqAdvSegmentLib.evaluation.fourier import (
    Band, band_mask, band_noise, default_bands, fourier_map, frequency_axes, most_damaging)

SPACING = (1.5, 1.5, 2.0)
WINDOW = (-175.0, 250.0)


def test_band_noise_spectrum_lies_in_its_shell_at_the_requested_rms():
    shape = (24, 20, 16)
    radial, in_plane = frequency_axes(shape, SPACING)
    covered = torch.zeros(shape, dtype=torch.int64)
    for band in default_bands(SPACING, 4):
        noise = band_noise(shape, SPACING, band, 25.0, torch.Generator().manual_seed(3))
        assert noise is not None and noise.dtype == torch.float32
        assert float(noise.double().pow(2).mean().sqrt()) == pytest.approx(25.0, rel=1e-5)
        power = torch.fft.fftn(noise.double()).abs().pow(2)
        mask = band_mask(shape, SPACING, band)
        assert float(power[~mask].sum()) < 1e-9 * float(power.sum()), f"energy outside {band}"
        inside = radial[mask]
        assert float(inside.min()) >= band.f_low and float(inside.max()) < band.f_high
        through = (radial[mask] ** 2 - in_plane[mask] ** 2).sqrt()
        if band.orientation == "in-plane":
            assert bool((through <= in_plane[mask] + 1e-12).all())
        else:
            assert bool((through > in_plane[mask]).all())
        covered += mask
    nyquist = 0.5 / min(SPACING)
    wanted = (radial > 0) & (radial < nyquist)
    assert bool((covered[wanted] == 1).all()), "the bands tile the spectrum below Nyquist, without overlap"
    assert int(covered[~wanted].sum()) == 0, "DC (an HU offset) and the corners beyond Nyquist are in no band"


def test_band_noise_is_reproducible_from_its_seed():
    band = Band(1, 0.1, 0.2, "through-plane")
    a, b, c = (band_noise((16, 16, 16), SPACING, band, 10.0, torch.Generator().manual_seed(s)) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_an_empty_band_gives_no_noise():
    # 4 slices of 2 mm: through-plane frequencies are multiples of 1/8 cycles/mm, in-plane ones
    # reach 0.33; nothing is through-plane dominated below 1/8.
    assert band_noise((32, 32, 4), SPACING, Band(0, 0.0, 0.1, "through-plane"), 10.0, torch.Generator()) is None


class BlurThenThreshold(torch.nn.Module):
    """Logits [B, 2, H, W, D] of "intensity above ``threshold``" after a Gaussian blur of
    ``sigma`` voxels (none when 0): a model that only sees low frequencies."""

    def __init__(self, sigma: float, threshold: float) -> None:
        super().__init__()
        r = torch.arange(-7.0, 8.0)
        kernel = torch.exp(-r**2 / (2 * sigma**2)) if sigma > 0 else (r == 0).float()
        self.register_buffer("kernel", kernel / kernel.sum())
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x
        for axis in range(3):  # separable: one 1D convolution per axis, edges replicated
            shape, pad = [1, 1, 1, 1, 1], [0] * 6
            shape[2 + axis] = 15
            pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = 7
            v = torch.nn.functional.conv3d(torch.nn.functional.pad(v, pad, mode="replicate"), self.kernel.reshape(shape))
        return torch.cat([self.threshold - v, v - self.threshold], 1)


def _mean_drops(sigma: float) -> dict[tuple[int, str], float]:
    shape = (32, 32, 24)
    axes = [(torch.arange(n) - n / 2 + 0.5) * s for n, s in zip(shape, SPACING)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    hu = torch.where(grid.pow(2).sum(0).sqrt() < 14.0, 100.0, 0.0)  # a 100 HU ball of radius 14 mm in water
    model = BlurThenThreshold(sigma, (50.0 - WINDOW[0]) / (WINDOW[1] - WINDOW[0]))

    def predict(x):
        return model(x).argmax(1, keepdim=True)

    reference = predict(((hu - WINDOW[0]) / (WINDOW[1] - WINDOW[0]))[None, None])[0, 0]
    assert int(reference.sum()) > 1000, "the clean prediction finds the ball"
    rows = fourier_map(predict, hu, WINDOW, SPACING, reference, ["background", "ball"], default_bands(SPACING, 4),
                       rms_hu=40.0, seeds=(0, 1))
    assert {r.organ for r in rows} == {"ball", "mean"}
    return {(r.band, r.orientation): r.dice_drop for r in rows if r.organ == "mean"}


def test_a_model_that_blurs_first_is_sensitive_only_in_the_low_bands():
    drops = _mean_drops(sigma=2.5)  # 3.75 mm in-plane: passes under ~0.08 cycles/mm, nothing above 0.17
    assert max(drops[0, "in-plane"], drops[0, "through-plane"]) > 0.05
    for shell in (2, 3):
        for orientation in ("in-plane", "through-plane"):
            assert abs(drops[shell, orientation]) < 0.002, (shell, orientation, drops)


def test_a_model_that_does_not_blur_is_sensitive_in_the_high_bands_too():
    drops = _mean_drops(sigma=0.0)
    assert min(drops[3, "in-plane"], drops[3, "through-plane"]) > 0.1, drops


def test_fourier_command_writes_the_map_and_names_the_worst_band(tmp_path, capsys):
    from budget_fixtures import write_phantom_files
    from conftest import fixture_unet

    from FreqAdvSegmentLib.cli import main
    from FreqAdvSegmentLib.evaluation.fourier import FourierRow

    write_phantom_files(fixture_unet(), tmp_path)
    out = tmp_path / "fourier"
    argv = ["fourier", str(tmp_path / "ct.nii.gz"), "--labels", str(tmp_path / "gt.nii.gz"),
            "--model", str(tmp_path / "unet.safetensors"), "--device", "cpu", "--shells", "3", "--dct", "--dct-block", "4", "-o", str(out)]
    assert main(argv) == 0
    with (out / "fourier.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["band", "orientation", "f_low", "f_high", "organ", "dice", "dice_drop", "rms_hu"]
    means = [r for r in rows if r["organ"] == "mean"]
    assert [(int(r["band"]), r["orientation"]) for r in means] == [
        (b, o) for b in range(3) for o in ("in-plane", "through-plane")]
    assert float(means[-1]["f_high"]) == pytest.approx(0.5, rel=1e-4), "up to Nyquist of the model's 1 mm grid"
    assert all(float(r["rms_hu"]) == pytest.approx(20.0, rel=1e-4) for r in rows)
    assert len({r["organ"] for r in rows}) > 2, "organs of the phantom, then the mean"
    assert (out / "fourier.png").stat().st_size > 10_000
    worst = most_damaging([FourierRow(int(r["band"]), r["orientation"], float(r["f_low"]), float(r["f_high"]), r["organ"],
                                      float(r["dice"]), float(r["dice_drop"]), float(r["rms_hu"])) for r in means])
    printed = capsys.readouterr().out
    assert f"the most damaging band is {worst.f_low:.3f}-{worst.f_high:.3f} cycles/mm {worst.orientation}" in printed
    with (out / "dct.csv").open(encoding="utf-8") as f:
        dct = [r for r in csv.DictReader(f) if r["organ"] == "mean"]
    assert [int(r["level"]) for r in dct] == list(range(10)) and sum(int(r["coefficients"]) for r in dct) == 64
    assert "the most damaging 4^3-block DCT level is u+v+w=" in printed


def test_fourier_command_refuses_a_bad_rms_without_writing(tmp_path, capsys):
    from FreqAdvSegmentLib.cli import main

    ct = tmp_path / "ct.nii.gz"
    ct.write_bytes(b"")
    out = tmp_path / "fourier"
    assert main(["fourier", str(ct), "--rms-hu", "-5", "--device", "cpu", "-o", str(out)]) == 2
    assert "--rms-hu must be a positive number of HU" in capsys.readouterr().err
    assert not out.exists()


# --- per 3D-DCT level of VAFA's blocks ---------------------------------------------------------


def test_dct_level_noise_lies_in_its_level_at_the_requested_rms():
    from FreqAdvSegmentLib.attacks.frequency import blockwise_dct3
    from FreqAdvSegmentLib.evaluation.dct_sensitivity import dct_level_noise, level_mask

    for level in (0, 3, 10, 21):
        noise = dct_level_noise((16, 24, 16), 8, level, 15.0, torch.Generator().manual_seed(level))
        assert float(noise.double().pow(2).mean().sqrt()) == pytest.approx(15.0, rel=1e-5)
        coeffs = blockwise_dct3(noise.double()[None, None], 8)  # [1, 1, 2, 3, 2, 8, 8, 8]
        outside = coeffs[..., ~level_mask(8, level)]
        assert float(outside.pow(2).sum()) < 1e-9 * float(coeffs.pow(2).sum()), level
    assert sum(int(level_mask(8, k).sum()) for k in range(22)) == 512


def test_dct_map_of_a_model_that_blurs_first_is_hurt_only_by_low_levels():
    from FreqAdvSegmentLib.evaluation.dct_sensitivity import dct_map

    shape = (32, 32, 24)
    axes = [(torch.arange(n) - n / 2 + 0.5) * s for n, s in zip(shape, SPACING)]
    hu = torch.where(torch.stack(torch.meshgrid(*axes, indexing="ij")).pow(2).sum(0).sqrt() < 14.0, 100.0, 0.0)
    drops = {}
    for sigma in (2.5, 0.0):
        model = BlurThenThreshold(sigma, (50.0 - WINDOW[0]) / (WINDOW[1] - WINDOW[0]))

        def predict(x, model=model):
            return model(x).argmax(1, keepdim=True)

        reference = predict(((hu - WINDOW[0]) / (WINDOW[1] - WINDOW[0]))[None, None])[0, 0]
        rows = dct_map(predict, hu, WINDOW, reference, ["background", "ball"], block=8, rms_hu=40.0)
        drops[sigma] = {r.level: r.dice_drop for r in rows if r.organ == "mean"}
    assert sorted(drops[2.5]) == list(range(22))
    assert drops[2.5][0] > 0.05, "block means (level 0) survive the blur"
    assert max(abs(drops[2.5][k]) for k in range(12, 22)) < 0.005, drops[2.5]  # measured <= 0.001 (a voxel at the threshold)
    assert min(drops[0.0][k] for k in range(12, 22)) > 0.05, "without the blur the fine levels hurt too"
