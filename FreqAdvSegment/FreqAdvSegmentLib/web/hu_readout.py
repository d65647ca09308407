"""The HU readout: the voxel under the mouse in a slice view, in the clean and adversarial CT.

    ras = slice_point(slice_node, x, y)            # display pixel -> patient RAS (mm)
    value = voxel_value(volume_node, ras)          # None outside the volume
"""

from __future__ import annotations

from typing import Any


def slice_point(slice_node: Any, x: float, y: float) -> tuple[float, float, float]:
    """The RAS point (mm) shown at display pixel (x, y) of a slice view (origin bottom left)."""
    ras = slice_node.GetXYToRAS().MultiplyPoint((float(x), float(y), 0.0, 1.0))
    return ras[0], ras[1], ras[2]


def voxel_value(volume: Any, ras: tuple[float, float, float]) -> float | None:
    """The value of ``volume``'s voxel nearest to ``ras``; None outside its grid."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume.GetRASToIJKMatrix(matrix)
    ijk = [round(c) for c in matrix.MultiplyPoint((*ras, 1.0))[:3]]
    data = volume.GetImageData()
    if data is None:
        return None
    dims = data.GetDimensions()
    if any(not 0 <= c < n for c, n in zip(ijk, dims)):
        return None
    return float(data.GetScalarComponentAsDouble(*ijk, 0))


def readout(ras: tuple[float, float, float], values: dict[str, float | None]) -> str:
    """'R 12.3 A -4.5 S 343.3 mm: clean 42 HU, fgsm 45 HU' (LPS-free: RAS, as Slicer shows)."""
    r, a, s = ras
    where = f"{'R' if r >= 0 else 'L'} {abs(r):.1f}, {'A' if a >= 0 else 'P'} {abs(a):.1f}, S {s:.1f} mm"
    shown = [f"{name} {value:.0f} HU" for name, value in values.items() if value is not None]
    return f"{where}: {', '.join(shown)}" if shown else f"{where}: outside the volume"
