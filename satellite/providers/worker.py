"""A provider worker: one provider's SDK in a process of its own, serving the daemon's
requests over a socket.

Its launcher (``fork_server.py``) forks it, and the daemon supervises it (see
``supervisor.py``): a native crash or a leak in the SDK costs this process, never the
daemon. It builds the provider's ASR and/or TTS from the spec the daemon sends first,
answers ``ready`` with what they advertise, opens their warm connections, and serves any
number of concurrent requests until the daemon asks it to close or goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import uvloop

from .. import logs
from ..bridge import calls_still_running
from ..errors import ErrorCode, ProviderError
from .base import AsrProvider, EncodedAudio, SynthesisOptions, TtsProvider
from .text import WholeText
from .worker_ipc import Message, MessageStream, WorkerSpec

_LOGGER = logging.getLogger(__name__)

# Closing the provider when asked to, and blocked SDK calls at exit: bounded like the daemon's.
CLOSE_S = 3.0
EXIT_GRACE_S = 2.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Have the kernel kill this worker when the daemon dies, even if its loop is stuck."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def describe(provider: AsrProvider | TtsProvider) -> dict[str, Any]:
    """What the daemon's stand-in for ``provider`` advertises."""
    if isinstance(provider, AsrProvider):
        return {
            "name": provider.name,
            "model": provider.model,
            "languages": provider.languages,
            "input_format": provider.input_format,
        }
    return {
        "name": provider.name,
        "model": provider.model,
        "voices": provider.voices,
        "audio_format": provider.audio_format,
        "encoded_formats": provider.encoded_formats(),
    }


def _as_error(what: str, exc: BaseException) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    _LOGGER.error("%s: unexpected failure", what, exc_info=exc)
    return ProviderError(ErrorCode.INTERNAL, "internal error")


class _Server:
    """The requests of one worker: each a task fed by its inbox."""

    def __init__(self, stream: MessageStream, spec: WorkerSpec, roles: dict[str, Any]):
        self._stream = stream
        self._spec = spec
        self._roles = roles
        self._inboxes: dict[int, asyncio.Queue[Any]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.finished = asyncio.Event()  # the daemon asked this worker to close, or went away

    def send(self, *message: Any) -> None:
        self._stream.send(message)

    async def flush(self) -> None:
        await _flush(self._stream)

    def dispatch(self, message: Message) -> None:
        kind, rid = message[0], message[1]
        if kind == "close":
            self.finished.set()
        elif kind == "ping":
            self.send("pong", rid)
        elif kind == "logs":
            logs.set_level(message[2])
            logs.set_format(message[3])
        elif kind == "open":
            self._start(rid, self._recognize(rid, *message[2:]))
        elif kind == "synth":
            self._start(rid, self._synthesize(rid, *message[2:]))
        elif kind == "cancel":
            task = self._tasks.get(rid)
            if task is not None:
                task.cancel()
        elif rid in self._inboxes:  # audio, text, end
            self._inboxes[rid].put_nowait(message)

    def _start(self, rid: int, work: Coroutine[Any, Any, None]) -> None:
        self._inboxes[rid] = asyncio.Queue()
        task = asyncio.create_task(work)
        self._tasks[rid] = task
        task.add_done_callback(lambda _: self._forget(rid))

    def _forget(self, rid: int) -> None:
        self._inboxes.pop(rid, None)
        self._tasks.pop(rid, None)
        _LOGGER.debug("%s worker: request %d ended", self._spec.provider, rid)

    async def cancel_all(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _recognize(self, rid: int, language: str | None, partials: bool) -> None:
        provider: AsrProvider = self._roles["asr"]
        inbox = self._inboxes[rid]
        on_partial: Callable[[str], None] | None = None
        if partials:
            on_partial = lambda text: self.send("partial", rid, text)  # noqa: E731
        try:
            session = await provider.open(language, on_partial)
        except Exception as exc:
            self._fail(rid, exc)
            return
        self.send("opened", rid)
        try:
            while (message := await inbox.get())[0] == "audio":
                await session.send(message[2])
            finishing = time.monotonic()
            result = await session.finish()
        except BaseException as exc:
            await session.cancel()
            if isinstance(exc, Exception):
                self._fail(rid, exc)
                return
            raise
        # With how long the provider took: the daemon learns what the round trip cost.
        self.send("result", rid, result, time.monotonic() - finishing)

    async def _synthesize(
        self,
        rid: int,
        voice: str | None,
        ssml: bool,
        encoding: EncodedAudio | None,
        whole_text: str | None,
    ) -> None:
        started = time.monotonic()
        provider: TtsProvider = self._roles["tts"]
        inbox = self._inboxes[rid]

        async def pieces() -> AsyncIterator[str]:
            # Each piece is asked for when the provider wants it, as it would pull it in the
            # daemon: text the provider is not ready for waits there, within its limit.
            while True:
                self.send("more", rid)
                await self.flush()
                message = await inbox.get()
                if message[0] != "text":
                    return
                yield message[2]

        options = SynthesisOptions(
            voice=voice, ssml=ssml, on_speaker=lambda name, v: self.send("speaker", rid, name, v)
        )
        if encoding is not None:
            audio = provider.synthesize_encoded(whole_text or "", options, encoding)
        elif whole_text is not None:
            audio = provider.synthesize(WholeText(whole_text), options)
        else:
            audio = provider.synthesize(pieces(), options)
        try:
            async with contextlib.aclosing(audio):
                async for chunk in audio:
                    self.send("audio", rid, chunk, time.monotonic() - started)
                    await self.flush()
        except Exception as exc:
            self._fail(rid, exc)
            return
        self.send("done", rid)

    def _fail(self, rid: int, exc: Exception) -> None:
        error = _as_error(f"{self._spec.provider} worker", exc)
        self.send("error", rid, error.code, error.message)


async def _flush(stream: MessageStream) -> None:
    """Wait until the daemon has read what was sent; a daemon gone away is no error here."""
    with contextlib.suppress(ConnectionError):
        await stream.drain()


async def _serve(fd: int) -> None:
    stream = await MessageStream.open(socket.socket(fileno=fd))
    first = await stream.next()
    if first is None or first[0] != "init":
        return
    spec: WorkerSpec = first[2]
    logs.setup(spec.log_level, spec.log_format)
    from ..provider_table import PROVIDERS

    table = PROVIDERS[spec.provider]
    try:
        roles = {
            role: getattr(table, role)(spec.section, spec.credentials, choice)
            for role, choice in spec.roles.items()
        }
    except Exception as exc:
        _LOGGER.exception("%s worker: cannot build the provider", spec.provider)
        stream.send(("failed", 0, f"{type(exc).__name__}: {exc}"))
        await _flush(stream)
        return
    await serve(stream, spec, roles)


async def serve(stream: MessageStream, spec: WorkerSpec, roles: dict[str, Any]) -> None:
    """Say ``ready`` with what ``roles`` (the providers built, by role) offer, then serve the
    daemon's requests over ``stream`` until it asks this worker to close or goes away."""
    server = _Server(stream, spec, roles)
    server.send("ready", 0, {role: describe(provider) for role, provider in roles.items()})
    await server.flush()
    _LOGGER.info("%s worker %d ready: %s", spec.provider, os.getpid(), ", ".join(roles).upper())
    # warm connections live here
    warm_ups = [asyncio.create_task(provider.prepare()) for provider in roles.values()]
    try:
        stream.handle(server.dispatch, server.finished.set)
        await server.finished.wait()
    finally:
        for task in warm_ups:
            task.cancel()
        await server.cancel_all()
        with contextlib.suppress(Exception, TimeoutError):
            async with asyncio.timeout(CLOSE_S):
                await asyncio.gather(*(provider.close() for provider in roles.values()))
        stream.close()


def prepare_process() -> None:
    """Die with the parent (the daemon, or a worker's launcher), and leave the signals meant
    for the daemon (a terminal's Ctrl-C, systemd's stop) to it: it drains, then closes its
    workers."""
    _die_with_parent()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


def run(fd: int) -> None:
    """Serve the daemon over the socket ``fd`` until it closes it."""
    parent = os.getppid()
    prepare_process()
    if os.getppid() != parent:  # the launcher died before the kernel would have told us
        return
    # uvloop: an SDK's threads hand each event to the loop from outside it, which uvloop's
    # loop takes in C; it took 0.1-0.2 ms off the Azure worker's round trip.
    uvloop.run(_serve(fd))
    calls_still_running(EXIT_GRACE_S)  # an SDK call we gave up on must not hold the exit
    logging.shutdown()
    sys.stderr.flush()
