#!/usr/bin/env python
"""Images of the Slicer extension: its icon, the sample's thumbnail and the screenshot.

    python scripts/make_extension_images.py icon           # Resources/Icons + module icon
    python scripts/make_extension_images.py screenshot     # runs VAFA on the sample, renders
    python scripts/make_extension_images.py thumbnail      # SampleData thumbnail of the sample CT

The screenshot is a real run: the shipped sample CT and model attacked by VAFA (table5) and PGD
through the same child-process path the module uses (EngineRun), or an existing `freqadv attack`
output of the sample (--from FOLDER), loaded into a scene by the MRML bridge and rendered
offscreen by FreqAdvSegmentLib.mrml.render: Slicer's own slice and 3D views, set up by the
module's views.show_results, tiled as the comparison layout (clean | VAFA | PGD; CT +
segmentation, perturbation in HU + where it broke, 3D where it broke).
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

    from FreqAdvSegmentLib.files.images import read_image
    from FreqAdvSegmentLib.mrml.display import show_ct
    from FreqAdvSegmentLib.mrml.render import OffscreenViews
    from FreqAdvSegmentLib.mrml.scene import new_scene
    from FreqAdvSegmentLib.mrml.views import focus_point, jump_slices
    from FreqAdvSegmentLib.mrml.volumes import volume_node_from_image
    from FreqAdvSegmentLib.samples.sample_data import sample_ct_path, sample_labels_path

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


def make_screenshot(model: str, steps: int, device: str, folder: str | None = None) -> None:
    """Slicer's comparison views of a real run, rendered offscreen and tiled as the layout
    shows them (each view with its name bar in its Slicer colour); no plotting library."""
    import slicer

    from FreqAdvSegmentLib.files.images import read_image
    from FreqAdvSegmentLib.mrml.display import show_ct
    from FreqAdvSegmentLib.mrml.logic import EngineRun, EngineSettings
    from FreqAdvSegmentLib.mrml.results import load_results
    from FreqAdvSegmentLib.mrml.scene import new_scene
    from FreqAdvSegmentLib.mrml.segmentations import segmentation_from_labels
    from FreqAdvSegmentLib.mrml.volumes import volume_node_from_image
    from FreqAdvSegmentLib.samples.sample_data import sample_ct_path, sample_labels_path

    scene = new_scene()
    slicer.mrmlScene = scene
    ct = volume_node_from_image(scene, read_image(sample_ct_path()), "sample CT")
    show_ct(ct)
    truth = segmentation_from_labels(scene, read_image(sample_labels_path()), "ground truth", reference_volume=ct)
    if folder is not None:  # an existing `freqadv attack` output of the sample
        _render_layout(scene, load_results(scene, folder, ct, truth))
        return
    with tempfile.TemporaryDirectory() as keep:
        settings = EngineSettings(model=model, device=device, keep_folder=Path(keep) / "out")
        attacks = [f"vafa:table5,q_init=20,steps={steps}", f"pgd,steps={steps}"]
        run = EngineRun(scene, ct, "attack", ground_truth=truth, settings=settings, attacks=attacks)
        results = run.run(on_progress=lambda r: print(f"\r{r.status():40s}", end="", flush=True))
        print()
        _render_layout(scene, results)


def _render_layout(scene, results, size: tuple[int, int] = (400, 400)) -> None:
    from FreqAdvSegmentLib.mrml.render import OffscreenViews, save_png
    from FreqAdvSegmentLib.mrml.views import COLUMNS, VIEW_COLORS, show_results

    with OffscreenViews(scene) as views:
        slices = {name: views.slice_view(name, "Axial", size) for column in COLUMNS for name in column[:2]}
        threeds = {column[2]: views.threed_view(column[2], size) for column in COLUMNS}
        show_results(scene, results)  # what the module shows: layers, segmentations, links, cameras
        for view in slices.values():
            view.fit()
        show_results(scene, results)  # again: fit() resets the slice position the results jump to
        for view in threeds.values():
            view.fit()
        rows = []
        for row in range(3):
            tiles = []
            for column in COLUMNS:
                name = column[row]
                view = slices.get(name) or threeds[name]
                node = view.node
                tiles.append(_with_bar(view.pixels(), node.GetLayoutLabel() or name, VIEW_COLORS[name]))
            rows.append(np.concatenate(_spaced(tiles, axis=1), axis=1))
        picture = np.concatenate(_spaced(rows, axis=0), axis=0)
    save_png(picture, SCREENSHOT)
    print(f"wrote {SCREENSHOT}")


def _with_bar(rgb: np.ndarray, label: str, color: str, height: int = 22) -> np.ndarray:
    """A view with Slicer's coloured controller bar on top, its label written in the bar."""
    bar = np.zeros((height, rgb.shape[1], 3), np.uint8)
    bar[:] = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    _draw_text(bar, label, 6, 4)
    return np.concatenate([bar, rgb], axis=0)


def _draw_text(target: np.ndarray, text: str, x: int, y: int) -> None:
    """Black text into an RGB array with VTK's own text renderer (the views' font)."""
    import vtk
    from vtkmodules.util import numpy_support

    image = vtk.vtkImageData()
    prop = vtk.vtkTextProperty()
    prop.SetFontSize(14)
    prop.SetColor(0, 0, 0)
    prop.BoldOn()
    renderer = vtk.vtkTextRenderer()
    if not renderer.RenderString(prop, text, image, [0, 0], 72):
        return
    w, h, _ = image.GetDimensions()
    rgba = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, -1)[::-1]
    h, w = min(h, target.shape[0] - y), min(w, target.shape[1] - x)
    alpha = rgba[:h, :w, 3:4] / 255.0
    region = target[y:y + h, x:x + w]
    target[y:y + h, x:x + w] = (region * (1 - alpha) + rgba[:h, :w, :3] * alpha).astype(np.uint8)


def _spaced(parts: list[np.ndarray], axis: int, gap: int = 3) -> list[np.ndarray]:
    out = []
    for index, part in enumerate(parts):
        if index:
            shape = list(part.shape)
            shape[axis] = gap
            out.append(np.full(shape, 40, np.uint8))
        out.append(part)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["icon", "thumbnail", "screenshot", "all"])
    parser.add_argument("--model", default="demo-unet", help="model for the screenshot (default: the shipped demo-unet)")
    parser.add_argument("--steps", type=int, default=20, help="VAFA steps for the screenshot (default 20, as the paper)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--from", dest="folder", default=None, help="render this `freqadv attack` output of the sample instead of running")
    args = parser.parse_args()
    if args.what in ("icon", "all"):
        make_icon()
    if args.what in ("thumbnail", "all"):
        make_thumbnail()
    if args.what in ("screenshot", "all"):
        make_screenshot(args.model, args.steps, args.device, args.folder)


if __name__ == "__main__":
    main()
