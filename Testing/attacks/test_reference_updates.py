"""One update of each attack against a few-line transcription of its reference code's update.

Same tiny (random) UNet, same input and labels, same random start where there is one. The
transcriptions below are written from the reference code's update rule, independently of the
package's helpers (their own DCT, blocks, rounding and losses):

- VAFA: asif-hanif/vafa ``attacks/vafa/vafa.py`` (tables, phi_diff soft round, slice min-max);
- SA²: asif-hanif/saa ``attacks/saa/saa.py`` (factor step 0.1, DC kept, output before the update);
- FGSM, BIM, PGD: torchattacks-style (the public code's ``attacks/*.py``);
- SegPGD: Gu et al. (ECCV 2022): CE split by correct/wrong voxels, lambda = (t - 1) / 2T;
- CosPGD: Agnihotri et al.: per-voxel detached cosine times CE;
- APGD: fra31/auto-attack ``APGDAttack.attack_single_run`` (start, first step with a = 1, best);
- CW: Carlini & Wagner L2 (tanh box, Adam on ||x' - x||^2 + c * sum of margins).

"Signs at 100%" is asserted through the updated variables (a signed step of a fixed size from
the same start is equal only if every sign agrees); values to 1e-6.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from FreqAdvSegmentLib.attacks import APGD, BIM, CW, FGSM, PGD, SA2, VAFA, CosPGD, SegPGD
from FreqAdvSegmentLib.attacks import voxel

from conftest import small_unet

SIDE, BLOCK = 16, 8


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return small_unet(4).eval()


@pytest.fixture(scope="module")
def case():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, SIDE, SIDE, SIDE, generator=g) * 0.8 + 0.1
    y = torch.randint(0, 4, (1, 1, SIDE, SIDE, SIDE), generator=g)
    return x, y


def dice_ce(logits, y):
    """The public code's loss_fn (generate_adv_samples.py L174)."""
    return DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True, smooth_nr=0.0, smooth_dr=1e-6)(logits, y)


def grad_of(model, loss_fn, x, y):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss_fn(model(x), y), x)
    return g


def noise(seed, shape):
    """The attack's own random start (its seeded generator), shared with the transcription."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


# --- a DCT and blocks of their own ---------------------------------------------------------------


def dct_matrix(n):
    k, i = torch.arange(n, dtype=torch.float64)[:, None], torch.arange(n, dtype=torch.float64)[None]
    m = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m.float()


def dct3(b):
    m = dct_matrix(b.shape[-1])
    return torch.einsum("ai,bj,ck,...ijk->...abc", m, m, m, b)


def idct3(c):
    m = dct_matrix(c.shape[-1])
    return torch.einsum("ia,jb,kc,...ijk->...abc", m, m, m, c)


def split(x, b=BLOCK):
    B, C, H, W, D = x.shape
    return x.reshape(B, C, H // b, b, W // b, b, D // b, b).permute(0, 1, 2, 4, 6, 3, 5, 7)


def merge(blocks):
    B, C, nh, nw, nd, b, _, _ = blocks.shape
    return blocks.permute(0, 1, 2, 5, 3, 6, 4, 7).reshape(B, C, nh * b, nw * b, nd * b)


# --- frequency attacks ---------------------------------------------------------------------------


def test_vafa_public_code_update_and_output(tiny, case):
    x, y = case
    steps, q0 = 2, 12.0  # tables start inside [5, 20], so no clamp hides a sign

    def x_prime(q, i):  # vafa.py L108-123, phi_diff of attacks/vafa/utils.py
        alpha = torch.tensor(0.1) + i * (torch.tensor(1e-20) - 0.1) / steps
        r = dct3(split(x * 255) - 128) / q
        k, s = torch.log(2 / alpha - 1), 1 / (1 - alpha)
        rounded = (torch.tanh((r - (torch.floor(r) + 0.5)) * k) * s + 1) / 2 + torch.floor(r)
        adv = merge(idct3(rounded * q) + 128)
        lo, hi = adv.amin(dim=(2, 3), keepdim=True), adv.amax(dim=(2, 3), keepdim=True)
        return (adv - lo) / (hi - lo)

    q = torch.full((1, 1, 2, 2, 2, BLOCK, BLOCK, BLOCK), q0, requires_grad=True)
    (-dice_ce(tiny(x_prime(q, 0)), y)).backward()
    q1 = torch.clamp(q.detach() - torch.sign(q.grad), 5, 20)
    want = x_prime(q1, 1).clamp(0, 1)  # the x' of the last step, before its update

    ours = VAFA.public_code(tiny, q_max=20, steps=steps, block_size=BLOCK, q_init=q0, ssim_weight=0.0).run(x, y)
    assert torch.equal(ours.extras["q_tables"], q1), "every table entry moved by the reference's sign"
    torch.testing.assert_close(ours.adv, want, atol=1e-6, rtol=0)


def test_sa2_update_and_output(tiny, case):
    x, y = case
    rho, seed = 0.2, 3
    f0 = (1 - rho) + 2 * rho * noise(seed, (1, 1, 2, 2, 2, BLOCK, BLOCK, BLOCK))

    def x_prime(f):  # saa.py forward: DCT of the [0, 1] blocks, DC factor 1, IDCT, no clip
        f = f.clone()
        f[..., 0, 0, 0] = 1.0
        return merge(idct3(dct3(split(x)) * f))

    f = f0.clone().requires_grad_(True)
    (-dice_ce(tiny(x_prime(f)), y)).backward()
    f1 = torch.clamp(f.detach() - 0.1 * torch.sign(f.grad), 1 - rho, 1 + rho)
    want = x_prime(f1).clamp(0, 1)

    ours = SA2(tiny, rho=rho, steps=2, block_size=BLOCK, seed=seed).run(x, y)
    f1[..., 0, 0, 0] = 1.0
    torch.testing.assert_close(ours.extras["factors"], f1, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.adv, want, atol=1e-6, rtol=0)


# --- voxel attacks -------------------------------------------------------------------------------


def project(a, x, eps):
    return torch.clamp(x + torch.clamp(a - x, -eps, eps), 0, 1)


def test_fgsm_bim_pgd_one_step(tiny, case):
    x, y = case
    eps, alpha, seed = 8 / 255, 2 / 255, 5
    g = grad_of(tiny, dice_ce, x, y)
    torch.testing.assert_close(FGSM(tiny, eps=eps)(x, y), (x + eps * g.sign()).clamp(0, 1), atol=1e-6, rtol=0)
    torch.testing.assert_close(BIM(tiny, eps=eps, alpha=alpha, steps=1)(x, y), project(x + alpha * g.sign(), x, eps),
                               atol=1e-6, rtol=0)
    x0 = project(x + eps * (noise(seed, x.shape) * 2 - 1), x, eps)
    want = project(x0 + alpha * grad_of(tiny, dice_ce, x0, y).sign(), x, eps)
    torch.testing.assert_close(PGD(tiny, eps=eps, alpha=alpha, steps=1, seed=seed)(x, y), want, atol=1e-6, rtol=0)


def test_segpgd_and_cospgd_one_step(tiny, case):
    x, y = case
    eps, alpha, seed, steps = 8 / 255, 2 / 255, 6, 2
    t = y[:, 0]

    def segpgd_loss(lam):
        def loss(z, _):
            ce = F.cross_entropy(z, t, reduction="none")
            right = (z.argmax(1) == t).float()
            return ((1 - lam) * right * ce + lam * (1 - right) * ce).mean()
        return loss

    def cospgd_loss(z, _):
        cos = F.cosine_similarity(z.softmax(1), F.one_hot(t, 4).permute(0, 4, 1, 2, 3).float(), dim=1)
        return (cos.detach() * F.cross_entropy(z, t, reduction="none")).mean()

    x0 = project(x + eps * (noise(seed, x.shape) * 2 - 1), x, eps)
    for cls, losses in ((SegPGD, [segpgd_loss(i / (2 * steps)) for i in range(steps)]), (CosPGD, [cospgd_loss] * steps)):
        want = x0
        for loss in losses:
            want = project(want + alpha * grad_of(tiny, loss, want, y).sign(), x, eps)
        ours = cls(tiny, eps=eps, alpha=alpha, steps=steps, seed=seed)(x, y)
        torch.testing.assert_close(ours, want, atol=1e-6, rtol=0, msg=cls.__name__)


def test_apgd_first_step(tiny, case):
    x, y = case
    eps, seed = 4 / 255, 7
    t = noise(seed, x.shape) * 2 - 1
    x0 = torch.clamp(x + eps * t / t.abs().max(), 0, 1)  # autopgd_base.py: eps * normalize(t)
    loss = lambda a: dice_ce(tiny(a), y).item()  # noqa: E731
    x1 = project(x0 + 2 * eps * grad_of(tiny, dice_ce, x0, y).sign(), x, eps)  # a = 1 at i = 0
    want = x1 if loss(x1) > loss(x0) else x0
    ours = APGD(tiny, eps=eps, steps=1, seed=seed).run(x, y)
    torch.testing.assert_close(ours.adv, want, atol=1e-6, rtol=0)
    assert ours.extras["best_loss"] == pytest.approx(max(loss(x0), loss(x1)), rel=1e-6)


def test_cw_one_adam_step(tiny, case, monkeypatch):
    x, y = case
    c, lr = 1.0, 0.01
    seen = []
    original = voxel._CWBest.update
    monkeypatch.setattr(voxel._CWBest, "update", lambda self, a, *rest: (seen.append(a.clone()), original(self, a, *rest))[1])
    CW(tiny, c=c, steps=2, lr=lr, search_steps=1).run(x, y)

    w = torch.atanh((x * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6)).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    a = (torch.tanh(w) + 1) / 2
    z = tiny(a)
    true = z.gather(1, y)
    other = z.scatter(1, y, float("-inf")).amax(1, keepdim=True)
    (((a - x) ** 2).sum() + c * torch.clamp(true - other, min=0.0).sum()).backward()
    opt.step()
    torch.testing.assert_close(seen[0], a.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(seen[1], ((torch.tanh(w) + 1) / 2).detach(), atol=1e-6, rtol=0)


def test_ssim_clamps_the_mean_like_pytorch_msssim():
    """pytorch_msssim (nonnegative_ssim=True) applies relu to each volume's mean SSIM, not to
    each local value: an inverted volume, whose local structure terms are mostly negative,
    scores exactly 0 (per-value clamping would leave the positive minority's share)."""
    from FreqAdvSegmentLib.attacks.ssim import ssim3d, ssim3d_local

    x = torch.rand(1, 1, 12, 12, 12, generator=torch.Generator().manual_seed(0))
    y = 1 - x
    y[..., :4] = x[..., :4]  # a few slices agree: their local values are positive
    local = ssim3d_local(x, y, clamp=False)
    assert (local > 0).any() and local.mean() < 0
    assert ssim3d(x, y).item() == 0.0
    assert ssim3d_local(x, y).mean() > 0, "clamping each value would have scored it above 0"


@pytest.mark.parametrize("block", [3, 4, 5, 7, 8, 16])
def test_sa2_band_masks_are_the_public_codes(block):
    """saa utils.get_masks, transcribed: upper triangles, flipped, stacked along the last axis."""
    import numpy as np

    from FreqAdvSegmentLib.attacks.sa2 import band_mask

    ones = np.ones((block, block))
    low, high = np.zeros((block,) * 3), np.zeros((block,) * 3)
    for counter, z in enumerate(range(block // 2)):
        low[:, :, z] = np.flip(np.triu(ones, block // 2 + counter), 1)
    for counter, z in enumerate(range(block - 1, block // 2 - 1, -1)):
        high[:, :, z] = np.flip(np.triu(ones, block // 2 + counter), 0)
    middle = np.where(low + high == 1, 0, 1)
    for band, want in (("low", low), ("middle", middle), ("high", high)):
        want = torch.from_numpy(want.astype(bool))
        want[0, 0, 0] = False  # DC is never perturbed (perturb_dct_coefs_band)
        assert torch.equal(band_mask(block, band), want), band
