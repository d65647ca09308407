"""A small parallel-beam CT projector and filtered back-projection (FBP) in pure PyTorch.

Every axial slice of a batch is projected at once (the slices ride in grid_sample's channel axis,
so the ray geometry is computed once per batch), on whatever device the tensor lives: CPU, CUDA
or MPS. Units are physical: images hold linear attenuation (1/mm), sinograms line integrals
(dimensionless), lengths are mm.

    beam = ParallelBeam((H, W), pixel_mm=(1.5, 1.5), views=180)
    sino = beam.project(mu)            # mu [N, H, W] -> [N, views, detectors]
    mu_back = beam.fbp(sino)           # [N, views, detectors] -> [N, H, W]

Why our own rather than a package (see README, "Realistic CT corruptions"): torchtomo is pure
PyTorch but licensed CC-BY-NC (this project is MIT); scikit-image's radon/iradon run one slice at
a time on the CPU only, tens of seconds for a CT. The corruptions need only a linear projector
and its FBP, which fit in this file; they use FBP on *differences* (noise, inconsistent views,
a detector channel's error), so the small discretisation error of a simple projector cancels.

Geometry: detector pitch = the smaller pixel side; the detector covers the slice's diagonal;
views are spread evenly over 180 degrees. Pixel centres sit at (index - (n - 1) / 2) * pixel_mm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class ParallelBeam:
    """Parallel-beam geometry for [N, H, W] slices (H along the first in-plane axis).

    Args:
        shape: (H, W) pixels of a slice.
        pixel_mm: (H, W) pixel sides in mm.
        views: projection angles over [0, pi).
        chunk: views handled per grid_sample call (bounds the memory: N * chunk * H * W floats).
    """

    def __init__(self, shape: tuple[int, int], pixel_mm: tuple[float, float], views: int = 180, chunk: int = 8) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.pixel_mm = (float(pixel_mm[0]), float(pixel_mm[1]))
        self.views = int(views)
        self.chunk = int(chunk)
        self.pitch = min(self.pixel_mm)
        half_diag = 0.5 * math.hypot(self.shape[0] * self.pixel_mm[0], self.shape[1] * self.pixel_mm[1])
        self.detectors = 2 * int(math.ceil(half_diag / self.pitch)) + 1  # odd: a bin on the centre ray
        self.angles = torch.arange(self.views, dtype=torch.float64) * (math.pi / self.views)

    # --- coordinates ----------------------------------------------------------------------------

    @property
    def detector_mm(self) -> torch.Tensor:
        """Detector bin centres, [detectors] mm (0 on the rotation axis)."""
        return (torch.arange(self.detectors, dtype=torch.float64) - (self.detectors - 1) / 2) * self.pitch

    def _to_grid(self, a_mm: torch.Tensor, b_mm: torch.Tensor) -> torch.Tensor:
        """Positions (along H, along W) in mm -> grid_sample's (x=W, y=H) in [-1, 1]."""
        h_half = max((self.shape[0] - 1) / 2 * self.pixel_mm[0], 1e-9)
        w_half = max((self.shape[1] - 1) / 2 * self.pixel_mm[1], 1e-9)
        return torch.stack((b_mm / w_half, a_mm / h_half), dim=-1)

    # --- operators ------------------------------------------------------------------------------

    def project(self, image: torch.Tensor, views: torch.Tensor | None = None, step_mm: float | None = None) -> torch.Tensor:
        """Line integrals of ``image`` [N, H, W] (1/mm) along every ray: [N, V, detectors].

        Args:
            views: indices of the views to project (default: all), e.g. only the views a moving
                patient spoiled.
            step_mm: sampling step along each ray (default: the detector pitch).
        """
        step = float(step_mm or self.pitch)
        idx = torch.arange(self.views) if views is None else views
        t = self.detector_mm
        n_s = self.detectors if step_mm is None else int(math.ceil(self.detectors * self.pitch / step)) | 1
        s = (torch.arange(n_s, dtype=torch.float64) - (n_s - 1) / 2) * step
        inp = image[None].float()  # [1, N, H, W]: slices as channels share each ray's coordinates
        out = []
        for part in idx.split(self.chunk):
            theta = self.angles[part][:, None, None]  # [v, 1, 1]
            a = t[None, :, None] * torch.cos(theta) - s[None, None, :] * torch.sin(theta)
            b = t[None, :, None] * torch.sin(theta) + s[None, None, :] * torch.cos(theta)
            grid = self._to_grid(a, b).reshape(1, -1, n_s, 2).to(image.device, torch.float32)
            samples = F.grid_sample(inp, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            out.append(samples.sum(-1).reshape(image.shape[0], len(part), self.detectors) * step)
        return torch.cat(out, dim=1)

    def ramp_filter(self, sinogram: torch.Tensor) -> torch.Tensor:
        """Ram-Lak filtering along the detector, [N, V, detectors] -> same shape.

        The filter is the band-limited ramp's spatial kernel (h[0] = 1/(4 tau^2), h[odd n] =
        -1/(n pi tau)^2, 0 otherwise), applied by zero-padded FFT: this form gets the zero
        frequency right, where sampling |f| directly leaves a DC offset."""
        n = sinogram.shape[-1]
        size = 1 << int(math.ceil(math.log2(2 * n - 1)))
        k = torch.arange(size, device=sinogram.device)
        k = torch.where(k <= size // 2, k, k - size).double()
        tau = self.pitch
        h = torch.where(k == 0, torch.full_like(k, 1 / (4 * tau**2)), torch.zeros_like(k))
        odd = (k.abs() % 2) == 1
        h = torch.where(odd, -1 / ((math.pi * k * tau) ** 2).clamp(min=1e-30), h)
        response = torch.fft.rfft(h).real * tau  # real, even kernel
        spec = torch.fft.rfft(sinogram.double(), n=size, dim=-1) * response
        return torch.fft.irfft(spec, n=size, dim=-1)[..., :n].to(sinogram.dtype)

    def backproject(self, sinogram: torch.Tensor, views: torch.Tensor | None = None) -> torch.Tensor:
        """Back-projection of [N, V', detectors] onto [N, H, W], times pi / V: the ramp-filtered
        sinogram's FBP. ``views`` (V' indices): the sinogram holds only those views (the others
        are zero), as :meth:`project` gives them."""
        n, rows = sinogram.shape[0], sinogram.shape[1]
        device = sinogram.device
        half_t = (self.detectors - 1) / 2 * self.pitch
        # Pixel coordinates pre-divided by the detector's half length: t / half_t in one multiply-add.
        a = (torch.arange(self.shape[0], device=device) - (self.shape[0] - 1) / 2) * (self.pixel_mm[0] / half_t)
        b = (torch.arange(self.shape[1], device=device) - (self.shape[1] - 1) / 2) * (self.pixel_mm[1] / half_t)
        a, b = a.repeat_interleave(self.shape[1])[None], b.repeat(self.shape[0])[None]  # [1, pixels]
        idx = torch.arange(self.views) if views is None else views
        inp = sinogram[None].float()  # [1, N, V', detectors]
        out = torch.zeros(n, a.shape[1], device=device, dtype=torch.float32)
        for start in range(0, len(idx), self.chunk):
            theta = self.angles[idx[start:start + self.chunk]].to(device, torch.float32)[:, None]
            grid = torch.empty(1, len(theta), a.shape[1], 2, device=device)
            torch.addcmul(a * torch.cos(theta), b, torch.sin(theta), out=grid[0, ..., 0])
            row = torch.arange(start, start + len(theta), device=device, dtype=torch.float32)[:, None]
            grid[0, ..., 1] = row / max(rows - 1, 1) * 2 - 1
            out += F.grid_sample(inp, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0].sum(1)
        return (out * (math.pi / self.views)).reshape(n, *self.shape)

    def fbp(self, sinogram: torch.Tensor, views: torch.Tensor | None = None) -> torch.Tensor:
        """Filtered back-projection: [N, V', detectors] line integrals -> [N, H, W] in 1/mm
        (``views`` as in :meth:`backproject`)."""
        return self.backproject(self.ramp_filter(sinogram), views)
