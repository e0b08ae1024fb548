"""What one client may cost a server: admission, event size, idleness, waiting data.

A real wyoming server on 127.0.0.1 runs a small handler behind ``Connections``; the clients
are raw sockets or wyoming's own client.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from ipaddress import ip_network
from pathlib import Path

import pytest
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event, async_read_event, write_event
from wyoming.info import Info
from wyoming.ping import Ping, Pong
from wyoming.satellite import RunSatellite
from wyoming.server import AsyncServer
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from satellite.assist.satellite import Satellite
from satellite.audio.pcm import AudioFormat
from satellite.audio.speaker import Speaker
from satellite.buffers import BoundedQueue, BufferFull
from satellite.config import LimitsConfig, SatelliteConfig, SpeakerConfig
from satellite.connections import Connections, allowed
from satellite.providers.base import SynthesisOptions, TtsProvider, Voice
from satellite.speech.requests import SpeechEndpoint, SpeechService
from satellite.speech.server import SpeechHandler
from satellite.wyoming_handler import BadRequest, GuardedHandler, audio_format_of
from tests.wyoming_client import connect, read

LIMIT = 65536


class Talker(GuardedHandler):
    """Answers ``ping`` with ``pong``; ``talk {count, every}`` answers with that many pongs,
    ``every`` seconds apart, as a long TTS answer streams while the client is silent."""

    async def dispatch(self, event: Event) -> None:
        if Ping.is_type(event.type):
            await self.write_event(Pong().event())
        elif event.type == "talk":
            for _ in range(event.data["count"]):
                await asyncio.sleep(event.data["every"])
                await self.write_event(Pong().event())


Serve = Callable[[LimitsConfig], Awaitable[tuple[Connections, int]]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[AsyncServer] = []

    async def start(limits: LimitsConfig) -> tuple[Connections, int]:
        connections = Connections("test", limits)
        port = free_port()
        server = AsyncServer.from_uri(f"tcp://127.0.0.1:{port}")
        await server.start(connections.factory(Talker))
        servers.append(server)
        return connections, port

    yield start
    for server in servers:
        await server.stop()


async def raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def answer(reader: asyncio.StreamReader, timeout: float = 5.0) -> Event | None:
    """The server's next event, None once it has closed the connection."""
    with contextlib.suppress(ConnectionResetError):
        return await asyncio.wait_for(async_read_event(reader), timeout)
    return None


async def received(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    """Every byte the server sends until it closes (or resets) the connection."""
    data = b""
    async with asyncio.timeout(timeout):
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(65536):
                data += chunk
    return data


async def pong(port: int) -> bool:
    """Whether a new client is admitted and answered."""
    reader, writer = await raw(port)
    try:
        writer.write(b'{"type": "ping"}\n')
        event = await answer(reader)
        return event is not None and event.type == "pong"
    finally:
        writer.close()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


# --- admission -------------------------------------------------------------------------


async def test_handlers_get_the_limits_and_are_counted_until_they_leave(serve: Serve):
    limits = LimitsConfig(max_connections=4, idle_timeout_s=30)
    connections, port = await serve(limits)
    first, second = await connect(port), await connect(port)
    for client in (first, second):
        await client.write_event(Ping().event())
        assert (await read(client)).type == "pong"
    assert len(connections.handlers) == 2
    assert all(handler.limits is limits for handler in connections.handlers)
    await first.disconnect()
    await until(lambda: len(connections.handlers) == 1)
    await second.disconnect()
    await until(lambda: not connections.handlers)


async def test_new_limits_apply_to_new_connections(serve: Serve):
    connections, port = await serve(LimitsConfig(max_connections=3))
    staying = await connect(port)
    await staying.write_event(Ping().event())
    assert (await read(staying)).type == "pong"
    connections.limits = LimitsConfig(max_connections=1)
    reader, _ = await raw(port)
    refused = await answer(reader)
    assert refused is not None and refused.data["code"] == "busy"
    assert await answer(reader) is None
    await staying.write_event(Ping().event())  # the admitted one is served as before
    assert (await read(staying)).type == "pong"
    await staying.disconnect()
    await until(lambda: not connections.handlers)
    assert await pong(port)
    assert connections.limits.max_connections == 1


async def test_after_close_doors_new_clients_hear_shutting_down(serve: Serve):
    connections, port = await serve(LimitsConfig())
    staying = await connect(port)
    await staying.write_event(Ping().event())
    assert (await read(staying)).type == "pong"
    connections.close_doors()
    reader, _ = await raw(port)
    refused = await answer(reader)
    assert refused is not None and refused.type == "error"
    assert refused.data["code"] == "shutting-down"
    assert "shutting down" in refused.data["text"]
    assert await answer(reader) is None
    await staying.write_event(Ping().event())
    assert (await read(staying)).type == "pong"
    await staying.disconnect()


async def test_refused_peers_are_logged_once_a_minute(serve: Serve, caplog):
    caplog.set_level(logging.INFO, "satellite.connections")
    _, port = await serve(LimitsConfig(allowed_networks=(ip_network("192.0.2.0/24"),)))
    for _ in range(5):
        reader, writer = await raw(port)
        writer.write(b'{"type": "ping"}\n')
        assert await received(reader) == b""  # closed, nothing sent
        writer.close()
    lines = [r.getMessage() for r in caplog.records if "allowed_networks" in r.getMessage()]
    assert len(lines) == 1 and "127.0.0.1" in lines[0], lines


@pytest.mark.parametrize(
    ("peer", "networks", "expected"),
    [
        (("127.0.0.1", 5000), [], True),
        (("127.0.0.1", 5000), ["127.0.0.0/8"], True),
        (("10.1.2.3", 5000), ["192.168.1.0/24", "10.0.0.0/8"], True),
        (("10.1.2.3", 5000), ["192.168.1.0/24"], False),
        (("::ffff:192.168.1.20", 5000, 0, 0), ["192.168.1.0/24"], True),  # dual-stack socket
        (("::1", 5000, 0, 0), ["127.0.0.0/8"], False),
        (("::1", 5000, 0, 0), ["::1/128"], True),
        (("fe80::1%eth0", 5000, 0, 2), ["fe80::/10"], True),
        ("", ["192.168.1.0/24"], True),  # a unix socket's peer
    ],
)
def test_allow_list(peer, networks: list[str], expected: bool):
    assert allowed(peer, [ip_network(n) for n in networks]) is expected


# --- events and idleness -----------------------------------------------------------------


def header(**fields: object) -> bytes:
    return json.dumps({"type": "audio-chunk", **fields}).encode() + b"\n"


@pytest.mark.parametrize(
    "fields",
    [
        {"payload_length": 2**31},
        {"data_length": 1e12},
        {"data_length": LIMIT // 2, "payload_length": LIMIT // 2},  # with the header: over
        {"data_length": float("inf")},
    ],
)
async def test_an_event_over_max_event_bytes_is_refused_unread(serve: Serve, fields):
    _, port = await serve(LimitsConfig(max_event_bytes=LIMIT))
    reader, writer = await raw(port)
    line = header(**fields)
    writer.write(line)
    error = await answer(reader)
    assert error is not None and error.data["code"] == "too-large", error
    text = error.data["text"]
    assert f"header {len(line)}" in text and f"limits.max_event_bytes ({LIMIT})" in text
    if "payload_length" in fields:
        assert f"payload {fields['payload_length']}" in text
    assert await answer(reader) is None
    writer.close()
    assert await pong(port)


async def test_an_event_at_max_event_bytes_is_served(serve: Serve):
    _, port = await serve(LimitsConfig(max_event_bytes=LIMIT))
    reader, writer = await raw(port)
    size = LIMIT - len(header(payload_length=LIMIT))
    writer.write(header(payload_length=size) + bytes(size) + b'{"type": "ping"}\n')
    event = await answer(reader)
    assert event is not None and event.type == "pong", event
    writer.close()


@pytest.mark.parametrize(
    ("line", "closes"),
    [
        (b'{"type": "ping", "data": ' + b"[" * 5000 + b"]" * 5000 + b"}\n", True),
        (b'{"type": "transcribe", "data": 5}\n', False),
        (b'{"type": ["transcript"]}\n', False),
    ],
    ids=["nested-too-deep", "data-not-an-object", "type-not-a-string"],
)
async def test_unusable_events_get_bad_request(serve: Serve, line: bytes, closes: bool):
    """Broken framing closes the connection; a well-framed unusable event does not."""
    _, port = await serve(LimitsConfig())
    reader, writer = await raw(port)
    writer.write(line + b'{"type": "ping"}\n')
    error = await answer(reader)
    assert error is not None and error.data["code"] == "bad-request", error
    after = await answer(reader)
    assert (after is None) if closes else (after is not None and after.type == "pong"), after
    writer.close()


def test_an_infinite_audio_rate_is_a_bad_request():
    with pytest.raises(BadRequest, match="integer rate"):
        audio_format_of({"rate": float("inf"), "width": 2, "channels": 1})


async def test_answers_keep_a_connection_open_and_silence_closes_it(serve: Serve, caplog):
    caplog.set_level(logging.INFO, "satellite.wyoming_handler")
    connections, port = await serve(LimitsConfig(idle_timeout_s=0.5))
    client = await connect(port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.write_event(Event(type="talk", data={"count": 6, "every": 0.25}))
    for _ in range(6):  # 1.5 s of answers, the client silent: not idle
        assert (await read(client, timeout=2)).type == "pong"
    answered = loop.time()
    assert answered - started >= 1.4
    assert await asyncio.wait_for(client.read_event(), timeout=3) is None
    assert 0.4 <= loop.time() - answered <= 2.0
    assert "no event for 0.5 s" in caplog.text
    await until(lambda: not connections.handlers)


# --- waiting data ------------------------------------------------------------------------


async def test_a_queue_over_its_limit_takes_nothing_more_and_still_ends():
    queue: BoundedQueue[str] = BoundedQueue(10)
    queue.put("12345")
    queue.put("678")
    assert await queue.get() == "12345"
    queue.put("abcdefg")  # 3 + 7 bytes: at the limit
    with pytest.raises(BufferFull, match="over 10 bytes waiting"):
        queue.put("é")  # two bytes in UTF-8
    queue.put("ignored")
    assert await queue.get() == "678"  # what waited still comes, the rest does not
    queue.drop()
    queue.end()
    queue.drop()  # the end stays
    assert await queue.get() is None


class SilentMic:
    description = "silent mic"

    def __init__(self) -> None:
        self._closed = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        await self._closed.wait()
        return
        yield b""

    async def close(self) -> None:
        self._closed.set()


async def test_audio_over_max_buffer_bytes_is_cut_and_played_is_still_sent(tmp_path: Path, caplog):
    """A speaker that does not keep up: HA's answer is cut at the limit, HA hears
    ``played``, and the next sound plays whole."""
    sink = tmp_path / "speaker.raw"
    # The speaker takes nothing for 0.5 s: what HA sends waits in the queue.
    speaker = SpeakerConfig(backend="command", command=f"sleep 0.5; cat >> {sink}")
    config = SatelliteConfig(enabled=True, speaker=speaker, mute_tail_ms=0)
    satellite = Satellite(config, "Test", SilentMic(), Speaker(speaker))  # type: ignore[arg-type]
    connections = Connections("satellite", LimitsConfig(max_buffer_bytes=LIMIT))
    port = free_port()
    server = AsyncServer.from_uri(f"tcp://127.0.0.1:{port}")
    await server.start(connections.factory(satellite.handler))
    try:
        client = await connect(port)
        await client.write_event(RunSatellite().event())
        fmt = {"rate": 48000, "width": 2, "channels": 2}  # 192 kB a second
        sent = bytes(range(256)) * 125  # 32000 bytes
        await client.write_event(AudioStart(**fmt).event())
        for _ in range(10):
            await client.write_event(AudioChunk(**fmt, audio=sent).event())
        await client.write_event(AudioStop().event())
        assert (await read(client, timeout=10)).type == "played"
        cut = sink.stat().st_size  # what the queue held when it was full, in whole chunks
        assert len(sent) <= cut <= LIMIT + len(sent) and cut % len(sent) == 0
        assert "the rest of this sound is dropped" in caplog.text

        await client.write_event(AudioStart(**fmt).event())
        await client.write_event(AudioChunk(**fmt, audio=sent).event())
        await client.write_event(AudioStop().event())
        assert (await read(client, timeout=10)).type == "played"
        assert sink.stat().st_size == cut + len(sent)
        await client.disconnect()
    finally:
        await server.stop()
        await satellite.close()


class SlowFirstTts(TtsProvider):
    """Takes no text at all in its first request (a provider still connecting), then speaks
    100 bytes per character."""

    name = "slow"
    audio_format = AudioFormat(16000, 2, 1)
    model = "slow-model"
    voices = (Voice("slow-voice", ("en",)),)

    def __init__(self) -> None:
        self.requests = 0

    async def synthesize(
        self, text: AsyncIterator[str], options: SynthesisOptions
    ) -> AsyncIterator[bytes]:
        self.requests += 1
        if self.requests == 1:
            await asyncio.Event().wait()  # until cancelled
        async for piece in text:
            yield bytes(100 * len(piece))


async def test_streamed_text_over_max_buffer_bytes_ends_that_synthesis_only():
    endpoint = SpeechEndpoint(SpeechService(asr=None, tts=SlowFirstTts(), info=Info().event()))
    connections = Connections("speech", LimitsConfig(max_buffer_bytes=LIMIT))
    port = free_port()
    server = AsyncServer.from_uri(f"tcp://127.0.0.1:{port}")
    await server.start(connections.factory(lambda r, w: SpeechHandler(r, w, endpoint=endpoint)))
    try:
        reader, writer = await raw(port)
        stream = io.BytesIO()  # the whole stream in one write: read before anything runs
        piece = "x" * 10_000
        for event in [
            SynthesizeStart().event(),
            *[SynthesizeChunk(text=piece).event() for _ in range(10)],
            SynthesizeStop().event(),
            Synthesize(text="Hello.").event(),
        ]:
            write_event(event, stream)
        writer.write(stream.getvalue())
        events = [await answer(reader) for _ in range(5)]
        assert [e.type if e else None for e in events] == [
            "error",
            "synthesize-stopped",  # HA stops waiting for the stream
            "audio-start",
            "audio-chunk",
            "audio-stop",
        ]
        assert events[0].data["code"] == "too-large"  # type: ignore[union-attr]
        assert f"over {LIMIT} bytes waiting" in events[0].data["text"]  # type: ignore[union-attr]
        assert events[3].payload == bytes(600)  # type: ignore[union-attr]
        writer.close()
    finally:
        await server.stop()
