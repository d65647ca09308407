"""The MRML bridge (FreqAdvSegmentLib.mrml) against a real MRML scene from the slicer-core wheel.

Skipped where slicer-core is not installed. One engine run (FGSM and Gaussian noise on the shipped
sample CT with the shipped model, through the same child process the Slicer module uses) feeds
the flow, table, scene and rendering tests; everything else is synthetic and fast.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")

import vtk  # noqa: E402  (comes with slicer-core)

from FreqAdvSegmentLib.files.images import read_image  # noqa: E402
from FreqAdvSegmentLib.organs import BTCV_COLORS, BTCV_LABELS  # noqa: E402
from FreqAdvSegmentLib.mrml import display, engine_process, terminology, views  # noqa: E402
from FreqAdvSegmentLib.mrml.logic import EngineRun, EngineSettings, attack_arguments  # noqa: E402
from FreqAdvSegmentLib.mrml.render import OffscreenViews  # noqa: E402
from FreqAdvSegmentLib.mrml.results import load_results, read_report, write_scene  # noqa: E402
from FreqAdvSegmentLib.mrml.scene import load_scene, new_scene, save_scene  # noqa: E402
from FreqAdvSegmentLib.mrml.segmentations import (  # noqa: E402
    labels_from_segmentation,
    segment_label_values,
    segmentation_from_labels,
)
from FreqAdvSegmentLib.mrml.tables import dice_chart, metrics_rows, metrics_table  # noqa: E402
from FreqAdvSegmentLib.mrml.volumes import image_from_volume_node, volume_node_from_image  # noqa: E402
from FreqAdvSegmentLib.samples.sample_data import sample_ct_path, sample_labels_path  # noqa: E402

RGB = {name: np.array(color) for name, color in zip(BTCV_LABELS, BTCV_COLORS)}


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def scene():
    """A fresh headless scene, also set as slicer.mrmlScene (some slicer.util helpers read it)."""
    scene = new_scene()
    previous = getattr(slicer, "mrmlScene", None)
    slicer.mrmlScene = scene
    yield scene
    slicer.mrmlScene = previous


@pytest.fixture(scope="module")
def sample():
    return read_image(sample_ct_path()), read_image(sample_labels_path())


@pytest.fixture(scope="module")
def model_name(tmp_path_factory) -> str:
    """The shipped demo model; if this checkout does not ship its weights yet, a randomly
    initialised network of the same architecture (the flow is the same, only the Dice differs)."""
    from FreqAdvSegmentLib.models import resolve_model

    try:
        resolve_model("demo-unet")
        return "demo-unet"
    except FileNotFoundError:
        import torch
        from monai.networks.nets import UNet  # noqa: F401  (build_model needs MONAI)

        from FreqAdvSegmentLib.models import ModelSpec, build_model, save_model

        spec = ModelSpec(arch="unet", arch_args={"in_channels": 1, "out_channels": 14, "channels": (16, 32, 64, 128),
                                                 "strides": (2, 2, 2), "num_res_units": 1},
                         target_spacing=(3.0, 3.0, 3.0), roi_size=(128, 112, 112))
        torch.manual_seed(0)
        path = tmp_path_factory.mktemp("model") / "stand_in_demo_unet.safetensors"
        save_model(path, build_model(spec), spec)
        return str(path)


@pytest.fixture(scope="module")
def engine_run(sample, model_name, tmp_path_factory):
    """FGSM and GN in one EngineRun (child process, NRRD in and out) on the sample, with its
    labels as ground truth; the engine's output folder is kept for the scene tests."""
    scene = new_scene()
    slicer.mrmlScene = scene
    ct = volume_node_from_image(scene, sample[0], "patientA")
    truth = segmentation_from_labels(scene, sample[1], "ground truth", reference_volume=ct)
    before = _snapshot(scene, ct, truth)
    folder = tmp_path_factory.mktemp("engine") / "out"
    settings = EngineSettings(model=model_name, device="cpu", keep_folder=folder)
    fractions = []
    run = EngineRun(scene, ct, "attack", ground_truth=truth, settings=settings, attacks=["fgsm", "gn"])
    results = run.run(on_progress=lambda r: fractions.append(r.fraction))
    return {"scene": scene, "ct": ct, "truth": truth, "before": before, "results": results,
            "folder": folder, "fractions": fractions, "model": model_name}


def _ijk_to_ras(volume) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix).copy()


def _snapshot(scene, volume, segmentation) -> dict:
    return {
        "voxels": slicer.util.arrayFromVolume(volume).copy(),
        "ijk_to_ras": _ijk_to_ras(volume),
        "mtime": (volume.GetMTime(), volume.GetImageData().GetMTime(), segmentation.GetMTime()),
        "name": (volume.GetName(), segmentation.GetName()),
        "segments": segmentation.GetSegmentation().GetSegmentIDs(),
        "source": segmentation.GetSegmentation().GetSourceRepresentationName(),
    }


def _oblique_image(dtype=np.int16) -> sitk.Image:
    """Asymmetric voxels on a rotated, anisotropic grid (any axis mix-up changes something)."""
    voxels = np.arange(6 * 7 * 8).reshape(6, 7, 8).astype(dtype)  # [k, j, i]
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing((0.7, 1.1, 2.5))
    image.SetOrigin((-12.0, 30.5, 7.25))
    a, b = 0.4, -0.3  # rotations about z, then x: every direction cosine is non-trivial
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    image.SetDirection(tuple((rz @ rx).ravel()))
    return image


# --- volumes -------------------------------------------------------------------------------------


def test_volume_node_round_trip_with_oblique_direction(scene):
    image = _oblique_image()
    node = volume_node_from_image(scene, image, "oblique")
    back = image_from_volume_node(node)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    assert back.GetPixelID() == image.GetPixelID()
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-12)
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-12)


def test_volume_node_places_every_voxel_where_itk_does(scene):
    """Slicer's IJK-to-RAS maps each voxel to ITK's physical point with x and y negated
    (LPS -> RAS), including the voxel order of the array."""
    image = _oblique_image()
    node = volume_node_from_image(scene, image, "oblique")
    ijk_to_ras = _ijk_to_ras(node)
    for index in [(0, 0, 0), (7, 0, 0), (0, 6, 0), (0, 0, 5), (3, 4, 2)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(index))
        ras = ijk_to_ras @ np.array([*index, 1.0])
        np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-9)
        i, j, k = index
        assert slicer.util.arrayFromVolume(node)[k, j, i] == image[index]


def test_slicer_nrrd_writer_agrees_with_simpleitk(scene, tmp_path):
    """Independent check of the LPS/RAS handling: Slicer's own NRRD writer, read by ITK."""
    image = _oblique_image(np.float32)
    node = volume_node_from_image(scene, image, "oblique")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "slicer.nrrd"))
    assert storage.WriteData(node)
    written = sitk.ReadImage(str(tmp_path / "slicer.nrrd"))
    np.testing.assert_allclose(written.GetOrigin(), image.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(written.GetDirection(), image.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(written.GetSpacing(), image.GetSpacing(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(image))


def test_model_input_is_the_engines_preprocessing(scene, sample):
    from types import SimpleNamespace

    from FreqAdvSegmentLib.models import ModelSpec
    from FreqAdvSegmentLib.mrml.volumes import model_input
    from FreqAdvSegmentLib.job.pipeline import preprocessing_for
    from FreqAdvSegmentLib.job.preprocess import prepare

    loaded = SimpleNamespace(spec=ModelSpec(arch="unet", target_spacing=(3.0, 3.0, 3.0)))
    node = volume_node_from_image(scene, sample[0], "ct")
    x, ctx = model_input(node, loaded)
    expected, expected_ctx = prepare(sample[0], preprocessing_for(loaded))
    assert x.shape == expected.shape and bool((x == expected).all())
    assert ctx.model == expected_ctx.model


def test_volume_errors_are_clear(scene):
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(ValueError, match="has no voxels"):
        image_from_volume_node(empty)
    with pytest.raises(ValueError, match="3D scalar"):
        volume_node_from_image(scene, sitk.Image(4, 4, sitk.sitkUInt8), "2d")


# --- segmentations -------------------------------------------------------------------------------


def test_label_map_becomes_named_coloured_coded_segments_with_surfaces(scene, sample):
    ct_image, labels = sample
    ct = volume_node_from_image(scene, ct_image, "ct")
    node = segmentation_from_labels(scene, labels, "truth", BTCV_LABELS, ct)
    segmentation = node.GetSegmentation()
    present = sorted(int(v) for v in np.unique(sitk.GetArrayViewFromImage(labels)) if v)
    assert list(segmentation.GetSegmentIDs()) == [BTCV_LABELS[v] for v in present]
    assert len(present) >= 10, "the sample shows most BTCV organs"
    for value in present:
        name = BTCV_LABELS[value]
        segment = segmentation.GetSegment(name)
        assert segment.GetName() == name
        assert segment.GetLabelValue() == value
        np.testing.assert_allclose(segment.GetColor(), RGB[name] / 255, atol=1e-6)
        assert segment.GetTerminology() == terminology.terminology_entry(name)
        surface = vtk.vtkPolyData()
        assert node.GetClosedSurfaceRepresentation(name, surface)
        assert surface.GetNumberOfPoints() > 0, f"{name} has no closed surface"
    assert node.GetDisplayNode().GetPreferredDisplayRepresentationName3D() == "Closed surface"
    assert node.GetLabelmapConversionColorTableNode().GetColorName(6) == "liver"
    # Shared labelmap: one layer, each segment's voxels are its own label value.
    shared = slicer.util.arrayFromSegmentInternalBinaryLabelmap(node, "liver")
    assert segmentation.GetNumberOfLayers() == 1
    assert (shared == 6).sum() == (sitk.GetArrayViewFromImage(labels) == 6).sum()


def test_segmentation_back_to_label_values(scene, sample):
    ct_image, labels = sample
    ct = volume_node_from_image(scene, ct_image, "ct")
    node = segmentation_from_labels(scene, labels, "truth", BTCV_LABELS, ct)
    back = labels_from_segmentation(node, ct, BTCV_LABELS)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(labels))
    np.testing.assert_allclose(back.GetOrigin(), labels.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.GetDirection(), labels.GetDirection(), atol=1e-9)


def test_user_segments_match_labels_by_terminology_or_name(scene):
    image = sitk.Image(10, 10, 10, sitk.sitkUInt8)
    node = segmentation_from_labels(scene, image, "user", BTCV_LABELS)
    segmentation = node.GetSegmentation()
    segmentation.AddEmptySegment("a", "Right_Kidney")  # a name in another spelling
    segmentation.AddEmptySegment("b", "organ 7")  # a name matching nothing, standard codes
    other_context = "Segmentation category and type - DICOM master list~SCT^123037004^Anatomical Structure~SCT^10200004^Liver~^^~~^^~^^"
    segmentation.GetSegment("b").SetTerminology(other_context)
    assert segment_label_values(node, BTCV_LABELS) == {"a": 2, "b": 6}
    segmentation.AddEmptySegment("c", "tumour")
    with pytest.raises(ValueError, match="tumour"):
        segment_label_values(node, BTCV_LABELS)


def test_terminology_file_is_current_and_slicer_reads_it():
    assert terminology.TERMINOLOGY_FILE.read_text(encoding="utf-8") == terminology.terminology_json(), \
        "regenerate the .term.json from FreqAdvSegmentLib.mrml.terminology.terminology_json()"
    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    assert terminology.load_terminology(logic) == terminology.CONTEXT
    for name in BTCV_LABELS[1:]:
        entry = slicer.vtkSlicerTerminologyEntry()
        assert logic.FindTypeInTerminologyBy3dSlicerLabel(terminology.CONTEXT, name, entry), name
        found = logic.SerializeTerminologyEntry(entry).split("~")
        ours = terminology.terminology_entry(name).split("~")
        assert found[:4] == ours[:4], name  # context, category, type, modifier
        coded = entry.GetTypeModifierObject() if entry.GetTypeModifierObject().GetCodeValue() else entry.GetTypeObject()
        assert tuple(coded.GetRecommendedDisplayRGBValue()) == tuple(RGB[name])


# --- display -------------------------------------------------------------------------------------


def test_perturbation_display_is_diverging_and_centred(scene):
    values = np.zeros((6, 7, 8), np.float32)
    values[:, :, :4] = np.linspace(-9, -1, 6 * 7 * 4).reshape(6, 7, 4)
    values[:, :, 4:] = np.linspace(1, 5, 6 * 7 * 4).reshape(6, 7, 4)
    node = volume_node_from_image(scene, sitk.GetImageFromArray(values), "perturbation")
    limit = display.show_perturbation(node)
    shown = node.GetDisplayNode()
    assert shown.GetAutoWindowLevel() == 0
    assert shown.GetLevel() == 0.0, "the colour map is centred at zero"
    assert math.isclose(shown.GetWindow(), 2 * limit)
    assert limit == pytest.approx(np.percentile(np.abs(values[values != 0]), 99.5))
    colors = shown.GetColorNode()
    assert colors.GetName() == display.PERTURBATION_COLORS_NAME
    n = colors.GetNumberOfColors()
    low, mid, high = (np.array(colors.GetLookupTable().GetTableValue(i)) for i in (0, n // 2, n - 1))
    assert low[2] > low[0] + 0.3, "negative = blue"
    assert high[0] > high[1] + 0.2 and high[0] > high[2] + 0.2, "positive = red"
    assert mid[:3].min() > 0.9 and mid[3] == 0, "zero = white and see-through in overlays"
    assert low[3] == 1 and high[3] == 1
    legends = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    assert any(d.IsA("vtkMRMLColorLegendDisplayNode") for d in legends)
    assert display.show_perturbation(node, limit_hu=20.0) == 20.0
    assert shown.GetWindow() == 40.0 and shown.GetLevel() == 0.0


# --- tables --------------------------------------------------------------------------------------


def _report(with_truth: bool = True) -> dict:
    organs = {"spleen": (0.9, 3.0, 100), "liver": (0.95, 2.0, 900), "gallbladder": (None, None, 0)}
    def block(shift: float) -> dict:
        per = {name: {"dice": None if d is None else d - shift, "hd95_mm": None if h is None else h + 10 * shift,
                      "ref_voxels": v, "pred_voxels": v, "note": None} for name, (d, h, v) in organs.items()}
        return {"per_class": per, "mean_dice": 0.925 - shift, "mean_hd95_mm": 2.5 + 10 * shift}
    return {"reference": "ground truth" if with_truth else "clean prediction",
            "clean_vs_ground_truth": block(0.0) if with_truth else None,
            "attacks": {"vafa": {"vs_reference": block(0.3)}, "pgd": {"vs_reference": block(0.5)}}}


def test_metrics_table_holds_the_reports_numbers(scene):
    table = metrics_table(scene, _report())
    names = [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]
    assert names == ["organ", "reference voxels", "Dice clean", "HD95 clean (mm)", "Dice vafa", "HD95 vafa (mm)",
                     "Dice drop vafa", "Dice pgd", "HD95 pgd (mm)", "Dice drop pgd"]
    organs = [table.GetCellText(r, 0) for r in range(table.GetNumberOfRows())]
    assert organs == ["spleen", "liver", "mean (organs)"], "absent organs are left out, the mean is added"
    dice_vafa = slicer.util.arrayFromTableColumn(table, "Dice vafa")
    np.testing.assert_allclose(dice_vafa, [0.6, 0.65, 0.625])
    np.testing.assert_allclose(slicer.util.arrayFromTableColumn(table, "Dice drop pgd"), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(slicer.util.arrayFromTableColumn(table, "HD95 vafa (mm)"), [6.0, 5.0, 5.5])
    assert table.GetAttribute("FreqAdvSegment.reference") == "ground truth"


def test_without_ground_truth_clean_is_the_reference(scene):
    organs, columns = metrics_rows(_report(with_truth=False))
    assert columns["Dice clean"] == [1.0] * len(organs)
    assert columns["HD95 clean (mm)"] == [0.0] * len(organs)


def test_dice_chart_has_one_bar_series_per_condition(scene):
    table = metrics_table(scene, _report())
    chart = dice_chart(scene, table)
    series = [chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes())]
    assert [s.GetYColumnName() for s in series] == ["Dice clean", "Dice vafa", "Dice pgd"]
    assert all(s.GetPlotType() == s.PlotTypeBar and s.GetTableNode() is table for s in series)
    assert all(s.GetLabelColumnName() == "organ" for s in series)
    assert "ground truth" in chart.GetTitle()


# --- scenes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mrb", ".mrml"])
def test_scene_saved_and_loaded_back_intact(scene, sample, tmp_path, suffix):
    ct_image, labels = sample
    ct = volume_node_from_image(scene, ct_image, "ct")
    display.show_ct(ct)
    truth = segmentation_from_labels(scene, labels, "truth", BTCV_LABELS, ct)
    perturbation = volume_node_from_image(scene, _oblique_image(np.float32), "perturbation")
    limit = display.show_perturbation(perturbation)
    table = metrics_table(scene, _report())
    dice_chart(scene, table, "chart")

    path = save_scene(scene, tmp_path / f"saved{suffix}")
    loaded = load_scene(path)

    ct2 = loaded.GetFirstNodeByName("ct")
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(ct2), sitk.GetArrayFromImage(ct_image))
    np.testing.assert_allclose(image_from_volume_node(ct2).GetOrigin(), ct_image.GetOrigin(), atol=1e-4)
    p2 = loaded.GetFirstNodeByName("perturbation")
    np.testing.assert_allclose(image_from_volume_node(p2).GetDirection(), _oblique_image().GetDirection(), atol=1e-6)
    assert p2.GetDisplayNode().GetColorNode().GetName() == display.PERTURBATION_COLORS_NAME
    assert (p2.GetDisplayNode().GetWindow(), p2.GetDisplayNode().GetLevel()) == pytest.approx((2 * limit, 0.0))
    truth2 = loaded.GetFirstNodeByName("truth").GetSegmentation()
    assert truth2.GetSegmentIDs() == truth.GetSegmentation().GetSegmentIDs()
    liver = truth2.GetSegment("liver")
    assert liver.GetTerminology() == terminology.terminology_entry("liver")
    np.testing.assert_allclose(liver.GetColor(), RGB["liver"] / 255, atol=1e-6)
    back = labels_from_segmentation(loaded.GetFirstNodeByName("truth"), ct2, BTCV_LABELS)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(labels))
    table2 = loaded.GetFirstNodeByName(table.GetName())
    np.testing.assert_allclose(slicer.util.arrayFromTableColumn(table2, "Dice vafa"), [0.6, 0.65, 0.625])
    chart2 = loaded.GetFirstNodeByName("chart")
    assert chart2.GetNumberOfPlotSeriesNodes() == 3
    assert chart2.GetNthPlotSeriesNode(0).GetTableNode().GetName() == table.GetName()


# --- the engine run (the module's Logic path) ----------------------------------------------------


def test_attack_flow_creates_every_result(engine_run, sample):
    results, ct = engine_run["results"], engine_run["ct"]
    ct_image = sample[0]
    adversarial = image_from_volume_node(results.adversarial_volume)
    perturbation = image_from_volume_node(results.perturbation_volume)
    for image in (adversarial, perturbation):  # on the input's grid, geometry preserved
        assert image.GetSize() == ct_image.GetSize()
        np.testing.assert_allclose(image.GetOrigin(), ct_image.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(image.GetDirection(), ct_image.GetDirection(), atol=1e-6)
        np.testing.assert_allclose(image.GetSpacing(), ct_image.GetSpacing(), atol=1e-6)
    clean = sitk.GetArrayFromImage(ct_image).astype(np.float32)
    delta = sitk.GetArrayFromImage(perturbation)
    np.testing.assert_allclose(sitk.GetArrayFromImage(adversarial), clean + delta, atol=0.05)
    assert 0 < np.abs(delta).max() <= 4 / 255 * 425 + 1e-3, "FGSM's budget, 4/255 of the 425 HU window"
    for segmentation in (results.clean_segmentation, results.adversarial_segmentation):
        assert segmentation.GetSegmentation().GetNumberOfSegments() > 0
        assert segmentation.GetNodeReferenceID(segmentation.GetReferenceImageGeometryReferenceRole()) == ct.GetID()
    assert results.perturbation_volume.GetDisplayNode().GetLevel() == 0.0
    assert results.ground_truth is engine_run["truth"]
    assert results.focus_ras is not None


def test_attack_flow_never_modifies_the_inputs(engine_run):
    before = engine_run["before"]
    after = _snapshot(engine_run["scene"], engine_run["ct"], engine_run["truth"])
    np.testing.assert_array_equal(after["voxels"], before["voxels"])
    np.testing.assert_array_equal(after["ijk_to_ras"], before["ijk_to_ras"])
    assert after["segments"] == before["segments"] and after["source"] == before["source"]
    assert after["mtime"] == before["mtime"], "nothing was even written to the input nodes"
    assert after["name"] == before["name"]


def test_attack_flow_table_matches_report_json(engine_run):
    results = engine_run["results"]
    report = json.loads((engine_run["folder"] / "report.json").read_text(encoding="utf-8"))
    assert results.report == report
    table = results.metrics_table
    fgsm = report["attacks"]["fgsm"]["vs_reference"]["per_class"]
    organs = [table.GetCellText(r, 0) for r in range(table.GetNumberOfRows() - 1)]
    assert organs == [o for o, m in fgsm.items() if m["ref_voxels"] > 0]
    expected = [fgsm[o]["dice"] for o in organs] + [report["attacks"]["fgsm"]["vs_reference"]["mean_dice"]]
    np.testing.assert_allclose(slicer.util.arrayFromTableColumn(table, "Dice fgsm"), expected)
    clean = report["clean_vs_ground_truth"]["per_class"]
    np.testing.assert_allclose(slicer.util.arrayFromTableColumn(table, "Dice clean")[:-1], [clean[o]["dice"] for o in organs])


def test_attack_flow_reports_progress(engine_run):
    fractions = [f for f in engine_run["fractions"] if f is not None]
    assert fractions and fractions == sorted(fractions), "progress only moves forward"
    assert max(fractions) > 0.5


def test_segment_only_run(scene, sample, model_name):
    ct = volume_node_from_image(scene, sample[0], "ct")
    run = EngineRun(scene, ct, "segment", settings=EngineSettings(model=model_name, device="cpu"))
    node = run.run()
    assert node.GetName() == "ct segmentation" and run.fraction is None
    labels = labels_from_segmentation(node, ct, BTCV_LABELS)
    assert labels.GetSize() == sample[0].GetSize()
    if model_name == "demo-unet":  # the trained model finds the liver; a stand-in may not
        assert "liver" in node.GetSegmentation().GetSegmentIDs()


def test_several_attacks_each_get_their_nodes_in_the_comparison_views(engine_run, sample):
    """clean | fgsm | gn: each attack its own volumes, segmentation and where-it-broke
    segmentation, shown only in its own column; slices and 3D cameras linked."""
    scene, results = engine_run["scene"], engine_run["results"]
    assert list(results.attacks) == ["fgsm", "gn"]
    views.create_view_nodes(scene)
    views.show_results(scene, results)
    clean_labels = read_image(engine_run["folder"] / results.report["files"]["clean_labels"])
    for label, (ct_view, perturbation_view, threed_view) in zip(results.attacks, views.COLUMNS[1:]):
        nodes = results.attacks[label]
        composite = scene.GetNodeByID(f"vtkMRMLSliceCompositeNode{ct_view}")
        assert composite.GetBackgroundVolumeID() == nodes.adversarial_volume.GetID()
        below = scene.GetNodeByID(f"vtkMRMLSliceCompositeNode{perturbation_view}")
        assert below.GetForegroundVolumeID() == nodes.perturbation_volume.GetID()
        assert set(nodes.adversarial_segmentation.GetDisplayNode().GetViewNodeIDs()) == {views.slice_node_id(ct_view)}
        assert set(nodes.changes_segmentation.GetDisplayNode().GetViewNodeIDs()) == {
            views.slice_node_id(perturbation_view), views.view_node_id(threed_view)}
        assert scene.GetNodeByID(views.slice_node_id(ct_view)).GetLayoutLabel() == label
        # Where it broke: exactly the voxels whose label changed, named by the organ lost.
        adversarial_labels = read_image(engine_run["folder"] / results.report["files"][f"{label}/adversarial_labels"])
        a, b = sitk.GetArrayFromImage(clean_labels), sitk.GetArrayFromImage(adversarial_labels)
        changes = nodes.changes_segmentation.GetSegmentation()
        assert changes.GetNumberOfSegments() > 0
        for index in range(changes.GetNumberOfSegments()):
            organ, segment = changes.GetNthSegmentID(index), changes.GetNthSegment(index)
            if organ == "background lost":
                continue
            value = BTCV_LABELS.index(organ)
            mask = _segment_mask(nodes.changes_segmentation, organ, engine_run["ct"])
            np.testing.assert_array_equal(mask, (a == value) & (b != value))
            assert segment.GetName() == f"{organ} lost"
            assert nodes.changed_voxels[f"{organ} lost"] == int(((a == value) & (b != value)).sum())
        assert nodes.perturbation_volume.GetVoxelValueUnits().GetCodeMeaning() == "Hounsfield unit"
    legends = [display.legend_title(results.attacks[a].perturbation_volume) for a in results.attacks]
    assert legends == ["fgsm perturbation (HU)", "gn perturbation (HU)"], "one legend per attack, titles differ"
    for name in views.SLICE_VIEWS:
        assert scene.GetNodeByID(f"vtkMRMLSliceCompositeNode{name}").GetLinkedControl()
        assert scene.GetNodeByID(views.slice_node_id(name)).GetViewGroup() == 0
    for name in views.THREED_VIEWS:
        assert scene.GetNodeByID(views.view_node_id(name)).GetLinkedControl(), "3D cameras move together"
    assert set(results.clean_segmentation.GetDisplayNode().GetViewNodeIDs()) == {
        views.slice_node_id(views.CLEAN_SLICE), views.view_node_id(views.CLEAN_3D)}


def _segment_mask(segmentation, segment_id: str, reference) -> np.ndarray:
    """One segment as a boolean [k, j, i] array on ``reference``'s grid."""
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    scene = segmentation.GetScene()
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__mask")
    try:
        assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation, ids, labelmap, reference, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
        return sitk.GetArrayFromImage(image_from_volume_node(labelmap)) > 0
    finally:
        scene.RemoveNode(labelmap)


def _extent_ras(volume) -> np.ndarray:
    bounds = [0.0] * 6
    volume.GetRASBounds(bounds)
    return np.array(bounds[1::2]) - np.array(bounds[0::2])


def test_saved_scene_opens_right_without_the_extension(engine_run, capfd):
    """scene.mrb read back into a fresh scene in which the extension registered nothing."""
    folder = engine_run["folder"]
    capfd.readouterr()
    path = write_scene(folder, sample_ct_path(), sample_labels_path())
    written = capfd.readouterr()
    assert "Zip: adding" not in written.out + written.err, "no zip noise on the console"
    assert path == folder / "scene.mrb" and path.is_file()
    scene = load_scene(path)
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    assert not layout.IsLayoutDescription(views.LAYOUT_ID), "a fresh scene: nothing of the extension registered"
    assert layout.GetViewArrangement() == views.SAVED_LAYOUT_ID, "a layout every Slicer has"
    assert layout.GetAttribute(views.LAYOUT_ATTRIBUTE) == views.LAYOUT_XML, "the full layout travels as XML"
    ct = scene.GetFirstNodeByName("patientA_ct")
    extent = _extent_ras(ct)
    labels = {}
    for name in views.SLICE_VIEWS:
        node = scene.GetNodeByID(views.slice_node_id(name))
        labels[name] = node.GetLayoutLabel()
        fov = node.GetFieldOfView()
        assert fov[0] >= extent[0] and fov[1] >= extent[1], f"{name} shows the whole body ({fov} vs {extent})"
        assert fov[0] < 1.5 * max(extent[:2]), f"{name} is not zoomed far out"
        assert node.GetViewGroup() == 0 and node.GetOrientation() == "Axial"
    assert labels == {"Red": "clean", "Red+": "truth", "Green": "fgsm", "Green+": "fgsm HU", "Yellow": "gn", "Yellow+": "gn HU"}
    colors = {tuple(round(c, 3) for c in scene.GetNodeByID(views.slice_node_id(n)).GetLayoutColor()) for n in views.SLICE_VIEWS}
    assert len(colors) == len(views.SLICE_VIEWS), "every view its own colour"
    assert all(scene.GetNodeByID(f"vtkMRMLSliceCompositeNode{n}").GetLinkedControl() for n in views.SLICE_VIEWS)
    composites = {n: scene.GetNodeByID(f"vtkMRMLSliceCompositeNode{n}") for n in views.SLICE_VIEWS}
    assert composites["Green+"].GetForegroundVolumeID() == scene.GetFirstNodeByName("patientA_ct fgsm perturbation (HU)").GetID()
    assert composites["Yellow"].GetBackgroundVolumeID() == scene.GetFirstNodeByName("patientA_ct gn adversarial").GetID()
    # 3D: one camera per view, on the CT's centre, far enough back to see all of it.
    bounds = [0.0] * 6
    ct.GetRASBounds(bounds)
    centre, radius = (np.array(bounds[0::2]) + np.array(bounds[1::2])) / 2, np.linalg.norm(extent) / 2
    cameras = scene.GetNodesByClass("vtkMRMLCameraNode")
    by_view = {cameras.GetItemAsObject(i).GetLayoutName(): cameras.GetItemAsObject(i) for i in range(cameras.GetNumberOfItems())}
    assert set(views.THREED_VIEWS) <= set(by_view)
    threed_labels = set()
    for name in views.THREED_VIEWS:
        camera, view = by_view[name], scene.GetNodeByID(views.view_node_id(name))
        np.testing.assert_allclose(camera.GetFocalPoint(), centre, atol=1e-3)
        distance = np.linalg.norm(np.array(camera.GetPosition()) - centre)
        assert distance * math.sin(math.radians(camera.GetViewAngle()) / 2) >= radius * 0.999
        assert view.GetLinkedControl()
        threed_labels.add(view.GetLayoutLabel())
    assert threed_labels == {"clean 3D", "fgsm 3D", "gn 3D"}, "3D views are told apart"
    # Subject hierarchy: one folder for the run, one per attack.
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    top = hierarchy.GetItemChildWithName(hierarchy.GetSceneItemID(), "patientA_ct FreqAdvSegment results")
    assert top
    for label in ("fgsm", "gn"):
        folder_item = hierarchy.GetItemChildWithName(top, label)
        children: list[int] = []
        hierarchy.GetItemChildren(folder_item, children)
        names = {hierarchy.GetItemName(i) for i in children}
        assert names == {f"patientA_ct {label} adversarial", f"patientA_ct {label} perturbation (HU)",
                         f"patientA_ct {label} segmentation", f"patientA_ct {label} where it broke"}
    for name in ("patientA_ct fgsm adversarial", "patientA_ct gn perturbation (HU)"):
        assert scene.GetFirstNodeByName(name).GetVoxelValueUnits().GetCodeMeaning() == "Hounsfield unit"
    chart = scene.GetFirstNodeByName("patientA_ct Dice")
    assert chart.GetXAxisTitle().startswith("organ: 0 ") and "liver" in chart.GetXAxisTitle()
    assert views._plot_view(scene).GetPlotChartNodeID() == chart.GetID()
    gn_seg = scene.GetFirstNodeByName("patientA_ct gn segmentation").GetDisplayNode()
    assert set(gn_seg.GetViewNodeIDs()) == {views.slice_node_id("Yellow")}, "no segmentation shows everywhere"
    # With the extension: the stored layout comes back.
    assert views.restore_saved_layout(layout) and layout.GetViewArrangement() == views.LAYOUT_ID
    assert layout.GetLayoutDescription(views.LAYOUT_ID) == views.LAYOUT_XML


def test_outputs_are_remembered_and_refilled_never_the_inputs(engine_run, scene, sample):
    """Apply twice: the second run refills the first run's nodes (no second set); a remembered
    reference that points at an input makes a new node instead, and the input is untouched."""
    from FreqAdvSegmentLib.mrml.outputs import ROLE_PREFIX, remember_outputs, remembered_outputs
    from FreqAdvSegmentLib.mrml.results import ROLE_ATTRIBUTE

    ct = volume_node_from_image(scene, sample[0], "ct")
    before = _snapshot(scene, ct, segmentation_from_labels(scene, sample[1], "truth", reference_volume=ct))
    parameter_node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "FreqAdvSegment")
    first = load_results(scene, engine_run["folder"], ct)
    remember_outputs(parameter_node, first)
    count = scene.GetNumberOfNodes()
    reuse = remembered_outputs(parameter_node)
    assert set(reuse) == set(first.node_roles()) and "gn/changes" in reuse
    second = load_results(scene, engine_run["folder"], ct, reuse=reuse)
    assert scene.GetNumberOfNodes() == count, "the second run made no new nodes"
    assert second.node_roles() == first.node_roles()
    # A reference that names the input CT (or a node no run made) is never filled.
    parameter_node.SetNodeReferenceID(ROLE_PREFIX + "fgsm/adversarial", ct.GetID())
    stranger = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "user's own volume")
    parameter_node.SetNodeReferenceID(ROLE_PREFIX + "gn/adversarial", stranger.GetID())
    third = load_results(scene, engine_run["folder"], ct, reuse=remembered_outputs(parameter_node))
    assert third.attacks["fgsm"].adversarial_volume not in (ct, first.attacks["fgsm"].adversarial_volume)
    assert third.attacks["gn"].adversarial_volume is not stranger and stranger.GetImageData() is None
    assert third.attacks["fgsm"].adversarial_volume.GetAttribute(ROLE_ATTRIBUTE) == "fgsm/adversarial"
    assert ct.GetAttribute(ROLE_ATTRIBUTE) is None
    after = _snapshot(scene, ct, scene.GetFirstNodeByName("truth"))
    np.testing.assert_array_equal(after["voxels"], before["voxels"])
    np.testing.assert_array_equal(after["ijk_to_ras"], before["ijk_to_ras"])
    assert after["mtime"][:2] == before["mtime"][:2], "the input CT node was not written to"


def test_explicit_output_that_is_an_input_is_refused(engine_run, scene, sample):
    from FreqAdvSegmentLib.mrml.results import OutputNodes

    ct = volume_node_from_image(scene, sample[0], "ct")
    mtime = (ct.GetMTime(), ct.GetImageData().GetMTime())
    folder = engine_run["folder"]
    single = tmp_single_attack_folder(folder)
    with pytest.raises(ValueError, match="never overwrites its inputs"):
        load_results(scene, single, ct, outputs=OutputNodes(adversarial_volume=ct))
    assert (ct.GetMTime(), ct.GetImageData().GetMTime()) == mtime


def tmp_single_attack_folder(folder: Path) -> Path:
    """A copy of the engine's folder whose report lists only fgsm (explicit OutputNodes are for
    single-attack results)."""
    import shutil
    import tempfile

    copy = Path(tempfile.mkdtemp(prefix="freqadv-single-")) / "out"
    shutil.copytree(folder, copy)
    report = json.loads((copy / "report.json").read_text(encoding="utf-8"))
    report["attacks"] = {"fgsm": report["attacks"]["fgsm"]}
    (copy / "report.json").write_text(json.dumps(report), encoding="utf-8")
    return copy


def test_first_attack_is_the_default():
    from FreqAdvSegmentLib.mrml.results import AttackNodes, ResultNodes

    vafa, pgd = AttackNodes("vafa", "adv1", "pert1", "seg1", 4.0), AttackNodes("pgd", "adv2", "pert2", "seg2", 6.7)
    results = ResultNodes(Path("."), {}, None, None, {"vafa": vafa, "pgd": pgd})
    assert results.attack_nodes() is vafa and results.adversarial_volume == "adv1"
    assert results.attack_nodes("pgd") is pgd
    with pytest.raises(KeyError, match="vafa, pgd"):
        results.attack_nodes("cw")


def test_load_results_without_the_input_rebuilds_it(engine_run, scene, sample):
    results = load_results(scene, engine_run["folder"])
    rebuilt = image_from_volume_node(results.input_volume)
    np.testing.assert_allclose(sitk.GetArrayFromImage(rebuilt), sitk.GetArrayFromImage(sample[0]), atol=0.05)
    assert "adversarial - perturbation" in results.input_volume.GetName()
    assert results.adversarial_volume.GetName() == f"{engine_run['folder'].name} fgsm adversarial"


def test_output_nodes_are_filled_in_place(engine_run, scene, sample):
    from FreqAdvSegmentLib.mrml.results import OutputNodes

    ct = volume_node_from_image(scene, sample[0], "ct")
    targets = OutputNodes(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my adversarial"),
                          metrics_table=scene.AddNewNodeByClass("vtkMRMLTableNode", "my table"))
    results = load_results(scene, tmp_single_attack_folder(engine_run["folder"]), ct, outputs=targets)
    assert results.adversarial_volume is targets.adversarial_volume
    assert results.adversarial_volume.GetName() == "my adversarial"
    assert results.metrics_table is targets.metrics_table and results.metrics_table.GetNumberOfRows() > 1


# --- the child process ---------------------------------------------------------------------------


def test_progress_lines_of_the_cli_are_parsed():
    line = '{"event": "progress", "stage": "vafa", "step": 8, "total": 20, "fraction": 0.4}'
    assert engine_process.parse_progress(line) == engine_process.Progress("vafa", 8, 20)
    assert engine_process.parse_progress(engine_process.Progress("segment", 1, 1).to_line()).fraction == 1.0
    assert engine_process.parse_progress("report: out/report.html") is None
    assert engine_process.parse_progress('{"event": "other", "stage": "vafa"}') is None
    # The bars are for people only now: a bar line is text, not progress.
    assert engine_process.parse_progress("    vafa:  40%|####      | 8/20 [00:16<00:24,  2.01s/step]") is None
    assert engine_process.engine_environment({})["FREQADV_PROGRESS"] == "json"
    stages = ["vafa"]
    assert engine_process.overall_fraction(engine_process.Progress("segment", 1, 1), stages) == pytest.approx(0.1)
    assert engine_process.overall_fraction(engine_process.Progress("vafa", 10, 20), stages) == pytest.approx(0.55)


def test_attack_requests_become_cli_flags():
    args = attack_arguments(["vafa:public-code,q_max=30.0", "pgd"])
    assert args == ["--method", "vafa:public-code,q_max=30.0", "--method", "pgd"]
    with pytest.raises(ValueError, match="unknown attack"):
        attack_arguments(["deepfool"])
    with pytest.raises(ValueError, match="takes no parameter"):
        attack_arguments(["pgd,q_max=3"])
    with pytest.raises(ValueError, match="at least one"):
        attack_arguments([])


def test_cancel_kills_the_whole_process_tree():
    """A child that starts a grandchild: Cancel must end both."""
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print(p.pid, flush=True); time.sleep(60)")
    job = engine_process.EngineJob([sys.executable, "-c", code])
    job.start()
    deadline = time.time() + 20
    while not job.lines and time.time() < deadline:
        time.sleep(0.05)
    grandchild = int(job.lines[0])
    job.cancel()
    assert job.poll() is not None
    time.sleep(0.2)
    assert not _alive(grandchild), "the grandchild survived Cancel"
    with pytest.raises(engine_process.EngineError, match="cancelled"):
        job.check()


def test_cancelled_run_leaves_the_scene_as_it_was(scene, sample, model_name, tmp_path):
    ct = volume_node_from_image(scene, sample[0], "ct")
    count = scene.GetNumberOfNodes()
    run = EngineRun(scene, ct, "attack", "vafa", {"steps": 50}, settings=EngineSettings(model=model_name, device="cpu", work_root=tmp_path))
    run.start()
    workdir = run.workdir
    assert (workdir / "input.nrrd").is_file()
    time.sleep(1.0)
    run.cancel()
    assert not run.poll()
    assert scene.GetNumberOfNodes() == count
    assert not workdir.exists(), "temporary files are removed"


def test_engine_failure_is_reported_not_swallowed(scene, sample, tmp_path):
    ct = volume_node_from_image(scene, sample[0], "ct")
    count = scene.GetNumberOfNodes()
    run = EngineRun(scene, ct, "attack", "fgsm", settings=EngineSettings(model=str(tmp_path / "missing.pt"), device="cpu"))
    with pytest.raises(engine_process.EngineError, match="missing.pt"):
        run.run()
    assert scene.GetNumberOfNodes() == count


def test_results_that_fail_to_load_leave_no_half_result(scene, sample, monkeypatch):
    ct = volume_node_from_image(scene, sample[0], "ct")
    count = scene.GetNumberOfNodes()
    run = EngineRun(scene, ct)

    def half_way():
        volume_node_from_image(scene, sample[0], "half a result")
        raise ValueError("broken results")

    monkeypatch.setattr(run, "_load_into_scene", half_way)
    with pytest.raises(ValueError, match="broken results"):
        run._load()
    assert scene.GetNumberOfNodes() == count


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped by its dead parent's reaper) counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").split(")")[-1].split()[0]
        return state != "Z"
    except OSError:
        return False


# --- offscreen rendering -------------------------------------------------------------------------


def _warm_pixels(rgb: np.ndarray) -> int:
    """Pixels clearly red/orange (organ colours), not grey CT and not the bluish 3D background."""
    r, g, b = (rgb[..., c].astype(int) for c in range(3))
    return int(((r > b + 40) & (r > g + 15)).sum())


def test_offscreen_slice_and_3d_views_show_segments_and_overlay(scene, sample, tmp_path):
    ct_image, labels = sample
    ct = volume_node_from_image(scene, ct_image, "ct")
    display.show_ct(ct)
    truth = segmentation_from_labels(scene, labels, "truth", BTCV_LABELS, ct)
    display.style_segmentation(truth)
    delta = np.zeros(sitk.GetArrayViewFromImage(ct_image).shape, np.float32)
    delta[:, :, : delta.shape[2] // 2] = -10.0  # patient's right half darker (blue), left brighter (red)
    delta[:, :, delta.shape[2] // 2:] = 10.0
    perturbation_image = sitk.GetImageFromArray(delta)
    perturbation_image.CopyInformation(ct_image)
    perturbation = volume_node_from_image(scene, perturbation_image, "perturbation")
    display.show_perturbation(perturbation)
    focus = views.focus_point(labels, labels)

    with OffscreenViews(scene) as offscreen:
        red = offscreen.slice_view("Red", "Axial", (256, 256))
        overlay = offscreen.slice_view("Overlay", "Axial", (256, 256))
        threed = offscreen.threed_view("1", (256, 256))
        red.composite.SetBackgroundVolumeID(ct.GetID())
        overlay.composite.SetBackgroundVolumeID(ct.GetID())
        overlay.composite.SetForegroundVolumeID(perturbation.GetID())
        overlay.composite.SetForegroundOpacity(0.5)
        for view in (red, overlay):
            view.fit()
        views.jump_slices(scene, focus)
        threed.fit()
        slice_rgb, overlay_rgb, threed_rgb = red.pixels(), overlay.pixels(), threed.pixels()
        red.save_png(tmp_path / "red.png")
        truth.GetDisplayNode().SetVisibility(False)
        hidden_slice, hidden_3d = red.pixels(), threed.pixels()

    assert (tmp_path / "red.png").stat().st_size > 1000
    # Outlines are drawn at full opacity in each segment's own colour.
    for organ in ("liver", "spleen"):
        exact = np.all(np.abs(slice_rgb.astype(int) - RGB[organ]) <= 3, axis=-1).sum()
        assert exact > 20, f"{organ}'s colour is missing from the slice view"
    assert _warm_pixels(slice_rgb) > 10 * max(_warm_pixels(hidden_slice), 1)
    assert _warm_pixels(threed_rgb) > 1000 and _warm_pixels(hidden_3d) < 50, "3D surfaces in organ colours"
    # Perturbation overlay: +10 HU where i >= half, i.e. the patient's right (the sample's i axis
    # runs right-wards), which an axial view shows on the left; -10 HU on the patient's left.
    r, b = overlay_rgb[..., 0].astype(int), overlay_rgb[..., 2].astype(int)
    body = overlay_rgb.sum(axis=-1) > 60
    screen_left, screen_right = body.copy(), body.copy()
    screen_left[:, 128:], screen_right[:, :128] = False, False
    assert ((r - b) > 20)[screen_left].mean() > 0.8, "positive = red, on the patient's right"
    assert ((b - r) > 20)[screen_right].mean() > 0.8, "negative = blue, on the patient's left"


def test_console_keywords_reach_the_engine_as_request_texts(scene, sample, tmp_path):
    """Issue 9's bug: logic.attack(volume, renormalize="slice") (any registered parameter).
    The command EngineRun builds is parsed by the real CLI into the attack it asked for."""
    from FreqAdvSegmentLib.cli import attack_requests, build_parser

    ct = volume_node_from_image(scene, sample[0], "ct")
    run = EngineRun(scene, ct, "attack", "vafa:public-code", {"renormalize": None, "q_max": 30, "steps": 2},
                    settings=EngineSettings(device="cpu", work_root=tmp_path))
    run.workdir = tmp_path
    command = run._command()
    cli_args = command[command.index("attack"):]
    assert cli_args[cli_args.index("--method") + 1] == "vafa:public-code,q_max=30.0,steps=2,renormalize=none"
    (request,) = attack_requests(build_parser().parse_args(cli_args))
    kwargs = request.kwargs()
    assert (kwargs["renormalize"], kwargs["q_max"], kwargs["q_init"], kwargs["steps"]) == (None, 30.0, 30.0, 2)
    several = EngineRun(scene, ct, "attack", attacks=["vafa,renormalize=slice", "pgd:eps8", "pgd"],
                        settings=EngineSettings(device="cpu", work_root=tmp_path))
    several.workdir = tmp_path
    command = several._command()
    requests = attack_requests(build_parser().parse_args(command[command.index("attack"):]))
    assert [r.label for r in requests] == ["vafa", "pgd-eps8", "pgd"]
    assert requests[0].kwargs()["renormalize"] == "slice" and requests[1].kwargs()["eps"] == pytest.approx(8 / 255)
    with pytest.raises(ValueError, match="takes no parameter"):
        EngineRun(scene, ct, "attack", "pgd", {"q_max": 3}).requests()


def test_comparison_layout_creates_its_views_and_the_saved_one_is_built_in():
    """Slicer's layout logic builds every view the comparison layout names (as the desktop's
    layout manager does), and the built-in layout a saved scene uses shows exactly our slice
    views, so a Slicer without the extension opens it on the configured views."""
    import re

    scene = new_scene()
    layout_logic = slicer.vtkMRMLLayoutLogic()
    layout_logic.SetMRMLScene(scene)
    node = layout_logic.GetLayoutNode()
    assert node.IsLayoutDescription(views.SAVED_LAYOUT_ID) and not node.IsLayoutDescription(views.LAYOUT_ID)
    builtin = set(re.findall(r'class="vtkMRMLSliceNode" singletontag="([^"]+)"', node.GetLayoutDescription(views.SAVED_LAYOUT_ID)))
    assert builtin == set(views.SLICE_VIEWS), "three over three = our six slice views"
    views.register_layout(node, select=True)
    assert node.GetViewArrangement() == views.LAYOUT_ID
    for name in views.SLICE_VIEWS:
        slice_node = scene.GetNodeByID(views.slice_node_id(name))
        assert slice_node is not None, name
        assert slice_node.GetViewGroup() == 0, "all slice views in one group: they link"
    for name in views.THREED_VIEWS:
        assert scene.GetNodeByID(views.view_node_id(name)) is not None, name
    assert views._plot_view(scene) is not None
    layout_logic.SetMRMLScene(None)


# --- the scene the desktop starts with (issue 23) ------------------------------------------------


@pytest.fixture
def desktop_scene(scene):
    """The scene as the Slicer desktop has it before any module runs: its layout logic made the
    standard views (Red axial, Green coronal, Yellow sagittal, 3D view 1), and the user once chose
    the 3x3 layout (Red+ axial, Green+ coronal, Yellow+ sagittal), then went back."""
    from FreqAdvSegmentLib.mrml.render import ensure_slice_presets

    ensure_slice_presets(scene)
    logic = slicer.vtkMRMLLayoutLogic()
    logic.SetMRMLScene(scene)
    layout = logic.GetLayoutNode()
    layout.SetViewArrangement(2)  # SlicerLayoutConventionalView: the desktop's start
    layout.SetViewArrangement(views.SAVED_LAYOUT_ID)  # 3x3
    layout.SetViewArrangement(2)
    orientations = {n: scene.GetNodeByID(views.slice_node_id(n)).GetOrientation() for n in views.SLICE_VIEWS}
    assert orientations == {"Red": "Axial", "Green": "Coronal", "Yellow": "Sagittal",
                            "Red+": "Axial", "Green+": "Coronal", "Yellow+": "Sagittal"}, "the desktop's views"
    yield scene, logic
    logic.SetMRMLScene(None)


def test_comparison_views_on_the_desktops_startup_scene_are_all_axial_fitted_labelled(engine_run, desktop_scene, sample):
    """Issue 23 item 1: Green and Yellow existed (coronal, sagittal) before the comparison
    layout; every CT view must still show the axial plane, fitted to the CT, labelled."""
    scene, logic = desktop_scene
    ct = volume_node_from_image(scene, sample[0], "ct")
    results = load_results(scene, engine_run["folder"], ct)
    views.register_layout(logic.GetLayoutNode(), select=True)  # what showResults does on the desktop
    assert all(scene.GetNodeByID(views.slice_node_id(n)).GetOrientation() == "Axial" for n in views.SLICE_VIEWS), \
        "the layout itself orients the views it shows (action=relayout)"
    scene.GetNodeByID(views.slice_node_id("Green")).SetOrientation("Sagittal")  # a user turned it
    widgets = _slice_widget_logics(scene)
    views.show_results(scene, results)
    extent = _extent_ras(ct)
    labels = {}
    for name in views.SLICE_VIEWS:
        node = scene.GetNodeByID(views.slice_node_id(name))
        assert node.GetOrientation() == "Axial", f"{name} shows {node.GetOrientation()}"
        fov = node.GetFieldOfView()
        assert extent[0] <= fov[0] < 1.5 * max(extent[:2]) and fov[1] >= extent[1], f"{name}: {fov} vs {extent}"
        labels[name] = node.GetLayoutLabel()
    assert labels == {"Red": "clean", "Red+": "truth", "Green": "fgsm", "Green+": "fgsm HU", "Yellow": "gn", "Yellow+": "gn HU"}
    for ct_view, node in ((views.A_SLICE, results.attacks["fgsm"].adversarial_volume),
                          (views.B_SLICE, results.attacks["gn"].adversarial_volume)):
        composite = next(c for c in views._composites(scene) if c.GetLayoutName() == ct_view)
        assert composite.GetBackgroundVolumeID() == node.GetID()


def _slice_widget_logics(scene) -> list:
    """What the desktop's slice widgets do for each slice node shown: a slice logic, which makes
    the view's composite node (the layout logic makes only the slice nodes)."""
    logics = []
    for name in views.SLICE_VIEWS:
        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLScene(scene)
        logic.SetSliceNode(scene.GetNodeByID(views.slice_node_id(name)))
        assert logic.GetSliceCompositeNode() is not None
        logics.append(logic)
    return logics


@pytest.mark.parametrize("orientation", ["Axial", "Coronal", "Sagittal"])
def test_fit_slice_fits_the_box_in_the_views_own_plane(scene, orientation):
    """fit_slice projects the box on the slice's axes: a coronal view shows R-L by S-I."""
    from FreqAdvSegmentLib.mrml.render import ensure_slice_presets

    ensure_slice_presets(scene)
    slice_logic = slicer.vtkMRMLSliceLogic()
    slice_logic.SetMRMLScene(scene)
    node = slice_logic.AddSliceNode("Red")
    node.SetOrientation(orientation)
    node.SetDimensions(400, 400, 1)
    lo, hi = np.array([-100.0, -50.0, -300.0]), np.array([100.0, 50.0, 100.0])  # 200 x 100 x 400 mm
    views.fit_slice(node, lo, hi)
    in_plane = {"Axial": (200, 100), "Coronal": (200, 400), "Sagittal": (100, 400)}[orientation]
    fov = node.GetFieldOfView()
    assert fov[0] >= in_plane[0] and fov[1] >= in_plane[1], (orientation, fov)
    assert max(fov[:2]) <= 1.06 * max(in_plane), "not zoomed out further than the box needs"
    centre = np.array([node.GetSliceToRAS().GetElement(r, 3) for r in range(3)])
    np.testing.assert_allclose(centre, (lo + hi) / 2, atol=1e-6)
    slice_logic.SetMRMLScene(None)


def test_remembered_outputs_are_found_after_the_scene_is_saved_and_reopened(engine_run, scene, sample, tmp_path):
    """Issue 23 item 2: save to .mrb, clear, read back; the next run refills the remembered
    nodes instead of making new ones."""
    from FreqAdvSegmentLib.mrml.outputs import remember_outputs, remembered_outputs

    ct = volume_node_from_image(scene, sample[0], "ct")
    parameter_node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "FreqAdvSegment")
    first = load_results(scene, engine_run["folder"], ct)
    remember_outputs(parameter_node, first)
    names = {role: node.GetName() for role, node in first.node_roles().items()}
    path = save_scene(scene, tmp_path / "saved.mrb")
    scene.Clear(1)
    assert scene.GetFirstNodeByName("ct") is None
    load_scene(path, scene)
    parameter_node = scene.GetFirstNodeByName("FreqAdvSegment")
    reuse = remembered_outputs(parameter_node)
    assert {role: node.GetName() for role, node in reuse.items()} == names
    count = scene.GetNumberOfNodes()
    second = load_results(scene, engine_run["folder"], scene.GetFirstNodeByName("ct"), reuse=reuse)
    assert scene.GetNumberOfNodes() == count, "refilled, no new nodes"
    assert {role: node.GetID() for role, node in second.node_roles().items()} == {r: n.GetID() for r, n in reuse.items()}


def test_scene_saved_with_the_old_colon_roles_is_migrated(engine_run, scene, sample, tmp_path):
    """A scene saved before the fix reads its references back broken (role "FreqAdvSegment.output",
    no node); the outputs are found again from the nodes' role attributes (the newest run's)."""
    from FreqAdvSegmentLib.mrml.outputs import OLD_ROLE_PREFIX, remembered_outputs

    ct = volume_node_from_image(scene, sample[0], "ct")
    parameter_node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "FreqAdvSegment")
    load_results(scene, engine_run["folder"], ct)  # an older run's nodes ("new outputs" was pressed)
    latest = load_results(scene, engine_run["folder"], ct)
    for role, node in latest.node_roles().items():  # what the module wrote before
        parameter_node.SetNodeReferenceID(OLD_ROLE_PREFIX + role, node.GetID())
    ids = {role: node.GetID() for role, node in latest.node_roles().items()}
    path = save_scene(scene, tmp_path / "old.mrb")
    reopened = load_scene(path)
    old_node = reopened.GetFirstNodeByName("FreqAdvSegment")
    roles: list[str] = []
    old_node.GetNodeReferenceRoles(roles)
    assert "FreqAdvSegment.output" in roles, "the old roles do read back broken"
    assert {role: node.GetID() for role, node in remembered_outputs(old_node).items()} == ids
