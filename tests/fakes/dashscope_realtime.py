"""A fake DashScope realtime websocket endpoint (``/api-ws/v1/realtime?model=...``), for the
real SDK's ``OmniRealtimeConversation`` (qwen3-asr-flash-realtime) and ``QwenTtsRealtime``
(qwen3-tts-flash-realtime, qwen-tts-realtime).

Every frame is a JSON text event with ``type`` and ``event_id``. The client sends
``session.update``, ``input_audio_buffer.append`` / ``.commit`` (ASR), ``input_text_buffer.append``
/ ``.commit`` (TTS) and ``session.finish``; the server answers ``session.created`` on connect,
``session.updated``, transcription events (ASR) or response events with base64 audio deltas
(TTS), and ``session.finished`` (then closes).

TTS responses are spoken one after the other by a task of the session's own, paced by the
fake's ``pace``, while the connection goes on reading: ``response.cancel`` stops the response
being spoken and drops the committed text still waiting (then ``response.done`` says
"cancelled"); ``input_text_buffer.clear`` drops the text not committed yet; the client's
connection going away stops everything. The session's ``production`` counts the audio sent
after such a stop. Also runnable as a process::

    python -m tests.fakes.dashscope_realtime --port 0 [--delay S] [--fault F] [--pace P]
        [--transcript T]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fakes.dashscope import FakeDashScope
from tests.fakes.threaded import Production, ThreadedFake

FAULTS = (None, "refuse", "auth", "error", "failed", "stall", "drop", "garbage")
PATH = "/api-ws/v1/realtime"
ERROR_CODE = "InternalError.Algo"
ERROR_MESSAGE = "fake DashScope failure: the model could not process this request"
GARBAGE = "<html><body>502 Bad Gateway</body></html>"
PARTIAL_EVERY_BYTES = 3200  # one partial transcript per 100 ms of 16 kHz s16le audio
BYTES_PER_MS = 32
TTS_DELTA_BYTES = 4800  # 100 ms of 24 kHz s16le audio per response.audio.delta
SENTENCE_ENDS = ("。", "！", "？", ".", "!", "?", "\n")  # where server_commit mode speaks
MAX_MESSAGES = 200_000  # bound on the messages read from one connection


@dataclass
class FakeSession:
    """What one connection received, and what it did."""

    number: int  # 1 for the fake's first connection
    model: str
    opened_at: float  # time.monotonic() when the connection was accepted
    fault: str | None = None  # in force at the first session.update
    client_events: list[str] = field(default_factory=list)  # every event type, in order
    server_events: list[str] = field(default_factory=list)  # every event type sent, in order
    updates: list[dict] = field(default_factory=list)  # the ``session`` of each session.update
    audio: bytearray = field(default_factory=bytearray)  # ASR: every appended byte
    texts: list[str] = field(default_factory=list)  # TTS: every appended text
    synthesized: list[str] = field(default_factory=list)  # TTS: the text of each response
    finished: bool = False  # session.finished was sent
    production: Production | None = None  # TTS: the audio sent, and any stop (cancel, close)


class _Stop(Exception):
    """The connection was dropped: stop serving it."""


def _event_id() -> str:
    return f"event_{uuid.uuid4().hex[:16]}"


class _Connection:
    """Serves one accepted connection; the ASR and TTS subclasses handle their own events."""

    def __init__(self, fake: FakeDashScopeRealtime, ws: ServerConnection, session: FakeSession):
        self.fake = fake
        self.ws = ws
        self.session = session
        self.config: dict[str, Any] = {}
        self.outputs = 0  # partial transcripts or audio deltas sent

    @property
    def fault(self) -> str | None:
        return self.session.fault

    async def run(self) -> None:
        session_id = f"sess_{self.session.number}"
        await self.send("session.created", session={"id": session_id, "model": self.session.model})
        try:
            for _ in range(MAX_MESSAGES):
                event = json.loads(await self.ws.recv())
                kind = event.get("type", "")
                self.session.client_events.append(kind)
                if kind == "session.update":
                    await self._update(event.get("session") or {})
                elif kind == "session.finish":
                    if self.fault != "stall" and await self.finish_session():
                        return
                elif self.fault != "stall":
                    await self.handle(kind, event)
        except _Stop:
            return
        finally:
            self.closed()

    async def handle(self, kind: str, event: dict) -> None:
        """One client event other than session.update / session.finish."""

    async def finish_session(self) -> bool:
        """session.finish: complete the work still pending, answer session.finished and
        close; False if that is left to another task (the connection reads on meanwhile)."""
        await self.finish()
        await self.send("session.finished")
        self.session.finished = True
        await self.ws.close()
        return True

    async def finish(self) -> None:
        """session.finish: complete the work still pending."""

    def closed(self) -> None:
        """The connection has ended (either side closed it, or it was lost)."""

    async def send(self, kind: str, **fields: Any) -> None:
        message = {"event_id": _event_id(), "type": kind, **fields}
        await self.ws.send(json.dumps(message, ensure_ascii=False))
        self.session.server_events.append(kind)

    async def error(self, code: str = ERROR_CODE, message: str = ERROR_MESSAGE) -> None:
        failure = {"type": "invalid_request_error", "code": code, "message": message}
        await self.send("error", error=failure)

    async def output_sent(self) -> None:
        """After each partial transcript or audio delta: the "drop" and "garbage" faults."""
        self.outputs += 1
        if self.outputs != 1:
            return
        if self.fault == "drop":
            self.fake._drop(self.ws)
            raise _Stop
        if self.fault == "garbage":
            await self.ws.send(GARBAGE)

    async def _update(self, config: dict) -> None:
        if not self.session.updates:
            self.session.fault = self.fake.fault
            self.fake.requests.append(self.session)
        self.session.updates.append(config)
        self.config.update(config)
        session = {"id": f"sess_{self.session.number}", **self.config}
        await self.send("session.updated", session=session)


class _Recognition(_Connection):
    """ASR: partial transcripts while audio streams, a transcript per committed item. With
    turn detection, an all-zero chunk is silence: ``silence_duration_ms`` of it after speech
    ends the turn (the server commits); otherwise the client commits."""

    def __init__(self, fake: FakeDashScopeRealtime, ws: ServerConnection, session: FakeSession):
        super().__init__(fake, ws, session)
        self.buffer = bytearray()  # appended since the last commit
        self.speech_bytes = 0  # non-silent bytes in ``buffer``
        self.items = 0  # committed items
        self.turns = 0  # committed items with speech: the index into the fake's transcripts
        self.partials = 0  # of the current item
        self.silence_ms = 0  # since the last speech, with turn detection
        self.speaking = False

    @property
    def item_id(self) -> str:
        return f"item_{self.session.number}_{self.items + 1}"

    async def handle(self, kind: str, event: dict) -> None:
        if kind == "input_audio_buffer.append":
            await self._audio(base64.b64decode(event.get("audio", "")))
        elif kind == "input_audio_buffer.commit":
            await self._commit()
        elif kind == "input_audio_buffer.clear":
            self.buffer.clear()
            self.speech_bytes = 0

    async def _audio(self, audio: bytes) -> None:
        self.session.audio += audio
        silent = not any(audio)
        before = len(self.buffer)
        self.buffer += audio
        if not silent:
            self.speech_bytes += len(audio)
        turn_detection = self.config.get("turn_detection")
        if isinstance(turn_detection, dict) and await self._detect_turn(
            silent, len(audio), turn_detection
        ):
            return
        if self.speech_bytes:
            for _ in range(before // PARTIAL_EVERY_BYTES, len(self.buffer) // PARTIAL_EVERY_BYTES):
                await self._partial()

    async def _detect_turn(self, silent: bool, size: int, turn_detection: dict) -> bool:
        """Whether this chunk ended a turn (which the server then commits)."""
        if not silent:
            self.silence_ms = 0
            if not self.speaking:
                self.speaking = True
                start = (len(self.buffer) - size) // BYTES_PER_MS
                await self.send(
                    "input_audio_buffer.speech_started", audio_start_ms=start, item_id=self.item_id
                )
            return False
        if not self.speaking:
            return False
        self.silence_ms += size // BYTES_PER_MS
        if self.silence_ms < int(turn_detection.get("silence_duration_ms", 800)):
            return False
        self.speaking = False
        end = len(self.buffer) // BYTES_PER_MS
        await self.send("input_audio_buffer.speech_stopped", audio_end_ms=end, item_id=self.item_id)
        await self._commit()
        return True

    async def _partial(self) -> None:
        transcript = self.fake.transcript_for(self.turns)
        self.partials = min(self.partials + 1, len(transcript))
        prefix = transcript[: self.partials]  # the last character is still tentative
        item_id = self.item_id
        kind = "conversation.item.input_audio_transcription.text"
        await self.send(kind, item_id=item_id, content_index=0, text=prefix[:-1], stash=prefix[-1:])
        await self.output_sent()

    async def _commit(self) -> None:
        if not self.buffer:
            await self.error(
                "invalid_value", "Error committing input audio buffer: the buffer is empty."
            )
            return
        speech, self.speech_bytes, self.partials = self.speech_bytes > 0, 0, 0
        self.buffer.clear()
        if self.fault == "error":
            await self.error()
            return
        previous = f"item_{self.session.number}_{self.items}" if self.items else None
        item_id = self.item_id
        self.items += 1
        transcript = self.fake.transcript_for(self.turns) if speech else ""
        self.turns += 1 if speech else 0
        await self.send("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user"}
        await self.send("conversation.item.created", previous_item_id=previous, item=item)
        if self.fake.delay:
            await asyncio.sleep(self.fake.delay)
        prefix = "conversation.item.input_audio_transcription"
        if self.fault == "failed":
            error = {"code": ERROR_CODE, "message": ERROR_MESSAGE}
            await self.send(f"{prefix}.failed", item_id=item_id, content_index=0, error=error)
            return
        if transcript:
            await self.send(f"{prefix}.text", item_id=item_id, text=transcript, stash="")
            await self.output_sent()
        named = (self.config.get("input_audio_transcription") or {}).get("language")
        await self.send(
            f"{prefix}.completed", item_id=item_id, content_index=0, transcript=transcript,
            language=named or self.fake.spoken_language,
        )  # fmt: skip


class _Synthesis(_Connection):
    """TTS: a response per committed text (``commit`` mode) or per complete sentence
    (``server_commit`` mode); on session.finish, whatever text is left, then
    session.finished. A task of its own speaks the responses in order."""

    def __init__(self, fake: FakeDashScopeRealtime, ws: ServerConnection, session: FakeSession):
        super().__init__(fake, ws, session)
        self.buffer = ""
        self.responses = 0
        self.waiting: deque[str] = deque()  # committed texts not spoken yet
        self.finishing = False  # session.finish came: session.finished once all is spoken
        self.ending = False  # the speaker is closing the connection itself
        self.speaker: asyncio.Task[None] | None = None
        self.speaking: dict[str, Any] | None = None  # the response being spoken

    @property
    def production(self) -> Production:
        """This request's record, from its first session.update on (a warm connection that
        no request took has none)."""
        if self.session.production is None:
            self.session.production = self.fake._production()
        return self.session.production

    async def _update(self, config: dict) -> None:
        await super()._update(config)
        assert self.production is not None

    async def handle(self, kind: str, event: dict) -> None:
        if kind == "input_text_buffer.append":
            text = event.get("text", "")
            self.session.texts.append(text)
            self.buffer += text
            server_commit = self.config.get("mode", "server_commit") == "server_commit"
            if server_commit and self.buffer.rstrip(" ").endswith(SENTENCE_ENDS):
                self._commit()
        elif kind == "input_text_buffer.commit":
            if not self.buffer.strip():
                await self.error("invalid_value", "Error committing input text buffer: empty.")
                return
            await self.send("input_text_buffer.committed", item_id=f"item_{uuid.uuid4().hex[:8]}")
            self._commit()
        elif kind == "input_text_buffer.clear":
            self.buffer = ""
        elif kind == "response.cancel":
            await self._cancel()

    async def finish_session(self) -> bool:
        if self.buffer.strip():
            self._commit()
        self.finishing = True
        self._wake()
        return False

    def closed(self) -> None:
        if self.speaker is not None and not self.speaker.done() and not self.ending:
            self.production.stop("closed")
            self.speaker.cancel()

    def _commit(self) -> None:
        text, self.buffer = self.buffer.strip(), ""
        self.waiting.append(text)
        self._wake()

    def _wake(self) -> None:
        if self.speaker is None or self.speaker.done():
            self.speaker = asyncio.create_task(self._speak())

    async def _speak(self) -> None:
        try:
            while self.waiting:
                await self._respond(self.waiting.popleft())
            if self.finishing:
                production = self.session.production
                if production is not None and production.stopped_at is None:
                    production.finished = True  # all of it spoken, not cut by a cancel
                self.ending = True
                await self.send("session.finished")
                self.session.finished = True
                await self.ws.close()
        except (_Stop, ConnectionClosed):
            pass

    async def _cancel(self) -> None:
        """response.cancel: stop speaking now, drop the committed text still waiting."""
        self.production.stop("cancel")
        self.waiting.clear()
        if self.speaker is not None and not self.speaker.done():
            self.speaker.cancel()
            await asyncio.gather(self.speaker, return_exceptions=True)
        if self.speaking is not None:
            response, self.speaking = self.speaking, None
            await self.send("response.done", response={**response, "status": "cancelled"})
        if self.finishing:
            self._wake()  # session.finished, as after the last response

    async def _respond(self, text: str) -> None:
        if self.fault == "error":
            await self.error()
            return
        if self.responses == 0 and self.fake.delay:
            await asyncio.sleep(self.fake.delay)
        self.responses += 1
        self.session.synthesized.append(text)
        response_id = f"resp_{uuid.uuid4().hex[:8]}"
        item_id = f"item_{uuid.uuid4().hex[:8]}"
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        response = {"id": response_id, "object": "realtime.response", "status": "in_progress"}
        self.speaking = response
        await self.send("response.created", response=response)
        item = {"id": item_id, "type": "message", "role": "assistant", "status": "in_progress"}
        await self.send("response.output_item.added", response_id=response_id, item=item)
        await self.send("response.content_part.added", **where, content_index=0)
        rate = int(self.config.get("sample_rate", 24000))
        audio = FakeDashScope.tts_audio_for(text, rate)
        for offset in range(0, len(audio), TTS_DELTA_BYTES):
            chunk = audio[offset : offset + TTS_DELTA_BYTES]
            delta = base64.b64encode(chunk).decode("ascii")
            kind = "response.audio.delta"
            message = {"event_id": _event_id(), "type": kind, **where, "content_index": 0}
            await self.fake._send_audio(
                self.ws,
                json.dumps({**message, "delta": delta}),
                first=self.outputs == 0,
                production=self.production,
                pcm_bytes=len(chunk),
                seconds=len(chunk) / (2 * rate),
            )
            self.session.server_events.append(kind)
            await self.output_sent()
        self.speaking = None
        await self.send("response.audio.done", **where, content_index=0)
        await self.send("response.content_part.done", **where, content_index=0)
        await self.send("response.output_item.done", response_id=response_id, item=item)
        usage = {"characters": len(text)}
        done = {**response, "status": "completed", "usage": usage}
        await self.send("response.done", response=done)


class FakeDashScopeRealtime(ThreadedFake):
    """Serves ``ws://127.0.0.1:PORT/api-ws/v1/realtime?model=M`` (a model with "asr" in its
    name is a recognition session, anything else a synthesis session); ``fault`` may change
    at any time.

    Faults: "refuse" stops listening; "auth" answers the handshake with HTTP 401; "error"
    answers an error event instead of each result; "failed" (ASR) a failed transcription;
    "stall" answers session.update, then nothing; "drop" cuts the TCP connection without a
    close frame after the first partial transcript / audio delta; "garbage" sends a non-JSON
    text frame after it, then goes on. A session keeps the fault in force at its first
    session.update (so a connection opened earlier, healthy, meets the fault then).
    """

    FAULTS = FAULTS
    NAME = "dashscope-realtime"
    DESCRIPTION = "Fake DashScope realtime websocket endpoint"
    SERVE_OPTIONS: ClassVar[dict[str, Any]] = {"close_timeout": 1}

    def __init__(
        self,
        *,
        api_key: str = "test-dashscope-key",
        transcript: str | list[str] = "打开客厅的灯。",
        delay: float = 0.0,
        port: int = 0,
        pace: float = 0.0,
    ) -> None:
        super().__init__(delay=delay, port=port, pace=pace)
        self.api_key = api_key
        # A str: every turn's transcript; a list: turn N of a session gets item N ("" after).
        self.transcript = transcript
        self.spoken_language = "zh"  # what a session that names no language is identified as
        self.sessions: list[FakeSession] = []  # per accepted connection, in order
        self.requests: list[FakeSession] = []  # in the order of their first session.update

    # --- public API ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """The realtime URL without the query (the SDK appends ``?model=``)."""
        return f"{self._origin}{PATH}"

    def transcript_for(self, turn: int) -> str:
        if isinstance(self.transcript, str):
            return self.transcript
        return self.transcript[turn] if turn < len(self.transcript) else ""

    def close_connections(self) -> None:
        """Close every open connection normally, as a server ending idle sessions does."""
        self._call(self._close_connections())

    # --- connections ---------------------------------------------------------------

    def _ready_url(self) -> str:
        return self.url

    @classmethod
    def _add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--transcript", default="打开客厅的灯。")

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path != PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, "no such endpoint\n")
        if not parse_qs(url.query).get("model"):
            return connection.respond(HTTPStatus.BAD_REQUEST, "Model is required.\n")
        authorization = request.headers.get("Authorization", "")
        if self._fault == "auth" or authorization != f"Bearer {self.api_key}":
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Invalid API-key provided.\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        model = parse_qs(urlsplit(ws.request.path).query)["model"][0]
        session = FakeSession(len(self.sessions) + 1, model, time.monotonic())
        self.sessions.append(session)
        kind = _Recognition if "asr" in model else _Synthesis
        await kind(self, ws, session).run()

    async def _close_connections(self) -> None:
        connections = list(self._connections)
        await asyncio.gather(*(ws.close(1000, "idle timeout") for ws in connections))


main = FakeDashScopeRealtime.main

if __name__ == "__main__":
    main()
