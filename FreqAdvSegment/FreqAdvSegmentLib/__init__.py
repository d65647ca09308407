"""FreqAdvSegmentLib: the engine behind the FreqAdvSegment 3D Slicer extension.

Frequency-domain (VAFA) and voxel-domain adversarial attacks on volumetric segmentation
models, and robust training (VAFT), after Hanif et al., MICCAI 2023. This package never
imports ``slicer`` or ``qt``: it runs on plain Python (command line, servers, CI).
"""

__version__ = "0.1.0"
