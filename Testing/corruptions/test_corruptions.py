"""Realistic CT corruptions: known answers on phantoms (noise against dose, the kernel's MTF,
slice averaging, the projector), and on a crop of the shipped sample CT: each corruption leaves
its input alone and repeats from its seed, through the registry like any attack."""

from __future__ import annotations

import math

import pytest
import torch

from FreqAdvSegmentLib.attacks import registry
from FreqAdvSegmentLib.corruptions import dose, kernel
from FreqAdvSegmentLib.corruptions.base import hu_to_mu, mu_to_hu_change
from FreqAdvSegmentLib.corruptions.projector import ParallelBeam

CORRUPTIONS = ("dose", "kernel", "thickness", "motion", "ring", "noise", "blur", "offset")


def cylinder(size: int, pixel_mm: float, radius_mm: float, slices: int, hu: float = 0.0) -> torch.Tensor:
    """A water cylinder (``hu`` inside, air outside) along the axial axis, [H, W, D] in HU."""
    a = (torch.arange(size) - (size - 1) / 2) * pixel_mm
    r2 = a[:, None] ** 2 + a[None, :] ** 2
    return torch.where(r2 < radius_mm**2, hu, -1000.0)[..., None].repeat(1, 1, slices)


def central(size: int, pixel_mm: float, radius_mm: float) -> torch.Tensor:
    a = (torch.arange(size) - (size - 1) / 2) * pixel_mm
    return (a[:, None] ** 2 + a[None, :] ** 2) < radius_mm**2


# --- the projector --------------------------------------------------------------------------------


def test_projector_line_integrals_and_fbp_of_a_disk():
    beam = ParallelBeam((64, 64), (2.0, 2.0), views=60)
    mu = hu_to_mu(cylinder(64, 2.0, 40.0, 1)[..., 0])[None]  # water disk, radius 40 mm
    sino = beam.project(mu)
    centre = sino[0, :, (beam.detectors - 1) // 2]
    assert centre.mean().item() == pytest.approx(dose.hu_to_mu(torch.tensor(0.0)).item() * 80, rel=0.02)
    back = beam.fbp(sino)[0]
    inside = central(64, 2.0, 30.0)
    assert mu_to_hu_change(back[inside] - mu[0][inside]).abs().mean().item() < 15, "FBP gives the disk back"


# --- reduced dose ---------------------------------------------------------------------------------


def test_fast_dose_noise_matches_fbp_of_a_noisy_sinogram():
    """The corruption's variance map and noise texture against brute force: FBP of Gaussian
    sinogram noise at the photon count, on a 32 cm water cylinder (and the analytic centre value)."""
    size, pixel, photons = 64, 6.0, 3e5
    hu = cylinder(size, pixel, 160.0, 6).permute(2, 0, 1)  # [N, H, W] axial slices
    exact = mu_to_hu_change(dose.fbp_noise(hu_to_mu(hu), (pixel, pixel), 2.0, photons, torch.Generator().manual_seed(0), views=90))
    roi = central(size, pixel, 50.0)
    measured = exact[:, roi].std().item()
    predicted = dose.noise_std_hu(hu, (pixel, pixel, 2.0), photons)[:, roi].mean().item()
    assert predicted == pytest.approx(measured, rel=0.10)
    views = dose.VARIANCE_VIEWS  # the analytic centre: pi^2 / (12 V tau^2) * e^p / N_ray * interpolation
    var = math.pi**2 / (12 * views * pixel**2) * math.exp(hu_to_mu(torch.tensor(0.0)).item() * 320)
    var *= dose.INTERPOLATION_VARIANCE / dose.ray_photons(photons, pixel, 2.0, views)
    assert predicted == pytest.approx(mu_to_hu_change(torch.tensor(math.sqrt(var))).item(), rel=0.10)
    texture = dose.fbp_texture((4, 50, 70), (1.5, 1.5), torch.Generator().manual_seed(1), None)
    assert texture.std().item() == pytest.approx(1.0, rel=0.05)


def test_dose_noise_grows_as_one_over_sqrt_dose():
    """Water cylinder: the scan's own noise sigma_1 plus the corruption's added noise makes a
    total that grows as 1/sqrt(d): added^2 = (1/d - 1) sigma_1^2 (measured, independent seeds)."""
    spacing = (3.0, 3.0, 2.0)
    hu = cylinder(100, 3.0, 150.0, 8)
    roi = central(100, 3.0, 60.0)
    sigma_1 = dose.noise_std_hu(hu.permute(2, 0, 1), spacing, 3e5)[:, roi].mean().item()
    assert 2 < sigma_1 < 40, "the default photon count gives routine-scan noise (3 mm pixels: lower)"
    for seed, d in enumerate((0.5, 0.25, 0.1)):
        noisy = registry.build("dose", torch.nn.Conv3d(1, 1, 1), {"fraction": d}, seed=seed).apply(hu, spacing)
        added = (noisy - hu)[roi].std().item()
        total = math.sqrt(sigma_1**2 + added**2)
        assert total * math.sqrt(d) == pytest.approx(sigma_1, rel=0.10), (d, added)


# --- kernel, thickness, ring, motion ---------------------------------------------------------------


@pytest.mark.parametrize("target", [3.5, 2.5, 5.0])
def test_kernel_filter_mtf_equals_its_specification_at_its_cutoff(target):
    """A sinusoid at the target's MTF10 (lp/cm) through the filter: the scan's MTF times the
    filter's measured gain there is 0.1, the specification."""
    pixel, size, scan = 0.7, 240, 6.0  # 7.1 lp/cm Nyquist: every target lies well inside it
    f = target / 10.0  # cycles/mm
    a = torch.arange(size, dtype=torch.float64) * pixel
    wave = 40.0 + 50.0 * torch.cos(2 * math.pi * f * a)
    hu = wave[:, None, None].repeat(1, 40, 3).float()
    out = registry.build("kernel", torch.nn.Conv3d(1, 1, 1), {"mtf10_lpcm": target, "scan_mtf10_lpcm": scan}).apply(hu, (pixel, pixel, 2.0))
    rows = slice(40, 200)  # away from the padded edges
    basis = torch.stack([torch.ones(size), torch.cos(2 * math.pi * f * a), torch.sin(2 * math.pi * f * a)], 1)[rows].double()
    coef = torch.linalg.lstsq(basis, out[rows, 20, 1].double()[:, None]).solution[:, 0]
    gain = coef[1:].norm().item() / 50.0
    scan_mtf = kernel.gaussian_mtf(torch.tensor(target), scan).item()
    assert gain * scan_mtf == pytest.approx(0.1, abs=0.003)
    assert coef[0].item() == pytest.approx(40.0, abs=0.5), "the mean HU is kept"


def test_slice_averaging_keeps_a_uniform_regions_mean():
    """Water cylinder (40 HU) with a 300 HU bone slab in part of z: after 5 mm slices, the uniform
    region away from the slab keeps its mean to 1 HU; across the slab's edge z is blurred."""
    hu = cylinder(48, 3.0, 60.0, 40, hu=40.0)
    hu[20:28, 20:28, 18:22] = 300.0
    out = registry.build("thickness:5mm", torch.nn.Conv3d(1, 1, 1)).apply(hu, (3.0, 3.0, 2.0))
    inside = central(48, 3.0, 50.0)
    assert (out[..., :12][inside].mean() - 40.0).abs().item() < 1.0
    assert (out[..., 30:][inside].mean() - 40.0).abs().item() < 1.0
    assert out[24, 24, 16].item() > 45.0, "the slab spreads into the neighbouring thin slices"


def test_ring_lies_at_the_channels_radius():
    hu = cylinder(80, 2.0, 70.0, 2)
    out = registry.build("ring", torch.nn.Conv3d(1, 1, 1), {"channel_error": 5.0, "radius_mm": 30.0}).apply(hu, (2.0, 2.0, 2.0))
    change = (out - hu)[..., 0].abs()
    a = (torch.arange(80) - 39.5) * 2.0
    radius = torch.sqrt(a[:, None] ** 2 + a[None, :] ** 2)
    assert radius[change > 0.5 * change.max()].mean().item() == pytest.approx(30.0, abs=2.0)
    assert change.max().item() > 5.0, "a 5% gain error makes a visible ring"


def test_motion_needs_a_move_and_streaks_from_edges():
    model = torch.nn.Conv3d(1, 1, 1)
    hu = cylinder(80, 3.0, 90.0, 2)
    hu[30:40, 30:50] = 800.0  # bone
    still = registry.build("motion", model, {"shift_mm": 0.0}).apply(hu, (3.0, 3.0, 2.0))
    assert torch.equal(still, hu)
    moved = registry.build("motion", model, {"shift_mm": 10.0}).apply(hu, (3.0, 3.0, 2.0))
    change = (moved - hu).abs()
    assert change.max().item() > 50.0 and change[5, 5, 0].item() < change.max().item() / 5


# --- every corruption through the registry, on real CT voxels --------------------------------------


@pytest.fixture(scope="module")
def sample_crop():
    """64 x 64 x 12 voxels of the shipped sample CT on the paper's model grid: (x, hu, labels)."""
    from FreqAdvSegmentLib.files.images import read_image
    from FreqAdvSegmentLib.job.preprocess import hu_on_model_grid, prepare
    from FreqAdvSegmentLib.samples.sample_data import sample_ct_path

    image = read_image(sample_ct_path())
    x, ctx = prepare(image)
    hu = torch.from_numpy(hu_on_model_grid(image, ctx))
    crop = (slice(90, 154), slice(70, 134), slice(70, 82))
    return x[(0, 0, *crop)][None, None].contiguous(), hu[crop].contiguous(), ctx


def test_corruptions_are_registered_beside_the_attacks_and_not_adversarial():
    assert set(registry.corruption_names()) == set(CORRUPTIONS)
    assert "pgd" in registry.adversarial_names() and "dose" not in registry.adversarial_names()
    assert {"dose:25", "dose:50", "dose:10", "kernel:smooth", "thickness:5mm"} <= set(registry.methods())
    assert registry.resolve("dose:25")[1]["fraction"] == 0.25
    assert registry.parse_request("dose,fraction=1/4")[2] == {"fraction": 0.25}
    for name in CORRUPTIONS:
        spec = registry.get(name)
        assert not spec.adversarial and not spec.trainable and spec.domain == "corruption" and spec.sweep


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_a_corruption_leaves_its_input_alone_and_repeats_from_its_seed(name, sample_crop):
    x, hu, ctx = sample_crop
    labels = torch.zeros(1, 1, *x.shape[2:], dtype=torch.long)
    x_before, hu_before = x.clone(), hu.clone()
    runs = []
    for seed in (5, 5, 6):
        corruption = registry.build(name, torch.nn.Conv3d(1, 2, 1), seed=seed)
        corruption.use_grid(ctx.window, ctx.model.spacing, hu)
        runs.append(corruption.run(x, labels).adv)
    assert torch.equal(x, x_before) and torch.equal(hu, hu_before), "the input is never changed"
    assert torch.equal(runs[0], runs[1]), "the same seed gives the same corruption"
    assert not torch.equal(runs[0], x), "the default setting changes the CT"
    assert runs[0].min() >= 0 and runs[0].max() <= 1
    if name in ("dose", "noise"):
        assert not torch.equal(runs[0], runs[2]), "another seed, other noise"
