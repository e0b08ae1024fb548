"""What one client may cost the daemon, against the daemon process.

The speech endpoint's provider is the fake DashScope server behind a relay that holds every
new connection for a second, as a slow network would: audio and text a client sends in that
second wait in the daemon, and its limits apply to them. That daemon's allow-list holds the
loopback networks, so every client of it shows that a listed peer is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from wyoming.client import AsyncTcpClient
from wyoming.event import Event, async_read_event
from wyoming.info import Describe
from wyoming.ping import Ping
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from tests.e2e.daemon import Daemon
from tests.fakes.dashscope import FakeDashScope
from tests.wyoming_client import audio_of, connect, read, read_until, send_utterance

RELAY_DELAY_S = 1.0
MAX_CONNECTIONS = 3
MAX_BUFFER_BYTES = 65536


class SlowRelay:
    """Forwards each TCP connection on 127.0.0.1 to ``target`` once it has waited ``delay``
    seconds; one thread per connection, all daemon threads, closed by ``stop()``."""

    def __init__(self, target: int, delay: float) -> None:
        self._target = target
        self._delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._accepting = threading.Thread(target=self._accept, name="relay", daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with contextlib.ExitStack() as stack:
            stack.enter_context(client)
            if self._stopped.wait(self._delay):
                return
            upstream = stack.enter_context(socket.create_connection(("127.0.0.1", self._target)))
            peers = {client: upstream, upstream: client}
            selector = stack.enter_context(selectors.DefaultSelector())
            for side in peers:
                selector.register(side, selectors.EVENT_READ)
            while not self._stopped.is_set():
                for key, _ in selector.select(timeout=0.2):
                    try:
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            return
                        peers[key.fileobj].sendall(data)  # type: ignore[index]
                    except OSError:
                        return

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        self._accepting.join(2)


def limited_config(relay: SlowRelay) -> str:
    return f"""
limits:
  max_connections: {MAX_CONNECTIONS}
  max_buffer_bytes: {MAX_BUFFER_BYTES}
  allowed_networks: [127.0.0.0/8, "::1/128"]
speech:
  uri: LISTEN_URI
  asr: {{provider: dashscope, language: zh}}
  tts: {{provider: dashscope, voice: longxiaochun_v2}}
providers:
  dashscope:
    api_key: ${{DASHSCOPE_API_KEY}}
    websocket_url: ws://127.0.0.1:{relay.port}/api-ws/v1/inference
    warm_connections: 0
    timeouts: {{connect: 4, first_result: 4, total: 15}}
    tts: {{sample_rate: 22050}}
"""


def bare_config(limits: str) -> str:
    """A speech endpoint whose provider is never reached, with these ``limits:`` settings."""
    return f"""
limits: {limits}
speech:
  uri: LISTEN_URI
providers:
  dashscope:
    websocket_url: ws://127.0.0.1:9/api-ws/v1/inference
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDashScope]:
    with FakeDashScope() as server:
        yield server


@pytest.fixture(scope="module")
def daemon(fake: FakeDashScope, tmp_path_factory) -> Iterator[Daemon]:
    relay = SlowRelay(urlsplit(fake.url).port or 0, RELAY_DELAY_S)
    running = Daemon(tmp_path_factory.mktemp("limits"), limited_config(relay))
    try:
        running.wait_listening()
        yield running
        assert running.stop() == 0, running.logs()
    finally:
        running.stop()
        relay.stop()


@contextlib.contextmanager
def daemon_with(tmp_path: Path, limits: str) -> Iterator[Daemon]:
    running = Daemon(tmp_path, bare_config(limits))
    try:
        running.wait_listening()
        yield running
    finally:
        running.stop()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def open_raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def next_event(reader: asyncio.StreamReader, timeout: float = 10.0) -> Event | None:
    """The daemon's next event, None once it has closed (or reset) the connection."""
    with contextlib.suppress(ConnectionResetError):
        return await asyncio.wait_for(async_read_event(reader), timeout)
    return None


async def served(port: int) -> bool:
    """Whether a new client gets the daemon's info."""
    reader, writer = await open_raw(port)
    try:
        writer.write(b'{"type": "describe"}\n')
        event = await next_event(reader)
        return event is not None and event.type == "info"
    finally:
        writer.close()


async def wait_served(port: int, timeout: float = 5.0) -> None:
    """Until a new client is admitted: the connections of an earlier test have ended."""
    deadline = time.monotonic() + timeout
    while not await served(port):
        assert time.monotonic() < deadline, "no client admitted"
        await asyncio.sleep(0.1)


async def admitted(port: int, timeout: float = 5.0) -> AsyncTcpClient:
    """A client the daemon has admitted (it answered ``describe``), tried again while the
    connections of an earlier test are still counted."""
    deadline = time.monotonic() + timeout
    while True:
        client = await connect(port)
        await client.write_event(Describe().event())
        event = await read(client)
        if event.type == "info":
            return client
        await client.disconnect()
        assert event.data.get("code") == "busy" and time.monotonic() < deadline, event
        await asyncio.sleep(0.1)


def speech(seconds: float) -> bytes:
    return bytes((i * 7) % 251 for i in range(int(16000 * seconds) * 2))


# --- one daemon with small limits --------------------------------------------------------


async def test_one_client_too_many_is_told_busy_until_one_leaves(daemon: Daemon):
    clients = [await admitted(daemon.port) for _ in range(MAX_CONNECTIONS)]
    reader, _ = await open_raw(daemon.port)
    busy = await next_event(reader)
    assert busy is not None and busy.type == "error" and busy.data["code"] == "busy", busy
    assert f"{MAX_CONNECTIONS} connections" in busy.data["text"]
    assert await next_event(reader) is None
    assert "limits.max_connections" in daemon.logs()

    await clients.pop().disconnect()
    await wait_served(daemon.port)  # a place is free again
    for client in clients:  # the others were never disturbed
        await client.write_event(Describe().event())
        assert (await read(client)).type == "info"
        await client.disconnect()


async def test_an_event_announcing_2_gb_is_refused_unread(daemon: Daemon):
    await wait_served(daemon.port)
    before = rss_kib(daemon.process.pid)
    reader, writer = await open_raw(daemon.port)
    header = {"type": "audio-chunk", "data_length": 0, "payload_length": 2**31}
    writer.write(json.dumps(header).encode() + b"\n" + bytes(256 * 1024))
    error = await next_event(reader)
    assert error is not None and error.data["code"] == "too-large", error
    assert f"payload {2**31}" in error.data["text"]
    assert "limits.max_event_bytes (1048576)" in error.data["text"]
    assert await next_event(reader) is None
    writer.close()
    assert rss_kib(daemon.process.pid) - before < 32 * 1024
    await wait_served(daemon.port)
    assert "over limits.max_event_bytes" in daemon.logs()


async def test_a_megabyte_header_line_is_refused(daemon: Daemon):
    await wait_served(daemon.port)
    before = rss_kib(daemon.process.pid)
    reader, writer = await open_raw(daemon.port)
    writer.write(b"x" * 1024 * 1024)
    error = await next_event(reader)
    assert error is not None and error.data["code"] == "too-large", error
    assert "header line longer than 65536 bytes" in error.data["text"]
    assert await next_event(reader) is None
    writer.close()
    assert rss_kib(daemon.process.pid) - before < 32 * 1024
    await wait_served(daemon.port)


async def test_audio_piling_up_ahead_of_a_slow_provider_is_refused(
    daemon: Daemon, fake: FakeDashScope
):
    client = await admitted(daemon.port)
    tasks = len(fake.received_audio)
    # 8 s of audio at once, while the provider is still connecting.
    await send_utterance(client, speech(8), chunk_bytes=3200, language="zh")
    error = await read(client, timeout=10)
    assert error.type == "error" and error.data["code"] == "too-large", error.data
    assert f"over {MAX_BUFFER_BYTES} bytes waiting" in error.data["text"]

    # The next request on the same connection works.
    audio = speech(0.5)
    await send_utterance(client, audio, chunk_bytes=3200, language="zh")
    transcript = (await read_until(client, "transcript", timeout=15))[-1]
    assert transcript.type == "transcript", transcript.data
    assert transcript.data["text"] == "你好。打开客厅的灯。"
    assert audio in fake.received_audio[tasks:]
    await client.disconnect()


async def test_text_piling_up_ahead_of_a_slow_provider_is_refused(daemon: Daemon):
    client = await admitted(daemon.port)
    await client.write_event(SynthesizeStart().event())
    piece = "The kitchen light is on. " * 400  # 10 kB
    for _ in range(10):
        await client.write_event(SynthesizeChunk(text=piece).event())
    await client.write_event(Synthesize(text=piece * 10).event())
    await client.write_event(SynthesizeStop().event())
    events = await read_until(client, "synthesize-stopped", timeout=10)
    error = events[-1]
    assert error.type == "error" and error.data["code"] == "too-large", error.data
    assert f"over {MAX_BUFFER_BYTES} bytes waiting" in error.data["text"]
    assert (await read(client)).type == "synthesize-stopped"  # HA stops waiting

    await client.write_event(Synthesize(text="Hello.").event())
    events = await read_until(client, "audio-stop", timeout=15)
    assert events[-1].type == "audio-stop", events[-1]
    assert audio_of(events) == FakeDashScope.tts_audio_for("Hello.", 22050)
    await client.disconnect()


# --- a daemon per setting ------------------------------------------------------------------


async def test_a_silent_connection_is_closed_after_the_idle_timeout(tmp_path: Path):
    with daemon_with(tmp_path, "{idle_timeout_s: 1}") as running:
        pinging = await connect(running.port)
        silent = await connect(running.port)
        await silent.write_event(Describe().event())
        assert (await read(silent)).type == "info"
        described = time.monotonic()
        for _ in range(6):  # 3 s of pings half a second apart, as HA keeps a connection
            await pinging.write_event(Ping().event())
            await asyncio.sleep(0.5)
        assert await asyncio.wait_for(silent.read_event(), timeout=5) is None
        assert time.monotonic() - described < 3.5
        await pinging.write_event(Describe().event())
        assert (await read(pinging)).type == "info"
        await pinging.disconnect()
        assert "no event for 1 s (limits.idle_timeout_s)" in running.logs()


async def test_a_client_outside_the_allow_list_is_closed_unanswered(tmp_path: Path):
    with daemon_with(tmp_path, "{allowed_networks: [192.0.2.0/24]}") as running:
        reader, writer = await open_raw(running.port)
        writer.write(b'{"type": "describe"}\n')
        data = b""
        with contextlib.suppress(ConnectionResetError):
            async with asyncio.timeout(5):
                while chunk := await reader.read(65536):
                    data += chunk
        assert data == b""
        writer.close()
        assert "not in limits.allowed_networks" in running.logs()
