"""Helpers shared by the provider tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from satellite.providers.base import ProviderError


async def pieces(*texts: str) -> AsyncIterator[str]:
    for text in texts:
        yield text


async def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    """Whether ``condition`` comes true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def failure(request: Awaitable[object]) -> tuple[ProviderError, float]:
    """The ProviderError that awaiting ``request`` raises, and the seconds it took to."""
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await request
    return caught.value, time.monotonic() - started
