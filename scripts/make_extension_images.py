#!/usr/bin/env python
"""Images of the Slicer extension: its icon, the sample's thumbnail and the screenshot.

    python scripts/make_extension_images.py icon           # Resources/Icons + module icon
    python scripts/make_extension_images.py screenshot     # runs VAFA on the sample, renders
    python scripts/make_extension_images.py thumbnail      # SampleData thumbnail of the sample CT

The screenshot is a real run: the shipped sample CT and model attacked by VAFA through the same
child-process path the module uses (EngineRun), loaded into a scene by the MRML bridge, and
rendered offscreen by FreqAdvSegmentLib.mrml.render in the module's comparison layout (clean |
adversarial | perturbation over clean, 3D surfaces below; the Dice chart from report.json).
Needs slicer-core (pip install slicer-core) and an offscreen OpenGL (EGL or OSMesa).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "FreqAdvSegment"))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ICONS = [REPO / "Resources" / "Icons" / "FreqAdvSegment.png", REPO / "FreqAdvSegment" / "Resources" / "Icons" / "FreqAdvSegment.png"]
THUMBNAIL = REPO / "FreqAdvSegment" / "Resources" / "Icons" / "FreqAdvSegmentSampleCT.png"
SCREENSHOT = REPO / "Resources" / "Screenshots" / "FreqAdvSegment-1.png"


def make_icon() -> None:
    """128x128: an organ outline split into a clean half and a frequency-perturbed half."""
    fig = plt.figure(figsize=(1.28, 1.28), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 1), ax.set_ylim(0, 1), ax.axis("off")
    ax.add_patch(plt.Rectangle((0.02, 0.02), 0.96, 0.96, color="#1d2733", ec="none"))
    # 8x8 DCT-like block pattern on the right half: the frequency-domain perturbation.
    rng = np.random.default_rng(3)
    for i in range(4):
        for j in range(8):
            value = rng.uniform(-1, 1)
            color = plt.cm.RdBu_r(0.5 + 0.45 * value)
            ax.add_patch(plt.Rectangle((0.5 + i * 0.11, 0.06 + j * 0.11), 0.1, 0.1, color=color, alpha=0.85, ec="none"))
    theta = np.linspace(0, 2 * np.pi, 200)
    x = 0.5 + 0.32 * np.cos(theta) * (1 + 0.15 * np.sin(3 * theta))
    y = 0.5 + 0.26 * np.sin(theta) * (1 + 0.1 * np.cos(2 * theta))
    ax.fill(x, y, color="#dd8265", alpha=0.9, lw=0)  # liver colour of the BTCV table
    ax.plot(x, y, color="white", lw=2)
    ax.plot([0.5, 0.5], [0.04, 0.96], color="white", lw=1.5, ls="--")
    for path in ICONS:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, transparent=True)
    plt.close(fig)


def make_thumbnail() -> None:
    """SampleData thumbnail (about 260x280) of the sample CT: one axial slice, offscreen."""
    import slicer

    from FreqAdvSegmentLib.io import read_image
    from FreqAdvSegmentLib.mrml.display import show_ct
    from FreqAdvSegmentLib.mrml.render import OffscreenViews
    from FreqAdvSegmentLib.mrml.scene import new_scene
    from FreqAdvSegmentLib.mrml.views import focus_point, jump_slices
    from FreqAdvSegmentLib.mrml.volumes import volume_node_from_image
    from FreqAdvSegmentLib.sample_data import sample_ct_path, sample_labels_path

    scene = new_scene()
    slicer.mrmlScene = scene
    ct = volume_node_from_image(scene, read_image(sample_ct_path()), "sample CT")
    show_ct(ct)
    labels = read_image(sample_labels_path())
    with OffscreenViews(scene) as views:
        view = views.slice_view("Red", "Axial", (260, 280))
        view.composite.SetBackgroundVolumeID(ct.GetID())
        view.fit()
        jump_slices(scene, focus_point(labels, labels))  # the slice with the most organ voxels
        view.save_png(THUMBNAIL)


def make_screenshot(model: str, steps: int, device: str) -> None:
    import slicer

    from FreqAdvSegmentLib.io import read_image
    from FreqAdvSegmentLib.mrml.display import show_ct
    from FreqAdvSegmentLib.mrml.logic import EngineRun, EngineSettings
    from FreqAdvSegmentLib.mrml.render import OffscreenViews
    from FreqAdvSegmentLib.mrml.scene import new_scene
    from FreqAdvSegmentLib.mrml.segmentations import segmentation_from_labels
    from FreqAdvSegmentLib.mrml.views import (ADVERSARIAL_3D, ADVERSARIAL_SLICE, CLEAN_3D, CLEAN_SLICE,
                                              PERTURBATION_SLICE, jump_slices, show_results)
    from FreqAdvSegmentLib.mrml.volumes import volume_node_from_image
    from FreqAdvSegmentLib.sample_data import sample_ct_path, sample_labels_path

    scene = new_scene()
    slicer.mrmlScene = scene
    ct = volume_node_from_image(scene, read_image(sample_ct_path()), "sample CT")
    show_ct(ct)
    truth = segmentation_from_labels(scene, read_image(sample_labels_path()), "ground truth", reference_volume=ct)
    with tempfile.TemporaryDirectory() as keep:
        settings = EngineSettings(model=model, device=device, keep_folder=Path(keep) / "out")
        params = {"q_max": 20, "q_init": 20, "steps": steps, "block_size": 8}
        run = EngineRun(scene, ct, "attack", "vafa", params, truth, settings)
        results = run.run(on_progress=lambda r: print(f"\r{r.status():40s}", end="", flush=True))
        print()
        size = (420, 420)
        with OffscreenViews(scene) as views:
            slices = {name: views.slice_view(name, "Axial", size) for name in (CLEAN_SLICE, ADVERSARIAL_SLICE, PERTURBATION_SLICE)}
            threeds = {name: views.threed_view(name, size) for name in (CLEAN_3D, ADVERSARIAL_3D)}
            show_results(scene, results)
            for view in slices.values():
                view.fit()
            jump_slices(scene, results.focus_ras)
            for view in threeds.values():
                view.fit()
            pictures = {name: view.pixels() for name, view in {**slices, **threeds}.items()}
        _compose(pictures, results)


def _compose(pictures: dict[str, np.ndarray], results) -> None:
    from FreqAdvSegmentLib.mrml.tables import metrics_rows
    from FreqAdvSegmentLib.mrml.views import ADVERSARIAL_3D, ADVERSARIAL_SLICE, CLEAN_3D, CLEAN_SLICE, PERTURBATION_SLICE

    attack = next(iter(results.attacks))
    limit = results.attacks[attack].perturbation_limit_hu
    titles = {
        CLEAN_SLICE: "clean CT + segmentation", ADVERSARIAL_SLICE: f"{attack.upper()} adversarial CT + segmentation",
        PERTURBATION_SLICE: f"perturbation over clean CT (±{limit:.0f} HU)",
        CLEAN_3D: "clean segmentation (3D)", ADVERSARIAL_3D: f"{attack.upper()} segmentation (3D)",
    }
    fig, axes = plt.subplots(2, 3, figsize=(15, 10.2), facecolor="#20262e")
    order = [CLEAN_SLICE, ADVERSARIAL_SLICE, PERTURBATION_SLICE, CLEAN_3D, ADVERSARIAL_3D]
    for ax, name in zip(axes.flat, order):
        ax.imshow(pictures[name])
        ax.set_title(titles[name], color="white", fontsize=12)
        ax.axis("off")
    organs, columns = metrics_rows(results.report)
    ax = axes.flat[5]
    ax.set_facecolor("#2b333d")
    positions = np.arange(len(organs))
    ax.bar(positions - 0.2, np.nan_to_num(columns["Dice clean"]), 0.4, label="clean", color="#9aa4ad")
    ax.bar(positions + 0.2, np.nan_to_num(columns[f"Dice {attack}"]), 0.4, label=attack.upper(), color="#d6604d")
    ax.set_xticks(positions, organs, rotation=60, ha="right", fontsize=8, color="white")
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"Dice vs {results.report['reference']}", color="white")
    ax.tick_params(colors="white")
    ax.legend(fontsize=9)
    ax.set_title("per-organ Dice (metrics table)", color="white", fontsize=12)
    fig.suptitle("FreqAdvSegment: VAFA (frequency-domain) attack on a CT segmentation model", color="white", fontsize=15)
    fig.tight_layout()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(SCREENSHOT, dpi=90, facecolor=fig.get_facecolor())
    plt.close(fig)
    print(f"wrote {SCREENSHOT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["icon", "thumbnail", "screenshot", "all"])
    parser.add_argument("--model", default="demo-unet", help="model for the screenshot (default: the shipped demo-unet)")
    parser.add_argument("--steps", type=int, default=20, help="VAFA steps for the screenshot (default 20, as the paper)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if args.what in ("icon", "all"):
        make_icon()
    if args.what in ("thumbnail", "all"):
        make_thumbnail()
    if args.what in ("screenshot", "all"):
        make_screenshot(args.model, args.steps, args.device)


if __name__ == "__main__":
    main()
