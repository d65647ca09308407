"""report.json metrics -> a table node (per organ, clean vs each attack) and a bar chart.

The numbers are the engine's own (report.json, written by FreqAdvSegmentLib.evaluation.report); nothing is
recomputed here. Without ground truth the reference is the clean prediction, so "clean" is 1.0
Dice and 0 mm HD95 by definition; the table's ``reference`` attribute says which it is.
"""

from __future__ import annotations

import math
from typing import Any

import vtk

from ..evaluation.results import ReportMetrics, SegmentationMetrics

MEAN_ROW = "mean (organs)"
REFERENCE_ATTRIBUTE = "FreqAdvSegment.reference"


def metrics_rows(report: dict[str, Any]) -> tuple[list[str], dict[str, list[float]]]:
    """Organ names (present in the reference, then the mean row) and the columns' values."""
    metrics = ReportMetrics.from_json(report)
    if not metrics.attacks:
        raise ValueError("report.json has no attacks: nothing to tabulate")
    first = next(iter(metrics.attacks.values())).metrics.vs_reference.per_class
    organs = [name for name, m in first.items() if m.ref_voxels > 0]
    clean = metrics.clean
    columns: dict[str, list[float]] = {"reference voxels": [float(first[o].ref_voxels) for o in organs] + [math.nan]}
    columns["Dice clean"] = _values(clean, organs, "dice", 1.0)
    columns["HD95 clean (mm)"] = _values(clean, organs, "hd95_mm", 0.0)
    for name, attack in metrics.attacks.items():
        dice = _values(attack.metrics.vs_reference, organs, "dice", None)
        columns[f"Dice {name}"] = dice
        columns[f"HD95 {name} (mm)"] = _values(attack.metrics.vs_reference, organs, "hd95_mm", None)
        columns[f"Dice drop {name}"] = [c - d for c, d in zip(columns["Dice clean"], dice)]
    return organs + [MEAN_ROW], columns


def metrics_table(scene: Any, report: dict[str, Any], name: str = "FreqAdvSegment metrics", node: Any = None) -> Any:
    """A vtkMRMLTableNode: one row per organ (plus the mean), columns as :func:`metrics_rows`."""
    rows, columns = metrics_rows(report)
    node = node or scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    node.RemoveAllColumns()
    organ = vtk.vtkStringArray()
    organ.SetName("organ")
    for row in rows:
        organ.InsertNextValue(row)
    node.AddColumn(organ)
    for title, values in columns.items():
        array = vtk.vtkDoubleArray()
        array.SetName(title)
        for value in values:
            array.InsertNextValue(math.nan if value is None else float(value))
        node.AddColumn(array)
        if "(mm)" in title:
            node.SetColumnUnitLabel(title, "mm")
    reference = report.get("reference", "clean prediction")
    node.SetAttribute(REFERENCE_ATTRIBUTE, reference)
    node.SetColumnDescription("Dice clean", f"Dice of the clean prediction vs the {reference}")
    node.SetUseColumnTitleAsColumnHeader(True)
    return node


def dice_chart(scene: Any, table: Any, name: str = "FreqAdvSegment Dice", node: Any = None) -> Any:
    """A bar chart of every "Dice ..." column of ``table`` (clean and each attack), one bar
    group per organ; the x axis is titled with the organ of every bar position (Slicer's bar
    charts number their positions), hovering a bar shows its organ. ``node``: a chart of an
    earlier run to refill (its old series are removed)."""
    chart = node or scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    for index in reversed(range(chart.GetNumberOfPlotSeriesNodes())):
        old = chart.GetNthPlotSeriesNode(index)
        chart.RemoveNthPlotSeriesNodeID(index)
        if old is not None:
            scene.RemoveNode(old)
    reference = table.GetAttribute(REFERENCE_ATTRIBUTE) or "reference"
    chart.SetTitle(f"Dice vs {reference}: clean and under attack")
    chart.SetXAxisTitle(organ_axis_title(table))
    chart.SetYAxisTitle("Dice")
    chart.SetYAxisRangeAuto(False)
    chart.SetYAxisRange(0.0, 1.0)
    for index, column in enumerate(_dice_columns(table)):
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name}: {column}")
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetPlotType(series.PlotTypeBar)
        series.SetYColumnName(column)
        series.SetLabelColumnName("organ")
        series.SetColor(*_SERIES_COLORS[index % len(_SERIES_COLORS)])
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart


def organ_axis_title(table: Any) -> str:
    """"organ: 0 spleen, 1 right kidney, ..." - the organ at every bar position (rows from 0)."""
    organs = [table.GetCellText(row, 0) for row in range(table.GetNumberOfRows())]
    return "organ: " + ", ".join(f"{index} {organ}" for index, organ in enumerate(organs))


_SERIES_COLORS = ((0.35, 0.35, 0.35), (0.84, 0.15, 0.16), (0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17))


def _dice_columns(table: Any) -> list[str]:
    names = [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]
    return [n for n in names if n.startswith("Dice ") and not n.startswith("Dice drop")]


def _values(metrics: SegmentationMetrics | None, organs: list[str], key: str, default: float | None) -> list[float]:
    """Per-organ values (``key``: "dice" or "hd95_mm") plus the mean; ``default`` when there are
    no metrics (no ground truth). Missing values are NaN."""
    if metrics is None:
        return [default] * (len(organs) + 1)
    values = [getattr(metrics.per_class[o], key) for o in organs]
    return values + [metrics.mean_dice if key == "dice" else metrics.mean_hd95_mm]
