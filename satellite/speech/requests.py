"""The speech endpoint's requests: which service each uses, their outcomes, and the drain.

A config reload replaces the endpoint's service: new requests use the new providers, while
requests in flight finish on the ones they started with, which are closed afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Literal, TypeVar

from wyoming.event import Event

from ..buffers import BufferFull
from ..errors import ErrorCode, ProviderError
from ..providers.base import AsrProvider, TtsProvider
from ..recording import Recorder
from ..wyoming_handler import GuardedHandler

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class SpeechService:
    """What every connection of the speech endpoint shares."""

    asr: AsrProvider | None
    tts: TtsProvider | None
    info: Event
    # Live transcripts: "auto" sends them to clients that asked for the info first.
    transcript_streaming: Literal["auto", "always", "never"] = "auto"

    async def close(self) -> None:
        for provider in (self.asr, self.tts):
            if provider is not None:
                await provider.close()


def end_request(task: asyncio.Task[None]) -> None:
    """Cancel a request once it has taken its first step: a task cancelled before it starts
    never runs its ``finally`` (a stream's ``synthesize-stopped``)."""
    asyncio.get_running_loop().call_soon(task.cancel)


class SpeechEndpoint:
    """The service new requests get, and every request in flight with the service it uses."""

    def __init__(self, service: SpeechService, recorder: Recorder | None = None) -> None:
        self.service = service
        self.recorder = recorder  # keeps each transcription's audio when recordings are on
        self.stopping = False  # new requests are refused
        self._requests: dict[asyncio.Task[None], SpeechService] = {}
        self.answered: Counter[str] = Counter()  # requests answered, by role (ASR, TTS)
        self.failed: Counter[str] = Counter()  # requests failed, by error code

    def status(self) -> str:
        """What the endpoint has done since it started, for ``systemctl status``."""
        failed = sum(self.failed.values())
        codes = ", ".join(f"{code} {n}" for code, n in sorted(self.failed.items()))
        return (
            f"{self.answered['ASR']} transcribed, {self.answered['TTS']} synthesized, "
            f"{failed} failed" + (f" ({codes})" if codes else "")
        )

    def track(self, task: asyncio.Task[None], service: SpeechService) -> None:
        self._requests[task] = service
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._requests.pop(task, None)

    @property
    def in_flight(self) -> int:
        return len(self._requests)

    def describe(self, info: Event) -> None:
        """Answer ``describe`` with ``info`` from now on (the providers are the same)."""
        old = self.service
        self.service = dataclasses.replace(old, info=info)
        for task, used in self._requests.items():
            if used is old:
                self._requests[task] = self.service

    async def replace(self, service: SpeechService) -> None:
        """Serve new requests with ``service``; close the old one once its requests end."""
        old, self.service = self.service, service
        using_old = [task for task, used in self._requests.items() if used is old]
        try:
            if using_old:
                # Every request is bounded by its deadlines (or ends with its connection).
                await asyncio.wait(using_old)
        finally:
            await old.close()

    async def drain(self, timeout: float) -> int:
        """Refuse new requests, give those in flight ``timeout`` seconds, then end the rest
        (their clients get ``error`` shutting-down). Returns how many were ended."""
        self.stopping = True
        pending: set[asyncio.Task[None]] = set(self._requests)
        if pending and timeout > 0:
            _, pending = await asyncio.wait(pending, timeout=timeout)
        for task in pending:
            end_request(task)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)


class ClientRequests:
    """The requests of one client connection: each runs as a task the endpoint tracks, and
    a failure becomes an ``error`` event to the client, the connection going on."""

    def __init__(self, endpoint: SpeechEndpoint, client: GuardedHandler) -> None:
        self.endpoint = endpoint
        self._client = client
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def service(self) -> SpeechService:
        """The service new requests use (a config reload may replace it)."""
        return self.endpoint.service

    def spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        """Run one request; it keeps the service it started with."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.endpoint.track(task, self.service)
        return task

    async def guard(self, role: str, provider: str, work: Awaitable[T]) -> T | None:
        """Run provider work; a failure becomes an ``error`` event and a log line."""
        try:
            result = await work
        except ProviderError as exc:
            self.endpoint.failed[exc.code.value] += 1
            _LOGGER.warning("%s %s failed [%s]: %s", role, provider, exc.code, exc.message)
            await self._client.send_error(exc.code, f"{role} {provider}: {exc.message}")
        except asyncio.CancelledError:
            if self.endpoint.stopping:
                await self._client.send_error(
                    ErrorCode.SHUTTING_DOWN, f"{role} {provider}: ended, the daemon is stopping"
                )
            raise
        except ConnectionError:
            raise
        except Exception:
            self.endpoint.failed[ErrorCode.INTERNAL.value] += 1
            _LOGGER.exception("%s %s: unexpected failure", role, provider)
            await self._client.send_error(ErrorCode.INTERNAL, f"{role} {provider}: internal error")
        else:
            self.endpoint.answered[role] += 1
            return result
        return None

    async def fail(self, task: asyncio.Task[None] | None, what: str, exc: BufferFull) -> None:
        """End a request whose data waiting for the provider went over the limit (and has
        been dropped); the connection goes on."""
        if task is not None:
            end_request(task)
        text = f"{what} ahead of the provider: {exc}; request ended"
        _LOGGER.warning("client %s: %s", self._client.peer, text)
        await self._client.send_error(ErrorCode.TOO_LARGE, text)

    async def cancel_all(self) -> None:
        """Cancel whatever this client started; providers release their sessions."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
