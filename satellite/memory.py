"""Giving freed memory back to the system, so a daemon that runs for months stays its size.

Ended connections, requests and replaced providers leave memory the C library keeps for
reuse, scattered between live allocations; over hours of requests and reloads that kept
memory grows. Every ``TRIM_EVERY_S`` the cycles those objects left are collected and the
free pages returned (glibc's ``malloc_trim``; elsewhere only the collection runs).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
from collections.abc import Callable

_LOGGER = logging.getLogger(__name__)

TRIM_EVERY_S = 60.0


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc
        return None


async def return_freed_memory(every_s: float = TRIM_EVERY_S) -> None:
    """Collect cycles and return free memory to the system every ``every_s``, forever."""
    trim = _malloc_trim()
    while True:
        await asyncio.sleep(every_s)
        started = time.process_time()
        gc.collect()
        if trim is not None:
            trim(0)
        _LOGGER.debug("memory returned in %.1f ms of CPU", (time.process_time() - started) * 1000)
