"""``python -m moa_predict.cli`` = ``moa``."""

import sys

from .main import main

sys.exit(main())
