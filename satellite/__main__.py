"""Entry point for ``python -m satellite`` and the ``voice-satellite`` command."""

import sys
from typing import NoReturn

from . import openssl


def main() -> NoReturn:
    if sys.argv[1:2] == ["run"]:
        openssl.leave_out(openssl.HASHES)  # before the config's imports reach hashlib
    from .cli import entry

    entry()


if __name__ == "__main__":
    main()
