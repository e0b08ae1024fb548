"""Entry point for ``python -m satellite``."""

from .cli import entry

entry()
