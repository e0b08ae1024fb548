"""Leaving OpenSSL out of the daemon's own process, which needs none of it.

Two standard modules load OpenSSL when first imported: ``_hashlib``, hashlib's fast path
(pydantic imports hashlib), maps libcrypto: 3.5 MB of a satellite's memory; ``ssl``, which
asyncio imports, maps libssl and builds its tables: 1.3 MB more. Both are optional in
CPython: hashlib falls back to its built-in hashes, and asyncio runs without ``ssl``.

The daemon hashes nothing large, so ``run`` leaves ``_hashlib`` out from its start. It opens
no TLS connection either when the provider SDKs run in worker processes (``providers.
isolation: process``; the workers are started afresh, with all of Python, and Home Assistant
speaks plain Wyoming), so ``run`` then leaves ``ssl`` out too, before asyncio is imported.
"""

from __future__ import annotations

import sys

HASHES = "_hashlib"
TLS = "ssl"


def leave_out(module: str) -> None:
    """Make importing ``module`` fail for the rest of this process (the import system's
    "absent" mark); nothing changes when it is already imported."""
    if module not in sys.modules:
        sys.modules[module] = None  # type: ignore[assignment]
