"""What the fault tests share: starting daemons, timed reads, HA's TTS flow, log checks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from tests.e2e.daemon import TEST_KEYS, Daemon
from tests.wyoming_client import read

MARGIN_S = 3.0  # slack on every deadline: two shared, noisy cores
DESCRIBE_S = 1.0  # HA waits this long for ``info``


@contextlib.contextmanager
def running_daemon(workdir: Path, config: str) -> Iterator[Daemon]:
    """A daemon from ``config`` (LISTEN_URI is filled in), listening; stopped afterwards,
    cleanly, with a log free of tracebacks and keys."""
    daemon = Daemon(workdir, config)
    try:
        daemon.wait_listening()
        yield daemon
        assert daemon.process.poll() is None, f"the daemon died:\n{daemon.logs()}"
        assert daemon.stop() == 0, daemon.logs()
        check_log(daemon.logs())
    finally:
        daemon.stop()


def check_log(logs: str) -> None:
    """What a user reading the log must never see: a traceback or a key."""
    assert "Traceback" not in logs, logs[-6000:]
    for key in TEST_KEYS.values():
        assert key not in logs


async def next_event(client: AsyncTcpClient, types: set[str], timeout: float) -> Event:
    """The first event of one of ``types`` (or ``error``), skipping the others."""
    async with asyncio.timeout(timeout):
        while (event := await read(client, timeout)).type not in {*types, "error"}:
            pass
    return event


async def send_streaming_synthesis(client: AsyncTcpClient, pieces: list[str]) -> None:
    """HA 2025.7+: synthesize-start, the text in pieces, the full text again (for old
    servers: to be ignored), synthesize-stop."""
    await client.write_event(SynthesizeStart().event())
    for piece in pieces:
        await client.write_event(SynthesizeChunk(text=piece).event())
    await client.write_event(Synthesize(text="".join(pieces)).event())
    await client.write_event(SynthesizeStop().event())


async def read_synthesis(client: AsyncTcpClient, timeout: float) -> tuple[list[Event], float]:
    """Events of a streaming synthesis up to ``synthesize-stopped`` (which must come, even
    after an error), and the seconds until the first ``error`` (or the end)."""
    started = time.monotonic()
    events: list[Event] = []
    error_after = None
    async with asyncio.timeout(timeout):
        while True:
            events.append(await read(client, timeout))
            if events[-1].type == "error" and error_after is None:
                error_after = time.monotonic() - started
            if events[-1].type == "synthesize-stopped":
                break
    return events, error_after if error_after is not None else time.monotonic() - started
