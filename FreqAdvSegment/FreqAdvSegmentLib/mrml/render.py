"""Offscreen slice and 3D views of a scene, rendered to images: tests, screenshots, thumbnails.

Slicer's desktop draws views through Qt (qMRMLSliceWidget, qMRMLThreeDView); this module builds
the same VTK pieces without Qt: a slice logic (which blends background, foreground and label
layers) or a view logic, the displayable managers that draw segmentations, and an offscreen
render window (EGL/OSMesa). Views are named like the desktop's ("Red", "1", ...), so the display
functions in :mod:`.views` configure both the same way.

    with OffscreenViews(scene) as offscreen:
        red = offscreen.slice_view("Red", "Axial")
        red.composite.SetBackgroundVolumeID(ct.GetID())   # or views.show_results(scene, results)
        red.fit()
        red.save_png("red.png")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import vtk
from vtkmodules.util import numpy_support

_SLICE_MANAGERS = ("vtkMRMLSegmentationsDisplayableManager2D",)
_THREED_MANAGERS = ("vtkMRMLCameraDisplayableManager", "vtkMRMLViewDisplayableManager", "vtkMRMLSegmentationsDisplayableManager3D")


class _View:
    """An offscreen render window with a displayable-manager group (base of both view kinds)."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.window = vtk.vtkRenderWindow()
        self.window.SetOffScreenRendering(1)
        self.window.SetSize(*size)
        # Displayable managers need an interactor even offscreen (they observe it).
        self.interactor = vtk.vtkRenderWindowInteractor()
        self.interactor.SetRenderWindow(self.window)
        self.title = vtk.vtkTextActor()
        self.title.GetTextProperty().SetFontSize(max(12, size[1] // 28))
        self.title.SetPosition(8, size[1] - 8 - max(12, size[1] // 28))

    def set_title(self, text: str) -> None:
        self.title.SetInput(text)

    def render(self) -> None:
        self.window.Render()

    def pixels(self) -> np.ndarray:
        """The rendered image as uint8 RGB [rows, columns, 3], top row first."""
        self.render()
        grab = vtk.vtkWindowToImageFilter()
        grab.SetInput(self.window)
        grab.SetInputBufferTypeToRGB()
        grab.ReadFrontBufferOff()
        grab.Update()
        image = grab.GetOutput()
        width, height, _ = image.GetDimensions()
        rgb = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, 3)
        return np.ascontiguousarray(rgb[::-1])  # VTK's first row is the bottom one

    def save_png(self, path: str | Path) -> Path:
        return save_png(self.pixels(), path)

    def close(self) -> None:
        self.window.Finalize()


class SliceView(_View):
    """One slice view: background/foreground volumes blended by a vtkMRMLSliceLogic, with
    segmentations drawn on top by their displayable manager."""

    def __init__(self, views: OffscreenViews, name: str, orientation: str, size: tuple[int, int]) -> None:
        super().__init__(size)
        # Two layers, as in Slicer: the slice image below, displayable managers above (with
        # alpha), so segment fills blend with the image instead of replacing it.
        self.window.SetNumberOfLayers(2)
        self.window.SetAlphaBitPlanes(1)
        self.image_renderer, self.renderer = vtk.vtkRenderer(), vtk.vtkRenderer()
        self.image_renderer.SetLayer(0)
        self.renderer.SetLayer(1)
        self.renderer.GetActiveCamera().ParallelProjectionOn()
        self.window.AddRenderer(self.image_renderer)
        self.window.AddRenderer(self.renderer)
        self.interactor.Initialize()
        self.managers = views.manager_group("slice", self.renderer)
        self.logic = views.slice_logic()
        self.node = self.logic.AddSliceNode(name)
        self.node.SetOrientation(orientation)
        self.managers.SetMRMLDisplayableNode(self.node)
        self.mapper = vtk.vtkImageMapper()
        self.mapper.SetColorWindow(255)
        self.mapper.SetColorLevel(127.5)
        image_actor = vtk.vtkActor2D()
        image_actor.SetMapper(self.mapper)
        self.image_renderer.AddViewProp(image_actor)
        self.renderer.AddViewProp(self.title)
        self.size = size

    @property
    def composite(self) -> Any:
        """The slice composite node (background, foreground, opacity, linking)."""
        return self.logic.GetSliceCompositeNode()

    def fit(self) -> None:
        """Fit the background volume in the view, centred on its middle slice."""
        self.logic.ResizeSliceNode(*self.size)
        self.logic.FitSliceToBackground()
        self.logic.SnapSliceOffsetToIJK()

    def render(self) -> None:
        self.logic.ResizeSliceNode(*self.size)
        self.mapper.SetInputConnection(self.logic.GetImageDataConnection())
        super().render()


class ThreeDView(_View):
    """One 3D view: segmentations as closed surfaces (and whatever else the managers draw)."""

    def __init__(self, views: OffscreenViews, name: str, size: tuple[int, int]) -> None:
        super().__init__(size)
        self.renderer = vtk.vtkRenderer()
        self.window.AddRenderer(self.renderer)
        self.interactor.Initialize()
        self.managers = views.manager_group("3d", self.renderer)
        self.logic = views.view_logic()
        self.node = self.logic.AddViewNode(name)
        self.managers.SetMRMLDisplayableNode(self.node)
        self.renderer.AddViewProp(self.title)

    def fit(self, azimuth: float = 0.0, elevation: float = 0.0) -> None:
        """Frame everything shown, looking from the front (anterior), optionally rotated."""
        self.renderer.ResetCamera()
        camera = self.renderer.GetActiveCamera()
        camera.Azimuth(azimuth)
        camera.Elevation(elevation)
        camera.OrthogonalizeViewUp()
        self.renderer.ResetCamera()
        camera.Zoom(1.3)


class OffscreenViews:
    """The application-level pieces views need (application logic, factories), for one scene."""

    def __init__(self, scene: Any) -> None:
        import slicer

        self.scene = scene
        self.app = slicer.vtkSlicerApplicationLogic()
        self.app.SetMRMLScene(scene)
        self.app.SetSliceLogics(vtk.vtkCollection())
        self.app.SetViewLogics(vtk.vtkCollection())
        slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance().SetMRMLApplicationLogic(self.app)
        slicer.vtkMRMLThreeDViewDisplayableManagerFactory.GetInstance().SetMRMLApplicationLogic(self.app)
        ensure_slice_presets(scene)
        if scene.GetFirstNodeByClass("vtkMRMLCrosshairNode") is None:
            crosshair = slicer.vtkMRMLCrosshairNode()
            crosshair.SetCrosshairName("default")
            scene.AddNode(crosshair)
        self.views: list[_View] = []

    def slice_view(self, name: str, orientation: str = "Axial", size: tuple[int, int] = (400, 400)) -> SliceView:
        view = SliceView(self, name, orientation, size)
        self.views.append(view)
        return view

    def threed_view(self, name: str = "1", size: tuple[int, int] = (400, 400)) -> ThreeDView:
        view = ThreeDView(self, name, size)
        self.views.append(view)
        return view

    def manager_group(self, kind: str, renderer: vtk.vtkRenderer) -> Any:
        import slicer

        if kind == "slice":
            factory, names = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance(), _SLICE_MANAGERS
        else:
            factory, names = slicer.vtkMRMLThreeDViewDisplayableManagerFactory.GetInstance(), _THREED_MANAGERS
        for name in names:
            if not factory.IsDisplayableManagerRegistered(name):
                factory.RegisterDisplayableManager(name)
        group = slicer.vtkMRMLDisplayableManagerGroup()
        group.Initialize(factory, renderer)
        return group

    def slice_logic(self) -> Any:
        import slicer

        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLApplicationLogic(self.app)
        self.app.GetSliceLogics().AddItem(logic)
        logic.SetMRMLScene(self.scene)
        return logic

    def view_logic(self) -> Any:
        import slicer

        logic = slicer.vtkMRMLViewLogic()
        logic.SetMRMLApplicationLogic(self.app)
        self.app.GetViewLogics().AddItem(logic)
        logic.SetMRMLScene(self.scene)
        return logic

    def close(self) -> None:
        for view in self.views:
            view.close()
        self.views.clear()

    def __enter__(self) -> OffscreenViews:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def save_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an RGB uint8 array [rows, columns, 3] (top row first) as a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, columns = rgb.shape[:2]
    image = vtk.vtkImageData()
    image.SetDimensions(columns, rows, 1)
    flat = np.ascontiguousarray(rgb[::-1]).reshape(-1, rgb.shape[2])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(flat, deep=True))
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.Write()
    return path


def ensure_slice_presets(scene: Any) -> None:
    """Axial/Sagittal/Coronal orientation presets on the scene's default slice node (the desktop
    adds them at startup; new slice nodes need them to know what "Axial" means)."""
    import slicer

    default = scene.GetDefaultNodeByClass("vtkMRMLSliceNode")
    if default is None or default.GetNumberOfSliceOrientationPresets() == 0:
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)
