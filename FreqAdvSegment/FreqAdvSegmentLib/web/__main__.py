"""``python -m FreqAdvSegmentLib.web [--port N ...]``: the web viewer without the main CLI."""

import sys

from .cli import main

sys.exit(main())
