"""A fake DashScope inference websocket endpoint (``/api-ws/v1/inference``), for the real SDK.

Speaks the duplex task protocol used by ``dashscope.audio.asr.Recognition`` (paraformer) and
``dashscope.audio.tts_v2.SpeechSynthesizer`` (CosyVoice): ``run-task`` / ``continue-task`` /
``finish-task`` from the client, ``task-started`` / ``result-generated`` / ``task-finished`` /
``task-failed`` and binary audio from the server. Runs its own event loop in a background
thread, so both synchronous and asyncio tests can use it.

A TTS task's texts are spoken in order by a task of its own, paced by the fake's ``pace``,
while the connection goes on reading: a finish-task with ``input.directive`` "cancel" stops
the speaking and drops the text still waiting (then task-finished), and so does the client's
connection going away; the task's ``production`` counts the audio sent after that. A task
whose ``format`` is "mp3" or "opus" gets its tone as one MP3 or Ogg Opus stream, as a live
encoder emits it, its tail before task-finished. Also runnable as a process::

    python -m tests.fakes.dashscope --port 0 [--delay S] [--fault F] [--pace P]
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, ClassVar
from urllib.parse import urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fakes.encoded import Container, LiveEncoder, encoder_for, frames
from tests.fakes.threaded import Production, ThreadedFake

FAULTS = (None, "refuse", "auth", "task-failed", "stall", "drop", "garbage")
PATH = "/api-ws/v1/inference"
FAILURE_CODE = "InternalError.Algo"
FAILURE_MESSAGE = "fake DashScope failure: the model could not process this task"
GARBAGE = "<html><body>502 Bad Gateway</body></html>"  # a proxy's page where JSON belongs
PARTIAL_EVERY_BYTES = 3200  # one partial ASR result per 100 ms of 16 kHz s16le audio
ASR_BYTES_PER_MS = 32
TTS_FRAME_BYTES = 3200
TTS_SECONDS_PER_CHARACTER = 0.04
MAX_MESSAGES = 200_000  # bound on the messages read from one connection
# A TTS task's ``format`` parameter that asks for encoded audio (else PCM).
ENCODED: dict[str, Container] = {"mp3": "mp3", "opus": "ogg-opus"}


@dataclass
class _Task:
    task_id: str
    kind: str  # "asr" | "tts"
    index: int  # position in received_audio / received_text
    fault: str | None  # the fault in force when the task started
    sample_rate: int = 22050
    characters: int = 0
    texts_answered: int = 0
    done: bool = False  # failed, dropped or finished: nothing more is sent
    audio_bytes: int = 0
    partials: int = 0
    audio_sent: bool = False  # TTS: the first audio frame has gone out
    garbage_sent: bool = False  # the "garbage" fault has sent its frame
    # TTS: the texts not spoken yet, the task speaking them, and what it sent.
    waiting: deque[str] = field(default_factory=deque)
    speaker: asyncio.Task[None] | None = None
    finishing: bool = False  # finish-task came: task-finished once all is spoken
    production: Production | None = None
    encoder: LiveEncoder | None = None  # TTS asked for MP3 or Ogg Opus: one stream per task

    @property
    def speaking(self) -> bool:
        return self.speaker is not None and not self.speaker.done()


def _event(task_id: str, event: str, payload: dict | None = None, **header: str) -> str:
    message = {
        "header": {"task_id": task_id, "event": event, "attributes": {}, **header},
        "payload": payload if payload is not None else {},
    }
    return json.dumps(message, ensure_ascii=False)


class FakeDashScope(ThreadedFake):
    """Serves ``ws://127.0.0.1:PORT/api-ws/v1/inference``; ``fault`` may change at any time.

    Faults: "refuse" stops listening (connections are refused); "auth" answers the handshake
    with HTTP 401; "task-failed" fails the task (ASR: right after task-started, TTS: on the
    first text); "stall" starts the task and then never answers; "drop" cuts the TCP
    connection without a close frame (ASR: after the first result, TTS: after the first
    text's result-generated, before its audio); "garbage" sends a non-JSON text frame
    after the first result (ASR) or audio frame (TTS), then goes on. A task keeps the
    fault it started with.
    """

    FAULTS = FAULTS
    NAME = "dashscope"
    DESCRIPTION = "Fake DashScope inference websocket endpoint"
    SERVE_OPTIONS: ClassVar[dict[str, Any]] = {"close_timeout": 1}

    def __init__(
        self,
        *,
        api_key: str = "test-dashscope-key",
        sentences: list[str] | None = None,
        delay: float = 0.0,
        port: int = 0,
        pace: float = 0.0,
    ) -> None:
        super().__init__(delay=delay, port=port, pace=pace)
        self.api_key = api_key
        self.sentences = list(sentences) if sentences is not None else ["你好。", "打开客厅的灯。"]
        self.requests: list[dict] = []
        self.received_text: list[list[str]] = []
        self._audio: list[bytearray] = []
        self.handshakes = 0  # opening handshakes seen, accepted or not
        self.connections = 0  # websocket connections accepted
        self.task_connections: list[int] = []  # per task: which accepted connection (1, 2...)

    # --- public API ---------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{self._origin}{PATH}"

    @property
    def received_audio(self) -> list[bytes]:
        """Per ASR task, in task order: every binary audio frame concatenated."""
        return [bytes(audio) for audio in self._audio]

    def drop_connections(self) -> None:
        """Cut every open connection without a close frame, as a server dropping idle ones."""
        self._call(self._drop_open())

    @staticmethod
    def tts_audio_for(text: str, sample_rate: int) -> bytes:
        """The exact PCM (s16le mono) sent for one continue-task text: a triangle tone,
        40 ms per character, whose pitch depends on the text (integer maths: byte-exact)."""
        samples = round(sample_rate * TTS_SECONDS_PER_CHARACTER * len(text))
        frequency = 200 + sum(map(ord, text)) % 400
        period = max(2, sample_rate // frequency)
        amplitude = 8000
        phase = np.arange(samples, dtype=np.int64) % period
        rising = 4 * amplitude * phase // period - amplitude
        falling = 3 * amplitude - 4 * amplitude * phase // period
        wave = np.where(2 * phase < period, rising, falling)
        return wave.astype("<i2").tobytes()

    # --- connections ---------------------------------------------------------------

    async def _drop_open(self) -> None:
        self._drop_all()

    def _ready_url(self) -> str:
        return self.url

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes += 1
        if urlsplit(request.path).path != PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, "no such endpoint\n")
        authorization = request.headers.get("Authorization", "")
        if self._fault == "auth" or authorization != f"Bearer {self.api_key}":
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Invalid API-key provided.\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        number = self.connections
        task: _Task | None = None
        try:
            for _ in range(MAX_MESSAGES):
                message = await ws.recv()
                if isinstance(message, bytes):
                    if task is not None and task.kind == "asr":
                        await self._asr_audio(ws, task, message)
                else:
                    task = await self._command(ws, task, json.loads(message), number)
        finally:  # the client's connection went: the service stops speaking
            if task is not None and task.speaking:
                self._stop_speaking(task, "closed")

    async def _command(
        self, ws: ServerConnection, task: _Task | None, message: dict, connection: int
    ) -> _Task | None:
        header, payload = message.get("header", {}), message.get("payload", {})
        action = header.get("action")
        if action == "run-task":
            self.task_connections.append(connection)
            task = self._new_task(header.get("task_id", ""), payload)
            await ws.send(_event(task.task_id, "task-started"))
            if task.fault == "task-failed" and task.kind == "asr":
                await self._fail(ws, task)
        elif task is None or task.task_id != header.get("task_id"):
            return task  # a stray message for no running task
        elif action == "continue-task" and task.kind == "tts":
            text = payload.get("input", {}).get("text")
            if isinstance(text, str):
                self._queue_text(ws, task, text)
        elif action == "finish-task":
            if task.kind == "asr":
                await self._asr_finish(ws, task)
            elif payload.get("input", {}).get("directive") == "cancel":
                self._stop_speaking(task, "cancel")
                if not (task.done or task.fault == "stall"):
                    await self._finish(ws, task)
            elif not (task.done or task.fault == "stall"):
                task.finishing = True
                self._wake(ws, task)
        return task

    def _new_task(self, task_id: str, payload: dict) -> _Task:
        self.requests.append(payload)
        kind = "asr" if payload.get("task") == "asr" else "tts"
        if kind == "asr":
            index = len(self._audio)
            self._audio.append(bytearray())
        else:
            index = len(self.received_text)
            self.received_text.append([])
        parameters = payload.get("parameters", {})
        rate = int(parameters.get("sample_rate", 22050))
        task = _Task(task_id, kind, index, self._fault, sample_rate=rate)
        if kind == "tts":
            task.production = self._production()
            task.encoder = encoder_for(ENCODED.get(parameters.get("format", "")), rate)
        return task

    async def _fail(self, ws: ServerConnection, task: _Task) -> None:
        task.done = True
        failure = {"error_code": FAILURE_CODE, "error_message": FAILURE_MESSAGE}
        await ws.send(_event(task.task_id, "task-failed", **failure))

    async def _finish(self, ws: ServerConnection, task: _Task) -> None:
        task.done = True
        payload: dict = {"output": {}, "usage": None}  # the SDK ignores an empty payload
        if task.kind == "tts":
            payload["usage"] = {"characters": task.characters}
        await ws.send(_event(task.task_id, "task-finished", payload))

    async def _garbage(self, ws: ServerConnection, task: _Task) -> None:
        """The "garbage" fault: one non-JSON text frame after the task's first output."""
        if task.fault == "garbage" and not task.garbage_sent:
            task.garbage_sent = True
            await ws.send(GARBAGE)

    async def _asr_result(self, ws: ServerConnection, task: _Task, sentence: dict) -> None:
        usage = {"duration": 1} if sentence["sentence_end"] else None
        payload = {"output": {"sentence": sentence}, "usage": usage}
        await ws.send(_event(task.task_id, "result-generated", payload))
        if task.fault == "drop":
            task.done = True
            self._drop(ws)
        else:
            await self._garbage(ws, task)

    # --- recognition -----------------------------------------------------------------

    async def _asr_audio(self, ws: ServerConnection, task: _Task, audio: bytes) -> None:
        self._audio[task.index] += audio
        before, task.audio_bytes = task.audio_bytes, task.audio_bytes + len(audio)
        first = self.sentences[0] if self.sentences else ""
        for _ in range(before // PARTIAL_EVERY_BYTES, task.audio_bytes // PARTIAL_EVERY_BYTES):
            if task.done or task.fault == "stall":
                return
            task.partials += 1
            text = first[: task.partials]
            sentence = {"begin_time": 0, "end_time": None, "text": text, "words": []}
            await self._asr_result(ws, task, {**sentence, "sentence_end": False})

    async def _asr_finish(self, ws: ServerConnection, task: _Task) -> None:
        if task.done or task.fault == "stall":
            return
        if self.delay:
            await asyncio.sleep(self.delay)
        duration_ms = max(task.audio_bytes // ASR_BYTES_PER_MS, len(self.sentences))
        step = duration_ms // max(1, len(self.sentences))
        for number, text in enumerate(self.sentences):
            if task.done:
                return
            sentence = {"begin_time": number * step, "end_time": (number + 1) * step}
            await self._asr_result(
                ws, task, {**sentence, "text": text, "words": [], "sentence_end": True}
            )
        if not task.done:
            await self._finish(ws, task)

    # --- synthesis -------------------------------------------------------------------

    def _queue_text(self, ws: ServerConnection, task: _Task, text: str) -> None:
        self.received_text[task.index].append(text)
        if task.done or task.fault == "stall":
            return
        task.waiting.append(text)
        self._wake(ws, task)

    def _wake(self, ws: ServerConnection, task: _Task) -> None:
        if not task.speaking:
            task.speaker = asyncio.create_task(self._speak(ws, task))

    async def _speak(self, ws: ServerConnection, task: _Task) -> None:
        """Speak the waiting texts in order; after finish-task, answer task-finished."""
        assert task.production is not None
        try:
            while task.waiting and not task.done:
                await self._tts_text(ws, task, task.waiting.popleft())
            if task.finishing and not task.done:
                if task.encoder is not None and (tail := task.encoder.finish()):
                    await self._tts_audio(ws, task, tail, 0)
                task.production.finished = True
                await self._finish(ws, task)
        except ConnectionClosed:
            pass

    def _stop_speaking(self, task: _Task, why: str) -> None:
        """A cancel, or the connection gone: stop now and drop the text still waiting."""
        if task.production is not None:
            task.production.stop(why)
        task.waiting.clear()
        if task.speaker is not None:
            task.speaker.cancel()

    async def _tts_text(self, ws: ServerConnection, task: _Task, text: str) -> None:
        first = task.texts_answered == 0
        if first and task.fault == "task-failed":
            await self._fail(ws, task)
            return
        if first and self.delay:
            await asyncio.sleep(self.delay)
        task.texts_answered += 1
        task.characters += len(text)
        sentence = {"index": task.texts_answered - 1, "words": []}
        payload = {"output": {"sentence": sentence}, "usage": {"characters": task.characters}}
        await ws.send(_event(task.task_id, "result-generated", payload))
        if task.fault == "drop":  # lost before any audio: clients see only the failure
            task.done = True
            self._drop(ws)
            return
        pcm = self.tts_audio_for(text, task.sample_rate)
        for audio, pcm_bytes in frames(pcm, TTS_FRAME_BYTES, task.encoder, last=False):
            await self._tts_audio(ws, task, audio, pcm_bytes)

    async def _tts_audio(self, ws: ServerConnection, task: _Task, audio: bytes, pcm: int) -> None:
        """One binary audio frame holding ``pcm`` bytes of PCM (encoded or not)."""
        assert task.production is not None
        await self._send_audio(
            ws,
            audio,
            first=not task.audio_sent,
            production=task.production,
            pcm_bytes=pcm,
            seconds=pcm / (2 * task.sample_rate),
        )
        task.audio_sent = True
        await self._garbage(ws, task)


main = FakeDashScope.main

if __name__ == "__main__":
    main()
