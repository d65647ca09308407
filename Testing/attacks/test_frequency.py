"""The blockwise 3D DCT, rounding and block SSIM against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch

from FreqAdvSegmentLib.attacks.frequency import (
    alpha_schedule,
    blockwise_dct3,
    blockwise_idct3,
    soft_round,
    ste_round,
    to_blocks,
)
from FreqAdvSegmentLib.attacks.ssim import blockwise_ssim3d, ssim3d


def _reference_blockwise_dct(x: np.ndarray, b: int) -> np.ndarray:
    """scipy.fft.dctn per block, with a Python loop: slow but obviously right."""
    h, w, d = x.shape
    out = np.zeros((h // b, w // b, d // b, b, b, b))
    for i in range(h // b):
        for j in range(w // b):
            for k in range(d // b):
                block = x[i * b : (i + 1) * b, j * b : (j + 1) * b, k * b : (k + 1) * b]
                out[i, j, k] = scipy.fft.dctn(block, type=2, norm="ortho")
    return out


@pytest.mark.parametrize("block", [4, 8, 16])
def test_dct_matches_scipy_per_block(block):
    rng = np.random.default_rng(block)
    x = rng.normal(size=(2 * block, 3 * block, block))
    ours = blockwise_dct3(torch.from_numpy(x)[None, None], block)[0, 0].numpy()
    np.testing.assert_allclose(ours, _reference_blockwise_dct(x, block), atol=1e-10)


@pytest.mark.parametrize("block", [4, 8, 32])
def test_dct_perfect_reconstruction_on_odd_shape(block):
    x = torch.rand(2, 1, 37, 41, 35, dtype=torch.float64)
    coeffs = blockwise_dct3(x, block)
    assert coeffs.shape[2:5] == tuple(-(-s // block) for s in (37, 41, 35))
    back = blockwise_idct3(coeffs, (37, 41, 35))
    assert back.shape == x.shape
    torch.testing.assert_close(back, x, atol=1e-10, rtol=0)


def test_dct_is_orthonormal_energy_preserving():
    x = torch.randn(1, 1, 16, 16, 16, dtype=torch.float64)
    coeffs = blockwise_dct3(x, 8)
    assert torch.allclose(coeffs.pow(2).sum(), x.pow(2).sum())


def test_padding_does_not_modify_input():
    x = torch.rand(1, 1, 9, 10, 11)
    before = x.clone()
    to_blocks(x, 8)
    assert torch.equal(x, before)


def test_soft_round_is_continuous_and_hardens():
    v = torch.linspace(-3, 3, 601)
    for alpha in (0.1, 0.01):
        r = soft_round(v, alpha)
        assert (r.diff() >= -1e-6).all(), "soft rounding must be monotone"
        assert r.diff().abs().max() < 0.2, "soft rounding must have no jumps"
    # Away from the half-way points, a tiny alpha rounds hard.
    away = (torch.arange(-3, 3)[:, None] + torch.tensor([0.1, 0.3, 0.7, 0.9])).flatten()
    torch.testing.assert_close(soft_round(away, 1e-6), torch.round(away), atol=5e-3, rtol=0)
    assert soft_round(torch.tensor(2.4), 0.1) < 2.4  # pulled toward the nearest integer


def test_ste_round_forward_hard_backward_identity():
    v = torch.tensor([0.2, 1.7, -2.6], requires_grad=True)
    r = ste_round(v)
    assert torch.equal(r, torch.round(v.detach()))
    r.sum().backward()
    assert torch.equal(v.grad, torch.ones(3))


def test_alpha_schedule_matches_public_code():
    assert alpha_schedule(0, 20) == pytest.approx(0.1)
    assert alpha_schedule(19, 20) == pytest.approx(0.005)


def test_ssim_identical_is_one_and_noise_lowers_it():
    x = torch.rand(1, 1, 16, 16, 16)
    assert torch.allclose(blockwise_ssim3d(x, x, 8), torch.ones(1, 1, 2, 2, 2))
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    per_block = blockwise_ssim3d(x, noisy, 8)
    assert (per_block < 0.9).all()
    assert ssim3d(x, noisy).item() < 0.9


def test_ssim_matches_independent_computation():
    """A direct numpy SSIM with a 3-voxel Gaussian window (sigma 1.5), valid positions only."""
    from scipy.ndimage import correlate

    rng = np.random.default_rng(0)
    x = rng.random((8, 8, 8))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    g = np.exp(-((np.arange(3) - 1.0) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    k = g[:, None, None] * g[None, :, None] * g[None, None, :]

    def filt(a):
        return correlate(a, k, mode="constant")[1:-1, 1:-1, 1:-1]

    mx, my = filt(x), filt(y)
    vx, vy, cxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ref = ((2 * mx * my + c1) / (mx**2 + my**2 + c1) * np.maximum((2 * cxy + c2) / (vx + vy + c2), 0)).mean()
    ours = ssim3d(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None]).item()
    assert ours == pytest.approx(ref, rel=1e-6)
