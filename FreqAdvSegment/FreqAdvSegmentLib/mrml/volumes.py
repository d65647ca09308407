"""Volume nodes <-> SimpleITK images (the engine's currency), geometry exact.

    node = volume_node_from_image(scene, sitk_image, "CT")      # new scalar volume node
    image = image_from_volume_node(node)                        # back, same voxels and grid
    x, ctx = model_input(node, loaded)                          # the model's tensor [1,1,H,W,D]

Voxel order: a vtkImageData's scalars run x fastest, exactly like the C-order array
``sitk.GetArrayFromImage`` returns ([k, j, i]), so voxels are copied without any transpose.
Geometry goes through :mod:`.geometry` (ITK LPS <-> Slicer RAS).

Parent transforms: nodes are read and written in their own (local) coordinates. Outputs are put
under the input's parent transform by the callers, so they overlay it wherever it is moved.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk
import vtk
from vtkmodules.util import numpy_support

from ..files.images import check_scalar_3d
from .geometry import ItkGeometry, SlicerGeometry, itk_to_slicer, slicer_to_itk

SCALAR_VOLUME = "vtkMRMLScalarVolumeNode"
LABELMAP_VOLUME = "vtkMRMLLabelMapVolumeNode"


def volume_node_from_image(scene: Any, image: sitk.Image, name: str, labelmap: bool = False, node: Any = None) -> Any:
    """A volume node holding ``image`` (a new one, or ``node`` updated in place).

    Args:
        scene: the vtkMRMLScene to add a new node to.
        image: a 3D scalar SimpleITK image (any voxel type VTK has).
        name: node name (only used for a new node).
        labelmap: create a vtkMRMLLabelMapVolumeNode instead of a scalar volume.
        node: an existing volume node to overwrite instead of creating one.
    """
    if node is None:
        node = scene.AddNewNodeByClass(LABELMAP_VOLUME if labelmap else SCALAR_VOLUME, name)
    update_volume_node(node, image)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def update_volume_node(node: Any, image: sitk.Image) -> None:
    """Replace ``node``'s voxels and geometry with ``image``'s."""
    check_scalar_3d(image, "a volume node's image")
    geometry = itk_to_slicer(ItkGeometry(image.GetOrigin(), image.GetSpacing(), image.GetDirection()))
    # The vtkImageData keeps identity origin/spacing: in MRML the node carries the geometry.
    node.SetAndObserveImageData(_image_data(sitk.GetArrayViewFromImage(image)))
    node.SetOrigin(*geometry.origin_ras)
    node.SetSpacing(*geometry.spacing)
    node.SetIJKToRASDirectionMatrix(_vtk_matrix(geometry.directions_ras))


def image_from_volume_node(node: Any) -> sitk.Image:
    """A SimpleITK image with ``node``'s voxels (copied), spacing, origin and direction (LPS)."""
    data = node.GetImageData() if node is not None else None
    if data is None or data.GetPointData().GetScalars() is None:
        name = node.GetName() if node is not None else None
        raise ValueError(f"volume node {name!r} has no voxels; load or compute the volume first")
    if data.GetNumberOfScalarComponents() != 1:
        raise ValueError(f"volume node {node.GetName()!r} has {data.GetNumberOfScalarComponents()} components per voxel; a scalar volume is needed")
    i, j, k = data.GetDimensions()
    voxels = numpy_support.vtk_to_numpy(data.GetPointData().GetScalars()).reshape(k, j, i)
    image = sitk.GetImageFromArray(np.array(voxels, copy=True))
    geometry = slicer_to_itk(_slicer_geometry(node))
    image.SetOrigin(geometry.origin_lps)
    image.SetSpacing(geometry.spacing)
    image.SetDirection(geometry.direction_lps)
    return image


def model_input(node: Any, loaded: Any) -> tuple[Any, Any]:
    """The model's input tensor [1, 1, H, W, D] and GridContext for a volume node, preprocessed as
    ``loaded`` (a LoadedModel) asks: the engine's own ``prepare``, so results map back exactly."""
    from ..job.pipeline import preprocessing_for  # torch only when actually asked for a tensor
    from ..job.preprocess import prepare

    return prepare(image_from_volume_node(node), preprocessing_for(loaded))


def _slicer_geometry(node: Any) -> SlicerGeometry:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(matrix)
    directions = np.array([[matrix.GetElement(r, c) for c in range(3)] for r in range(3)])
    return SlicerGeometry(tuple(node.GetOrigin()), tuple(node.GetSpacing()), directions)


def _image_data(voxels_kji: np.ndarray) -> vtk.vtkImageData:
    image = vtk.vtkImageData()
    k, j, i = voxels_kji.shape
    image.SetDimensions(i, j, k)
    flat = np.ascontiguousarray(voxels_kji).reshape(-1)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(flat, deep=True))
    return image


def _vtk_matrix(directions: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            matrix.SetElement(r, c, float(directions[r, c]))
    return matrix
