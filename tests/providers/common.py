"""Helpers shared by the provider tests."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from satellite.errors import ProviderError
from satellite.providers.base import AsrProvider, SynthesisOptions, TtsProvider


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


async def transcribe(
    provider: AsrProvider,
    audio: bytes,
    language: str | None = None,
    partials: list[str] | None = None,
) -> str:
    """One utterance in 100 ms pieces; the session is cancelled if anything fails."""

    async def pieces() -> AsyncIterator[bytes]:
        for offset in range(0, len(audio), 3200):
            yield audio[offset : offset + 3200]

    on_partial = partials.append if partials is not None else None
    result, _ = await provider.recognize(language, pieces(), on_partial)
    return result.text


async def speak(provider: TtsProvider, *texts: str, voice: str | None = None) -> bytes:
    """All the audio of ``texts`` streamed as separate pieces."""
    options = SynthesisOptions(voice=voice)
    return b"".join([chunk async for chunk in provider.synthesize(pieces(*texts), options)])


def fake_process_ready_line(module: str, *options: str) -> str:
    """Start ``python -m module --port 0 ...`` as a user would, return its READY line, and
    check that SIGTERM ends it with status 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", "0", *options],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        process.terminate()
        assert process.wait(timeout=10) == 0
        return line
    finally:
        process.kill()
