"""Reduced dose: the quantum noise a scan at a fraction of the dose would have had.

Physics (parallel beam, one axial slice at a time): a ray through attenuation mu (1/mm) with line
integral p = R mu reaches the detector with N0 exp(-p) photons on average; its measured line
integral -log(counts / N0) then has variance 1 / (N0 exp(-p)) (Poisson, in the usual Gaussian
approximation of the log). At dose fraction d the variance is 1 / (d N0 exp(-p)). The scan already
holds its own noise at N0, so the corruption adds only the difference, of variance
(1/d - 1) / (N0 exp(-p)), and reconstructs it by filtered back-projection (FBP is linear, so the
reduced-dose scan is the scan plus the FBP of the extra sinogram noise).

How it is computed, to fit in about a second per CT: the variance is worked out in projection
space (forward projection of each slice, photon counts per ray, back-projection of the ray
variances with FBP's weights), on a coarse in-plane grid (it varies slowly); the noise's texture is
FBP's own: a ramp-shaped noise power spectrum (|f| times the linear interpolation's roll-off, up to
the detector's Nyquist frequency), made by FFT. :func:`fbp_noise` does the same by brute force (FBP
of a noisy sinogram); the tests check that both agree on a water cylinder.

The original photon count is an assumption the user sets: ``photons``, incident photons per mm^2
of detector (at the isocentre) per view, for a rotation of 1000 views. The default, 3e5, gives
about 15 HU of noise at the centre of a 32 cm water cylinder in 2 mm slices of 1.5 mm pixels, a
routine abdominal scan's noise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..attacks.spec import AttackSpec, Param, Preset
from .base import Corruption, hu_to_mu, mu_to_hu_change
from .projector import ParallelBeam

VIEWS_PER_ROTATION = 1000
"""The view count ``photons`` is stated for; the simulation rescales to its own."""
INTERPOLATION_VARIANCE = 2 / 3 - 2 / math.pi**2
"""The mean variance left after FBP's linear interpolation of ramp-filtered white noise, whose
neighbours correlate by -6/pi^2: E[(1-w)^2 + w^2 + 2 w (1-w) rho] over w in [0, 1)."""
COARSE_MM = 6.0
"""Pixel side (and slab thickness) of the grid the ray variances are computed on (they vary over
centimetres)."""
VARIANCE_VIEWS = 40


def ray_photons(photons: float, pitch_mm: float, slice_mm: float, views: int) -> float:
    """Photons per simulated ray (one detector bin of ``pitch_mm`` x ``slice_mm``, one of ``views``)."""
    return photons * pitch_mm * slice_mm * VIEWS_PER_ROTATION / views


def mean_transmission_inverse(mu: torch.Tensor, pixel_mm: tuple[float, float], slices_per_cell: int = 1) -> torch.Tensor:
    """For every pixel, the mean over views of exp(p) of the ray through it, [N, H, W].

    Computed on a grid of about ``COARSE_MM`` pixels (and ``slices_per_cell`` slices averaged)
    and interpolated back: exp(p) changes over centimetres, not pixels."""
    n, h, w = mu.shape
    k = max(1, int(round(COARSE_MM / min(pixel_mm))))
    z = max(1, min(int(slices_per_cell), n))
    coarse = F.avg_pool3d(mu[None, None], (z, k, k), ceil_mode=True, count_include_pad=False)[0, 0]
    beam = ParallelBeam(coarse.shape[1:], (pixel_mm[0] * k, pixel_mm[1] * k), views=VARIANCE_VIEWS, chunk=VARIANCE_VIEWS)
    inverse = torch.exp(beam.project(coarse).clamp(max=30.0))
    mean = beam.backproject(inverse) / math.pi  # backproject sums (pi / V) * values over the views
    return F.interpolate(mean[None, None], size=(n, h, w), mode="trilinear", align_corners=False)[0, 0]


def noise_variance_mu(mu: torch.Tensor, pixel_mm: tuple[float, float], slice_mm: float, photons: float) -> torch.Tensor:
    """Variance of FBP's quantum noise at ``photons`` (1/mm^2), [N, H, W].

    var = (pi / V)^2 * V * sum_k (tau h_k)^2 * var_ray * interpolation, with sum_k (tau h_k)^2 =
    1 / (12 tau^2) for the Ram-Lak kernel and var_ray = exp(p) / N_ray; V cancels."""
    tau = min(pixel_mm)
    views = VARIANCE_VIEWS
    per_ray = ray_photons(photons, tau, slice_mm, views)
    scale = (math.pi**2 / views) / (12 * tau**2) * INTERPOLATION_VARIANCE / per_ray
    return scale * mean_transmission_inverse(mu, pixel_mm, int(round(COARSE_MM / slice_mm)))


def noise_std_hu(hu: torch.Tensor, spacing_mm: tuple[float, float, float], photons: float, fraction: float = 1.0) -> torch.Tensor:
    """The quantum noise's standard deviation (HU) of a scan of ``hu`` [N, H, W] (axial slices)
    at ``fraction`` of the dose that ``photons`` describes."""
    var = noise_variance_mu(hu_to_mu(hu), spacing_mm[:2], spacing_mm[2], photons) / fraction
    return mu_to_hu_change(var.sqrt())


def fbp_texture(shape: tuple[int, ...], pixel_mm: tuple[float, float], generator: torch.Generator, device) -> torch.Tensor:
    """Unit-variance noise with FBP's noise power spectrum, [N, H, W] (independent slices).

    NPS(f) = |f| sinc(f tau)^4 inside the detector's Nyquist disk |f| <= 1 / (2 tau): the ramp
    filter times the linear interpolation's roll-off (squared twice: amplitude, then power)."""
    n, h, w = shape
    tau = min(pixel_mm)
    size = (fast_size(h), fast_size(w))  # a larger FFT-friendly field, cropped: the noise is stationary
    fa = torch.fft.fftfreq(size[0], d=pixel_mm[0], device=device)[:, None]
    fb = torch.fft.rfftfreq(size[1], d=pixel_mm[1], device=device)[None, :]
    f = torch.sqrt(fa**2 + fb**2)
    nps = f * torch.sinc(f * tau) ** 4 * (f <= 1 / (2 * tau))
    gain = nps.sqrt()
    weight = torch.full_like(gain, 2.0)  # rfft holds the conjugate half once: count it twice
    weight[:, 0] = 1.0
    if size[1] % 2 == 0:
        weight[:, -1] = 1.0
    gain = gain / ((gain**2 * weight).sum() / (size[0] * size[1])).sqrt()  # unit variance
    # White noise's spectrum drawn directly (complex Gaussian, E|X|^2 = H W as rfft2 of unit white
    # noise has): one inverse FFT instead of two transforms.
    shape = (n, *gain.shape)
    spectrum = torch.complex(torch.randn(shape, generator=generator, device=device),
                             torch.randn(shape, generator=generator, device=device))
    spectrum *= gain * math.sqrt(size[0] * size[1] / 2)
    return torch.fft.irfft2(spectrum, s=size)[:, :h, :w]


def fast_size(n: int) -> int:
    """The smallest m >= n whose prime factors are 2, 3 and 5 (FFTs are fast there)."""
    m = n
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def fbp_noise(mu: torch.Tensor, pixel_mm: tuple[float, float], slice_mm: float, photons: float,
              generator: torch.Generator, views: int = 180) -> torch.Tensor:
    """Brute force, for checking: FBP of Gaussian sinogram noise of variance 1 / (N_ray exp(-p)),
    every ray projected at full resolution; [N, H, W] in 1/mm. Slow (seconds per slice)."""
    beam = ParallelBeam(mu.shape[1:], pixel_mm, views=views)
    p = beam.project(mu)
    per_ray = ray_photons(photons, beam.pitch, slice_mm, views)
    std = torch.sqrt(torch.exp(p.clamp(max=30.0)) / per_ray)
    noise = torch.randn(p.shape, generator=generator, device=p.device) * std
    return beam.fbp(noise)


class Dose(Corruption):
    """A scan at ``fraction`` of the original dose: the original plus the FBP of the extra quantum
    noise (variance (1/fraction - 1) / (photons exp(-p)) per ray); see the module's docstring."""

    name = "dose"

    def __init__(self, model: torch.nn.Module, fraction: float = 0.25, photons: float = 3e5, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        if photons <= 0:
            raise ValueError(f"photons must be > 0, got {photons}")
        self.fraction, self.photons = float(fraction), float(photons)

    def corrupt(self, hu, spacing_mm, generator):
        if self.fraction == 1.0:
            return hu.clone()
        slices = hu.permute(0, 3, 1, 2).reshape(-1, *hu.shape[1:3])  # [B*D, H, W] axial slices
        var = noise_variance_mu(hu_to_mu(slices), spacing_mm[:2], spacing_mm[2], self.photons) * (1 / self.fraction - 1)
        noise = mu_to_hu_change(var.sqrt() * fbp_texture(slices.shape, spacing_mm[:2], generator, hu.device))
        noise = noise.reshape(hu.shape[0], hu.shape[3], *hu.shape[1:3]).permute(0, 2, 3, 1)
        return hu + noise


SPEC = AttackSpec(
    "dose", Dose, "Reduced dose",
    "not adversarial: quantum noise of a scan at a fraction of the dose, made in projection space (FBP)",
    (
        Param("fraction", float, "dose of the simulated scan, as a fraction of the original's (0.25 = 25%)",
              "fraction of the scan's dose", 0.001, 1),
        Param("photons", float, "assumed photons per mm^2 per view (1000 views) of the original scan; 3e5 gives "
              "about 15 HU noise in a 32 cm water cylinder", "photons / mm^2 / view", 1, 1e9),
    ),
    (
        Preset("50", "half the dose", {"fraction": 0.5}),
        Preset("25", "a quarter of the dose", {"fraction": 0.25}),
        Preset("10", "a tenth of the dose", {"fraction": 0.1}),
    ),
    domain="corruption", strength="fraction", sweep=(0.5, 0.25, 0.1), trainable=False, adversarial=False,
)
