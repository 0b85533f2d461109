"""``python -m hashhop``: the same as the ``hashhop`` command."""

import sys

try:  # a Ctrl-C while the command line is imported: one line and status 130, as anywhere in main()
    from hashhop.cli import main
except KeyboardInterrupt:
    sys.stderr.write("hashhop: interrupted\n")
    sys.exit(130)

sys.exit(main())
