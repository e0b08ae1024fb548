"""Entry point for ``python -m satellite``."""

import sys

from .cli import main

sys.exit(main())
