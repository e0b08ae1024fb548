"""The floor under a worker's round trip on this machine: a small message to another process
and back, with none of the requests' own work; then the worker's own code on top of it.

Each round trip follows a random 5-20 ms of idle, as requests do. Four ways:
- ``blocking``: both processes blocked in ``recv`` (the kernel's two wake-ups alone);
- ``loops, reader tasks``: an asyncio loop here and a uvloop loop in the peer (as in the
  daemon and a worker), each end reading with a stream and a task;
- ``loops, read callbacks``: the same loops, each end answering from its protocol's read
  callback (what ``worker_ipc.MessageStream`` does);
- ``worker, silent TTS``: the worker's own code (``worker.serve``) with a TTS provider that
  answers at once, asked as the daemon asks (a ``synth`` request with its text, the answers
  through a ``supervisor.Channel``); the round trip as the status line counts it: to the
  first audio, less the provider's own time. What the worker design costs with no SDK in it.
Prints p50 / p95 / p99, the CPU seconds per round trip of both processes and their peak RSS.
Run: .venv/bin/python -m bench.ipc_floor [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import uvloop

from bench.proc import cpu_seconds, status_mb
from bench.speech_endpoint import percentile
from satellite.audio.pcm import SPEECH_BYTES_PER_MS, SPEECH_FORMAT
from satellite.providers import worker
from satellite.providers.base import SynthesisOptions, TtsProvider
from satellite.providers.supervisor import Channel
from satellite.providers.worker_ipc import MessageStream, WorkerSpec

IDLE_S = (0.005, 0.02)
MESSAGE = b"x" * 64


class _Echo(asyncio.Protocol):
    """Answers each read from the read callback."""

    def __init__(self, closed: asyncio.Future[None]) -> None:
        self._closed = closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._transport.write(data)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed.set_result(None)


class _Answer(asyncio.Protocol):
    """Hands each read to whoever waits for it, from the read callback."""

    def __init__(self) -> None:
        self.waiter: asyncio.Future[bytes] | None = None

    def data_received(self, data: bytes) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)


def _blocking_peer(sock: socket.socket) -> None:
    while data := sock.recv(4096):
        sock.sendall(data)


async def _stream_peer(sock: socket.socket) -> None:
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    while data := await reader.read(4096):
        writer.write(data)
        await writer.drain()


async def _callback_peer(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    closed = loop.create_future()
    await loop.create_unix_connection(lambda: _Echo(closed), sock=sock)
    await closed


def _blocking(sock: socket.socket, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        time.sleep(random.uniform(*IDLE_S))
        sent = time.perf_counter()
        sock.sendall(MESSAGE)
        sock.recv(4096)
        times.append((time.perf_counter() - sent) * 1000)
    return times


async def _through_stream(sock: socket.socket, runs: int) -> list[float]:
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    times = []
    for _ in range(runs):
        await asyncio.sleep(random.uniform(*IDLE_S))
        sent = time.perf_counter()
        writer.write(MESSAGE)
        await reader.read(4096)
        times.append((time.perf_counter() - sent) * 1000)
    writer.close()
    return times


async def _through_callback(sock: socket.socket, runs: int) -> list[float]:
    loop = asyncio.get_running_loop()
    transport, answer = await loop.create_unix_connection(_Answer, sock=sock)
    times = []
    for _ in range(runs):
        await asyncio.sleep(random.uniform(*IDLE_S))
        answer.waiter = loop.create_future()
        sent = time.perf_counter()
        transport.write(MESSAGE)
        await answer.waiter
        times.append((time.perf_counter() - sent) * 1000)
    transport.close()
    return times


class _Silence(TtsProvider):
    """Speaks every text as 20 ms of silence, at once."""

    name = model = "silence"
    audio_format = SPEECH_FORMAT
    voices = ()

    async def synthesize(
        self, text: AsyncIterator[str], options: SynthesisOptions
    ) -> AsyncIterator[bytes]:
        yield bytes(20 * SPEECH_BYTES_PER_MS)


async def _worker_peer(sock: socket.socket) -> None:
    spec = WorkerSpec("silence", None, None, {"tts": None}, "WARNING", "text")
    await worker.serve(await MessageStream.open(sock), spec, {"tts": _Silence()})


async def _through_worker(sock: socket.socket, runs: int) -> list[float]:
    stream = await MessageStream.open(sock)
    await stream.next()  # ready
    channels: dict[int, Channel] = {}
    stream.handle(lambda message: channels[message[1]].deliver(message), lambda: None)
    times = []
    for rid in range(1, runs + 1):
        await asyncio.sleep(random.uniform(*IDLE_S))
        channels[rid] = channel = Channel(None)
        sent = time.monotonic()
        stream.send(("synth", rid, None, False, None, "hello"))
        await stream.drain()
        _, _, _, provider_seconds = await channel.next(1.0)
        times.append((time.monotonic() - sent - provider_seconds) * 1000)
        await channel.next(1.0)  # done
        del channels[rid]
    stream.send(("close", 0))
    await stream.drain()
    stream.close()
    return times


Way = tuple[str, Callable[[socket.socket], None], Callable[[socket.socket, int], list[float]]]


def _on_loops(
    peer: Callable[[socket.socket], Awaitable[None]],
    here: Callable[[socket.socket, int], Awaitable[list[float]]],
) -> tuple[Callable[[socket.socket], None], Callable[[socket.socket, int], list[float]]]:
    return (lambda sock: uvloop.run(peer(sock))), (lambda sock, runs: asyncio.run(here(sock, runs)))


WAYS: list[Way] = [
    ("blocking", _blocking_peer, _blocking),
    ("loops, reader tasks", *_on_loops(_stream_peer, _through_stream)),
    ("loops, read callbacks", *_on_loops(_callback_peer, _through_callback)),
    ("worker, silent TTS", *_on_loops(_worker_peer, _through_worker)),
]


def measure(way: Way, runs: int) -> str:
    name, serve, ask = way
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        ours.close()
        try:
            serve(theirs)
        finally:
            os._exit(0)
    theirs.close()
    cpu_before = sum(cpu_seconds(os.getpid()))
    times = ask(ours, runs)  # closes our end: the peer ends
    ours.close()
    _, _, peer = os.wait4(pid, 0)
    cpu = sum(cpu_seconds(os.getpid())) - cpu_before + peer.ru_utime + peer.ru_stime
    peak = status_mb(os.getpid(), "VmHWM") + peer.ru_maxrss / 1024
    p50, p95, p99 = (percentile(times, q) for q in (0.5, 0.95, 0.99))
    return (
        f"{name:22} p50 {p50:.3f}  p95 {p95:.3f}  p99 {p99:.3f} ms"
        f" | CPU {cpu / runs * 1000:.3f} ms per round trip, the idle waits' timers included"
        f" | peak RSS of both {peak:.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="round trips per way")
    args = parser.parse_args()
    print(f"a round trip to another process and back ({os.cpu_count()} CPUs, {args.runs} each)")
    for way in WAYS:
        print(measure(way, args.runs))


if __name__ == "__main__":
    main()
