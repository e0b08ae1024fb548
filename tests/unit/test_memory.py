"""The daemon's periodic return of freed memory."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref

import pytest

from satellite.memory import return_freed_memory

pytestmark = pytest.mark.timeout(30)


class _Request:
    """Stands for an ended request that points back at itself (handler <-> request)."""

    def __init__(self) -> None:
        self.buffer = bytearray(64 * 1024)
        self.me = self


async def test_what_ended_requests_left_in_cycles_is_freed_without_waiting_for_the_collector():
    gc.disable()  # only the scheduled collection may free it
    try:
        ended = _Request()
        alive = weakref.ref(ended)
        del ended
        await asyncio.sleep(0.05)
        assert alive() is not None  # a cycle: freed by a collection, not when dropped
        task = asyncio.create_task(return_freed_memory(every_s=0.01))
        try:
            for _ in range(100):
                if alive() is None:
                    break
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert alive() is None
    finally:
        gc.enable()
