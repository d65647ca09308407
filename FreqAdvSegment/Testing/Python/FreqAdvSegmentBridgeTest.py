"""The MRML bridge inside Slicer: geometry, segments and display on the application's scene.

Registered with slicer_add_python_unittest (Testing/Python/CMakeLists.txt); quick, no model run.
"""

import unittest

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from FreqAdvSegmentLib.organs import BTCV_LABELS
from FreqAdvSegmentLib.mrml.display import show_perturbation
from FreqAdvSegmentLib.mrml.segmentations import labels_from_segmentation, segmentation_from_labels
from FreqAdvSegmentLib.mrml.terminology import terminology_entry
from FreqAdvSegmentLib.mrml.volumes import image_from_volume_node, volume_node_from_image


def obliqueImage() -> sitk.Image:
    image = sitk.GetImageFromArray(np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8))
    image.SetSpacing((0.7, 1.1, 2.5))
    image.SetOrigin((-12.0, 30.5, 7.25))
    c, s = np.cos(0.4), np.sin(0.4)
    image.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    return image


class FreqAdvSegmentBridgeTest(unittest.TestCase):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def test_volume_round_trip(self):
        image = obliqueImage()
        node = volume_node_from_image(slicer.mrmlScene, image, "oblique")
        back = image_from_volume_node(node)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
        np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-12)
        np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-9)
        # Slicer's own IJK-to-RAS of voxel (1, 2, 3) is ITK's LPS point with x and y negated.
        matrix = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrix)
        ras = np.array(matrix.MultiplyPoint((1, 2, 3, 1))[:3])
        lps = np.array(image.TransformIndexToPhysicalPoint((1, 2, 3)))
        np.testing.assert_allclose(ras, lps * [-1, -1, 1], atol=1e-9)

    def test_segmentation_from_labels(self):
        labels = sitk.Image(8, 7, 6, sitk.sitkUInt8)
        labels[2:5, 2:5, 1:4] = 6  # liver
        labels[5:7, 1:3, 3:5] = 1  # spleen
        volume = volume_node_from_image(slicer.mrmlScene, sitk.Cast(labels, sitk.sitkInt16), "volume")
        node = segmentation_from_labels(slicer.mrmlScene, labels, "segmentation", BTCV_LABELS, volume)
        segmentation = node.GetSegmentation()
        self.assertEqual(sorted(segmentation.GetSegmentIDs()), ["liver", "spleen"])
        self.assertEqual(segmentation.GetSegment("liver").GetTerminology(), terminology_entry("liver"))
        back = labels_from_segmentation(node, volume, BTCV_LABELS)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(labels))

    def test_perturbation_display(self):
        image = sitk.GetImageFromArray(np.linspace(-5, 3, 6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8))
        node = volume_node_from_image(slicer.mrmlScene, image, "perturbation")
        limit = show_perturbation(node)
        display = node.GetDisplayNode()
        self.assertEqual(display.GetLevel(), 0.0)
        self.assertAlmostEqual(display.GetWindow(), 2 * limit)
