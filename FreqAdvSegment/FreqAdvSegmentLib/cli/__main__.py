"""``python -m FreqAdvSegmentLib.cli ...`` = ``freqadv ...`` (what torchrun and the Slicer module run)."""

import sys

from . import main

sys.exit(main())
