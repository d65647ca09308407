"""Shared fixtures: a small MONAI UNet trained for seconds on synthetic phantoms."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import UNet

from FreqAdvSegmentLib.samples.phantoms import phantom_batch

torch.set_num_threads(max(torch.get_num_threads(), 1))


def small_unet(out_channels: int = 14) -> torch.nn.Module:
    return UNet(3, 1, out_channels, channels=(8, 16, 32), strides=(2, 2), num_res_units=1)


@pytest.fixture(scope="session")
def phantoms() -> tuple[torch.Tensor, torch.Tensor]:
    """Eight training phantoms [8, 1, 32, 32, 32] and their labels."""
    return phantom_batch(8, (32, 32, 32), seed=0)


@pytest.fixture(scope="session")
def trained_unet(phantoms) -> torch.nn.Module:
    """A UNet that segments the phantoms well (trained ~200 steps, a few seconds on 2 cores)."""
    torch.manual_seed(0)
    model = small_unet()
    images, labels = phantoms
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(200):
        idx = torch.arange(4) + (step % 2) * 4
        opt.zero_grad()
        loss_fn(model(images[idx]), labels[idx]).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def test_case() -> tuple[torch.Tensor, torch.Tensor]:
    """A held-out phantom [1, 1, 32, 32, 32] the model never saw."""
    return phantom_batch(1, (32, 32, 32), seed=100)


# --- leaving the test session -----------------------------------------------------------------

_EXIT = {}


def pytest_sessionfinish(session, exitstatus) -> None:
    _EXIT["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    """Leave without CPython's final teardown once VTK (slicer-core, trame-slicer) is loaded.

    Seen on this project's CI: all tests passed and the summary was printed, then the interpreter
    segfaulted while destroying VTK objects at exit, turning a green run red. The results are
    final by now, so exit with pytest's own status instead of running that teardown.
    """
    if "vtkmodules" in sys.modules and "status" in _EXIT:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT["status"])
