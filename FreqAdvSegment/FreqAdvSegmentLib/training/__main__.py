"""``python -m FreqAdvSegmentLib.training ...`` = ``freqadv train ...``."""

import sys

from .cli import main

sys.exit(main())
