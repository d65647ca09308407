"""``python -m FreqAdvSegmentLib.web [--port N ...]``: the web viewer without the main CLI (an entry point)."""

import sys

from ..cli.serve import main

sys.exit(main())
