"""Image geometry between ITK (SimpleITK, the engine) and Slicer's MRML volume nodes.

ITK describes a voxel grid in LPS physical space (+x to the patient's Left, +y Posterior,
+z Superior): ``origin`` (centre of voxel 0,0,0), ``spacing`` and a row-major 3x3 ``direction``
whose COLUMN c is the unit vector of index axis c. A Slicer volume node describes the same grid
in RAS space (+x Right, +y Anterior, +z Superior): ``SetOrigin`` (RAS), ``SetSpacing`` and
``SetIJKToRASDirections`` (columns = unit vectors of the i, j, k axes in RAS).

RAS = F @ LPS with F = diag(-1, -1, 1), so origin_ras = F @ origin_lps and
directions_ras = F @ direction_lps; spacing is the same number in both. F is its own inverse,
so the conversion back is the same product. No slicer import here: these are plain numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class SlicerGeometry:
    """A grid as a Slicer volume node stores it (RAS)."""

    origin_ras: tuple[float, float, float]
    spacing: tuple[float, float, float]
    directions_ras: np.ndarray  # 3x3, columns = i, j, k unit vectors in RAS

    def ijk_to_ras(self) -> np.ndarray:
        """The 4x4 IJK-to-RAS matrix (what ``GetIJKToRASMatrix`` returns)."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.directions_ras * np.asarray(self.spacing)[None, :]
        matrix[:3, 3] = self.origin_ras
        return matrix


@dataclass(frozen=True)
class ItkGeometry:
    """A grid as SimpleITK stores it (LPS)."""

    origin_lps: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction_lps: tuple[float, ...]  # row-major 3x3, as sitk.Image.GetDirection()


def itk_to_slicer(geometry: ItkGeometry) -> SlicerGeometry:
    """ITK (LPS) grid -> Slicer (RAS) grid."""
    direction = np.asarray(geometry.direction_lps, dtype=float).reshape(3, 3)
    origin = LPS_TO_RAS @ np.asarray(geometry.origin_lps, dtype=float)
    return SlicerGeometry(_triple(origin), _triple(geometry.spacing), LPS_TO_RAS @ direction)


def slicer_to_itk(geometry: SlicerGeometry) -> ItkGeometry:
    """Slicer (RAS) grid -> ITK (LPS) grid."""
    direction = LPS_TO_RAS @ np.asarray(geometry.directions_ras, dtype=float).reshape(3, 3)
    origin = LPS_TO_RAS @ np.asarray(geometry.origin_ras, dtype=float)
    return ItkGeometry(_triple(origin), _triple(geometry.spacing), tuple(float(v) for v in direction.ravel()))


def _triple(values: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return (a, b, c)
