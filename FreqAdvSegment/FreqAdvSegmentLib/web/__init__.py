"""The web viewer (``freqadv serve``): the engine and the MRML bridge in a browser, on trame-slicer.

Modules, one job each:
    app        the trame server, the trame-slicer scene and views, the page's actions
    layout     the page itself: controls, comparison views, metrics table and bar chart
    viewer     what the views show: the input, then the bridge's results, fitted and linked
    changes    "where it broke": a red label map of the voxels whose label the attack changed
    hu_readout the HU readout under the mouse
    jobs       one engine job per session: start, progress, cancel, results or error
    engine     the engine run of a job: the bridge's EngineRun with the attack requests, plus --scene
    params     the attack form, derived from the attack registry: fields, presets, requests
    metrics    report.json -> per-attack budget figures, the per-organ table and bar chart
    uploads    uploaded volumes, checked for size and type before they are parsed
    dicom_zip  a DICOM series uploaded as a zip, checked member by member, then unpacked
    upload_error  UploadError, the rejection both of them raise (with its HTTP status)
    labels_check  an uploaded label map must fit the CT on show
    downloads  files of the job's own output folder, and nothing else
    routes     HTTP upload/download routes and the host/origin guard

Needs ``trame-slicer[standalone]==2.0.0`` (which pins slicer-core); the rest of the package
does not, and nothing here is imported by it except ``cli/serve.py`` (the ``freqadv serve`` command).
"""
