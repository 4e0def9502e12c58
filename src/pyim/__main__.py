"""``python -m pyim``: the same as the ``pyim`` command."""

import sys

from .cli import main

sys.exit(main())
