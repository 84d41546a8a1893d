"""``python -m sensorlib.cli``: the ``sensorlib`` command."""

import sys

from sensorlib.cli import main

sys.exit(main())
