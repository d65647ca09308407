"""The web viewer (``freqadv serve``): the engine and the MRML bridge in a browser, on trame-slicer.

Modules, one job each:
    cli        ``freqadv serve`` options and command (imports nothing heavy until it runs)
    app        the trame server, the trame-slicer scene and views, the page's actions
    layout     the page itself: controls, comparison views, metrics table and bar chart
    viewer     what the views show: the input, then the bridge's results, fitted and linked
    jobs       one engine job per session: start, progress, cancel, results or error
    params     the attack form: fields per method, their limits, the engine parameters
    metrics    report.json -> rows of the per-organ Dice/HD95 table and bar chart
    uploads    uploaded volumes, checked for size and type before they are parsed
    downloads  files of the job's own output folder, and nothing else
    routes     HTTP upload/download routes and the host/origin guard

Needs ``trame-slicer[standalone]==2.0.0`` (which pins slicer-core); the rest of the package
does not, and nothing here is imported by it except ``cli``.
"""
