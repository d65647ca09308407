"""``python -m FreqAdvSegmentLib.training ...`` = ``freqadv train ...`` (an entry point, like ``freqadv``)."""

import sys

from ..cli.train import main

sys.exit(main())
