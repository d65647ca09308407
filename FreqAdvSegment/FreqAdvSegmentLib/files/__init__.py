"""Reading and writing files: images (NIfTI, NRRD, DICOM) checked strictly, output folders replaced atomically."""
