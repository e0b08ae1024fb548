"""A fake DashScope HTTP API for the Qwen TTS models (qwen3-tts-flash, qwen-tts), for the real
SDK's ``MultiModalConversation.call(stream=True)``.

The SDK POSTs ``{"model", "input": {"text", "voice", "language_type"}, "parameters": {...}}`` to
``/api/v1/services/aigc/multimodal-generation/generation`` with ``Authorization: Bearer KEY`` and
``X-DashScope-SSE: enable``. The answer is a stream of server-sent events as the service sends
them (``id:N``, ``event:result``, ``:HTTP_STATUS/200``, ``data:{json}``, a blank line), each with
``request_id``, ``output`` {``finish_reason`` "null", ``audio`` {``data`` (base64 PCM, 24 kHz
mono s16le, 100 ms per event), ``id``, ``expires_at``, ``url`` ""}} and ``usage``; the last has
``finish_reason`` "stop", no data and the audio's ``url``. The audio is 40 ms per character (see
``FakeDashScope.tts_audio_for``). A refused key gets 401 with DashScope's error JSON.

Its asyncio loop runs in a daemon thread, like the other fakes. Also runnable as a process::

    python -m tests.fakes.dashscope_http --port 0 [--delay S] [--fault F]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from tests.fakes.dashscope import FakeDashScope
from tests.fakes.threaded import CALL_TIMEOUT_SECONDS, CLOSE_TIMEOUT_SECONDS

# refuse: not listening; auth: 401 for any key; error: an SSE error event after the first
# audio; stall: response headers, then nothing; drop: the connection cut after the first audio.
FAULTS = (None, "refuse", "auth", "error", "stall", "drop")
PATH = "/api/v1/services/aigc/multimodal-generation/generation"
SAMPLE_RATE = 24000
CHUNK_BYTES = 4800  # 100 ms of 24 kHz s16le audio per event
EVENT_SECONDS = CHUNK_BYTES / (2 * SAMPLE_RATE)  # the audio one event carries
ERROR_CODE = "InternalError.Algo"
ERROR_MESSAGE = "fake DashScope failure: the model could not synthesize this text"
AUTH_CODE = "InvalidApiKey"
AUTH_MESSAGE = "Invalid API-key provided."
POLL_SECONDS = 0.01


@dataclass
class FakeHttpRequest:
    """What one request asked for, and what became of it."""

    model: str
    text: str
    voice: str | None
    language_type: str | None
    parameters: dict[str, Any]
    headers: dict[str, str]
    fault: str | None  # in force when it came
    started_at: float  # time.monotonic() when it came
    first_audio_at: float | None = None  # just before its first audio event
    audio: bytearray = field(default_factory=bytearray)  # every byte sent
    finished: bool = False  # the "stop" event went out
    finished_at: float | None = None  # time.monotonic() then
    client_closed: bool = False  # the client closed the connection before the end


def audio_for(text: str) -> bytes:
    """The exact PCM the fake sends for one request's text."""
    return FakeDashScope.tts_audio_for(text, SAMPLE_RATE)


def _sse(
    number: int, payload: dict[str, Any], *, event: str = "result", status: int = 200
) -> bytes:
    data = json.dumps(payload, ensure_ascii=False)
    return f"id:{number}\nevent:{event}\n:HTTP_STATUS/{status}\ndata:{data}\n\n".encode()


class FakeDashScopeHttp:
    """The fake server. ``fault``, ``delay`` (seconds before the first audio) and
    ``interval`` (seconds between audio events) may change at any time; ``requests`` lists
    every synthesis request received, in order."""

    def __init__(self, *, api_key: str | None = None, delay: float = 0.0, port: int = 0) -> None:
        self.api_key = api_key  # None: any key is accepted
        self.delay = delay
        self.interval = 0.0
        self.requests: list[FakeHttpRequest] = []
        self._fault: str | None = None
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._open: dict[int, web.BaseRequest] = {}  # by id(): requests are not hashable

    # --- public API ---------------------------------------------------------------

    @property
    def fault(self) -> str | None:
        return self._fault

    @fault.setter
    def fault(self, value: str | None) -> None:
        if value not in FAULTS:
            raise ValueError(f"unknown fault {value!r}, expected one of {FAULTS}")
        self._fault = value
        if self._loop is not None:
            self._call(self._listen(value != "refuse"))

    @property
    def url(self) -> str:
        """The base HTTP API URL, as ``providers.dashscope.http_url``."""
        if not self._port:
            raise RuntimeError("FakeDashScopeHttp is not started")
        return f"http://127.0.0.1:{self._port}/api/v1"

    @property
    def open_requests(self) -> int:
        """Requests being answered now."""
        return len(self._open)

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("FakeDashScopeHttp already started")
        if not self._port:  # keep one port for the fake's life, refused or not
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self._port = probe.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fake-dashscope-http", daemon=True
        )
        self._thread.start()
        self._call(self._setup())
        return self

    def stop(self) -> None:
        """Cut every connection, stop listening, then end the thread."""
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(Exception):
            self._call(self._close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CLOSE_TIMEOUT_SECONDS)
        if not self._thread.is_alive():
            self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @classmethod
    def main(cls, argv: list[str] | None = None) -> None:
        """Serve from the command line until SIGTERM or SIGINT, then exit with status 0."""
        parser = argparse.ArgumentParser(description="Fake DashScope HTTP API (Qwen TTS)")
        parser.add_argument("--port", type=int, default=0)
        parser.add_argument("--delay", type=float, default=0.0)
        parser.add_argument("--fault", choices=[f for f in FAULTS if f], default=None)
        options = parser.parse_args(argv)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        fake = cls(delay=options.delay, port=options.port)
        fake.fault = options.fault
        with fake:
            print(f"READY {fake.url}", flush=True)
            while not stop.wait(1.0):
                pass
        sys.exit(0)

    # --- serving ------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        given = body.get("input") or {}
        record = FakeHttpRequest(
            model=body.get("model", ""),
            text=given.get("text", ""),
            voice=given.get("voice"),
            language_type=given.get("language_type"),
            parameters=body.get("parameters") or {},
            headers=dict(request.headers),
            fault=self._fault,
            started_at=time.monotonic(),
        )
        self.requests.append(record)
        request_id = str(uuid.uuid4())
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if record.fault == "auth" or (self.api_key is not None and key != self.api_key):
            error = {"code": AUTH_CODE, "message": AUTH_MESSAGE, "request_id": request_id}
            return web.json_response(error, status=401)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream;charset=UTF-8", "X-Request-Id": request_id}
        )
        self._open[id(request)] = request
        try:
            await response.prepare(request)
            await self._stream(request, response, record, request_id)
        except (ConnectionError, asyncio.CancelledError):
            record.client_closed = not record.finished
        finally:
            self._open.pop(id(request), None)
        return response

    async def _stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        record: FakeHttpRequest,
        request_id: str,
    ) -> None:
        if record.fault == "stall":
            await self._pause(request, record, None)
            return
        await self._pause(request, record, self.delay)
        audio = audio_for(record.text)
        audio_id = f"audio_{request_id}"
        expires_at = int(time.time()) + 86400
        number = 0
        for offset in range(0, len(audio), CHUNK_BYTES):
            if offset and self.interval:
                await self._pause(request, record, self.interval)
            chunk = audio[offset : offset + CHUNK_BYTES]
            if record.first_audio_at is None:
                record.first_audio_at = time.monotonic()
            number += 1
            output = {
                "finish_reason": "null",
                "audio": {
                    "data": base64.b64encode(chunk).decode(),
                    "id": audio_id,
                    "expires_at": expires_at,
                    "url": "",
                },
            }
            await response.write(_sse(number, self._payload(request_id, output, record)))
            record.audio += chunk
            if record.fault == "drop":
                assert request.transport is not None
                request.transport.abort()
                return
            if record.fault == "error":
                failure = {"code": ERROR_CODE, "message": ERROR_MESSAGE, "request_id": request_id}
                await response.write(_sse(number + 1, failure, event="error", status=500))
                return
        url = f"http://127.0.0.1:{self._port}/audio/{audio_id}.wav"
        output = {
            "finish_reason": "stop",
            "audio": {"data": "", "id": audio_id, "expires_at": expires_at, "url": url},
        }
        await response.write(_sse(number + 1, self._payload(request_id, output, record)))
        await response.write_eof()
        record.finished, record.finished_at = True, time.monotonic()

    @staticmethod
    def _payload(request_id: str, output: dict[str, Any], record: FakeHttpRequest) -> dict:
        characters = len(record.text)
        tokens = len(record.audio) // 960  # 50 audio tokens per second
        usage = {
            "characters": characters,
            "input_tokens": characters,
            "output_tokens": tokens,
            "total_tokens": characters + tokens,
        }
        return {"request_id": request_id, "output": output, "usage": usage}

    async def _pause(
        self, request: web.Request, record: FakeHttpRequest, seconds: float | None
    ) -> None:
        """Wait ``seconds`` (None: until the client goes), noting a client that closes."""
        end = None if seconds is None else time.monotonic() + seconds
        while end is None or time.monotonic() < end:
            if request.transport is None or request.transport.is_closing():
                record.client_closed = True
                raise ConnectionResetError("the client closed the connection")
            await asyncio.sleep(POLL_SECONDS)

    # --- plumbing -------------------------------------------------------------------

    def _call(self, coro: Any) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT_SECONDS)

    async def _setup(self) -> None:
        app = web.Application()
        app.router.add_post(PATH, self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=CLOSE_TIMEOUT_SECONDS)
        await self._runner.setup()
        await self._listen(self._fault != "refuse")

    async def _listen(self, listening: bool) -> None:
        assert self._runner is not None and self._loop is not None
        if listening and self._server is None:
            handler = self._runner.server
            assert handler is not None
            self._server = await self._loop.create_server(handler, "127.0.0.1", self._port)
        elif not listening and self._server is not None:
            server, self._server = self._server, None
            server.close()  # new connections are refused; open ones live on

    async def _close_all(self) -> None:
        await self._listen(False)
        for request in list(self._open.values()):
            if request.transport is not None:
                request.transport.abort()
        if self._runner is not None:
            await self._runner.cleanup()


main = FakeDashScopeHttp.main

if __name__ == "__main__":
    main()
