"""``python -m hashhop``: the same as the ``hashhop`` command."""

import sys

from hashhop.cli import main

sys.exit(main())
