"""``python -m fastmix.cli``: the ``fastmix`` command."""

import sys

from fastmix.cli import main

sys.exit(main())
