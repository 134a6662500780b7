"""``python -m adamnb``: the ``adamnb`` command (see :mod:`adamnb.cli`)."""

import sys

from adamnb.cli import main

if __name__ == "__main__":
    sys.exit(main())
