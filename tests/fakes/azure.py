"""A fake Azure Speech service speaking the USP websocket protocol, for the real SDK.

Serves speech-to-text (``/speech/recognition/{mode}/cognitiveservices/v1``), text-to-speech
(``/cognitiveservices/websocket/v1``) and the HTTP voice list on ``ws://127.0.0.1:PORT``, the
``host=`` form of ``SpeechConfig``. Runs its own event loop in a background thread, so both
synchronous and asyncio tests can use it.

Each TTS turn is spoken by a task of its own, paced by the fake's ``pace``, while the
connection goes on reading; the client's connection going away stops it, and the turn's
``production`` counts the audio sent after that. A turn whose ``synthesis.context`` asks for
an MP3 or Ogg Opus ``outputFormat`` gets its tone in that encoding, as a live encoder emits
it (frames and pages split across audio messages). Also runnable as a process::

    python -m tests.fakes.azure --port 0 [--delay S] [--fault F] [--pace P]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from tests.fakes.encoded import Container, encoder_for, frames
from tests.fakes.threaded import Production, ThreadedFake

FAULTS = (None, "refuse", "auth", "error", "stall", "drop", "garbage", "corrupt")
STT_PATH = re.compile(
    r"^/speech/recognition/(conversation|interactive|dictation)/cognitiveservices/v1$"
)
TTS_PATH = "/cognitiveservices/websocket/v1"
VOICES_PATH = "/cognitiveservices/voices/list"
RIFF_HEADER_BYTES = 44
TICKS_PER_SECOND = 10_000_000  # USP offsets and durations are in 100 ns ticks
STT_BYTES_PER_SECOND = 32_000  # the SDK streams 16 kHz mono s16le
TTS_FRAME_SECONDS = 0.1
HTTP_LINGER_SECONDS = 0.2
MAX_MESSAGES = 100_000  # bound on the messages read from one connection
GARBAGE = "<html><body>502 Bad Gateway</body></html>"  # no USP headers, no Path
# A binary USP frame whose header length (65535) runs past the end of the frame.
CORRUPT = (0xFFFF).to_bytes(2, "big") + b"X-RequestId:0\r\nPath:audio\r\n"

VOICES = [
    {
        "Name": "Microsoft Server Speech Text to Speech Voice (zh-CN, XiaoxiaoNeural)",
        "DisplayName": "Xiaoxiao",
        "LocalName": "晓晓",
        "ShortName": "zh-CN-XiaoxiaoNeural",
        "Gender": "Female",
        "Locale": "zh-CN",
        "LocaleName": "Chinese (Mandarin, Simplified)",
        "StyleList": ["cheerful", "sad"],
        "SampleRateHertz": "24000",
        "VoiceType": "Neural",
        "Status": "GA",
        "WordsPerMinute": "285",
    },
    {
        "Name": "Microsoft Server Speech Text to Speech Voice (en-US, JennyNeural)",
        "DisplayName": "Jenny",
        "LocalName": "Jenny",
        "ShortName": "en-US-JennyNeural",
        "Gender": "Female",
        "Locale": "en-US",
        "LocaleName": "English (United States)",
        "StyleList": ["cheerful", "chat"],
        "SampleRateHertz": "24000",
        "VoiceType": "Neural",
        "Status": "GA",
        "WordsPerMinute": "152",
    },
]


@dataclass(frozen=True)
class _SttRequest:
    """What a recognition websocket's query asks for."""

    language: str  # "" when the locale comes in speech.context
    detailed: bool  # format=detailed: NBest with confidences instead of DisplayText
    candidate_languages: tuple[str, ...]  # lidEnabled: the locales to identify among

    @classmethod
    def from_query(cls, query: dict[str, list[str]]) -> _SttRequest:
        lid = query.get("lidEnabled", [""])[0]
        return cls(
            language=query.get("language", [""])[0],
            detailed=query.get("format", [""])[0] == "detailed",
            candidate_languages=tuple(lid.split(",")) if lid else (),
        )


def _timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _header_block(path: str, request_id: str, content_type: str | None) -> str:
    lines = [f"X-RequestId:{request_id}", f"X-Timestamp:{_timestamp()}", f"Path:{path}"]
    if content_type:
        lines.append(f"Content-Type:{content_type}")
    return "\r\n".join(lines) + "\r\n"


def _text_message(path: str, request_id: str, body: object) -> str:
    header = _header_block(path, request_id, "application/json; charset=utf-8")
    return f"{header}\r\n{json.dumps(body, ensure_ascii=False)}"


def _audio_message(request_id: str, pcm: bytes) -> bytes:
    header = _header_block("audio", request_id, None).encode("ascii")
    return len(header).to_bytes(2, "big") + header + pcm


def _parse_headers(block: str) -> dict[str, str]:
    headers = {}
    for line in block.split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _parse(message: str | bytes) -> tuple[dict[str, str], str | bytes]:
    """USP headers (lower-cased names) and body of a text or binary frame."""
    if isinstance(message, str):
        block, _, body = message.partition("\r\n\r\n")
        return _parse_headers(block), body
    size = int.from_bytes(message[:2], "big")
    return _parse_headers(message[2 : 2 + size].decode("ascii")), message[2 + size :]


def _ssml_text(ssml: str) -> str:
    """The spoken text of an SSML document: tags removed, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]*>", " ", ssml)).split())


def _ticks(byte_count: int) -> int:
    return byte_count * TICKS_PER_SECOND // STT_BYTES_PER_SECOND


class FakeAzure(ThreadedFake):
    """In-process fake of Azure Speech.

    ``fault`` (settable at any time): "refuse" stops listening; "auth" answers 401 at the
    upgrade (both also cut open connections, which clients keep between requests);
    "error" closes with 1011 after the first audio (STT: received, TTS: sent); "drop"
    resets the TCP connection (STT: at the first audio, TTS: after turn.start); "stall"
    accepts and never answers; "garbage" sends a text frame that is no USP message after
    the first hypothesis (STT) or audio frame (TTS) of a turn, then goes on; "corrupt"
    does the same with a binary frame whose header length runs past its end. A key sent
    that is not ``key`` gets 401; no key is accepted.
    """

    FAULTS = FAULTS
    NAME = "azure"
    DESCRIPTION = "Serve a fake Azure Speech service."
    SERVE_OPTIONS: ClassVar[dict[str, Any]] = {
        "subprotocols": [Subprotocol("USP")],
        "max_size": None,
    }

    def __init__(
        self,
        *,
        key: str = "test-azure-key",
        phrases: Sequence[str] = ("Turn on the light.", "And close the blinds."),
        delay: float = 0.0,
        port: int = 0,
        pace: float = 0.0,
    ) -> None:
        super().__init__(delay=delay, port=port, pace=pace)
        self.key = key
        self.phrases: list[str] = list(phrases)
        self.received_audio: list[bytes] = []
        self.received_ssml: list[str] = []
        self.tts_paths: list[str] = []  # every TTS client message's Path, in order
        self.languages: list[str] = []
        # Detailed output: NBest[0].Confidence of each phrase, in turn.
        self.confidences: list[float] = [0.91, 0.84]
        # Language identification: the language "heard" (None: the first candidate).
        self.spoken_language: str | None = None
        self.output_formats: list[str] = []  # per TTS turn: the outputFormat it was asked for
        self.modes: list[str] = []  # per STT connection: conversation, interactive or dictation
        self.queries: list[dict[str, list[str]]] = []  # per websocket: its URL's query
        self.contexts: list[dict] = []  # STT speech.context messages (recognition settings)
        self.streamed_bytes = 0  # PCM bytes received so far, over all STT turns
        self.handshakes = 0  # HTTP requests seen (websocket upgrades, voice lists), accepted or not
        self.connections = 0  # websocket connections accepted

    @property
    def host(self) -> str:
        return self._origin

    @classmethod
    def _add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--key", default="test-azure-key")

    def _fault_changed(self) -> None:
        """Faults "refuse" and "auth" act at connect, so they also cut the open connections
        (clients keep idle ones) to make clients connect again."""
        if self._fault in ("refuse", "auth"):
            self._drop_all()

    @staticmethod
    def tts_audio_for(ssml_text: str, sample_rate: int) -> bytes:
        """The PCM (s16le mono) sent for one SSML turn: 40 ms of tone per spoken character,
        its pitch depending on the character, so order, loss and duplication show."""
        per_char = int(sample_rate * 0.04)
        t = np.arange(per_char) / sample_rate
        tones = [np.sin(2 * np.pi * (200 + (ord(c) % 64) * 25) * t) for c in _ssml_text(ssml_text)]
        if not tones:
            return b""
        return (np.concatenate(tones) * 8000).astype("<i2").tobytes()

    # --- connections ---------------------------------------------------------

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        self.handshakes += 1
        path = urlsplit(request.path).path
        key = request.headers.get("Ocp-Apim-Subscription-Key")
        authorized = self._fault != "auth" and key in (None, self.key)
        if path == VOICES_PATH:
            if authorized:
                await _answer_http(connection, "200 OK", json.dumps(VOICES))
            else:
                await _answer_http(connection, "401 Unauthorized", json.dumps({"error": "key"}))
            return connection.respond(HTTPStatus.OK, "")  # not sent: the connection is closed
        if path != TTS_PATH and not STT_PATH.match(path):
            return connection.respond(HTTPStatus.NOT_FOUND, "unknown path\n")
        if not authorized:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Access denied due to invalid key\n")
        return None

    def _ready_url(self) -> str:
        return self.host

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        assert ws.request is not None
        url = urlsplit(ws.request.path)
        self.queries.append(parse_qs(url.query))
        if url.path == TTS_PATH:
            await self._serve_tts(ws)
        else:
            mode = STT_PATH.match(url.path)
            self.modes.append(mode.group(1) if mode else "")
            await self._serve_stt(ws, _SttRequest.from_query(parse_qs(url.query)))

    async def _messages(
        self, ws: ServerConnection
    ) -> AsyncIterator[tuple[dict[str, str], str | bytes]]:
        for _ in range(MAX_MESSAGES):
            yield _parse(await ws.recv())

    async def _serve_stt(self, ws: ServerConnection, request: _SttRequest) -> None:
        language = request.language
        if language:
            self.languages.append(language)
        audio: bytearray | None = None  # PCM of the turn in progress
        frames = 0
        async for headers, body in self._messages(ws):
            path = headers.get("path", "").lower()
            request_id = headers.get("x-requestid", "")
            if path == "speech.context":
                self.contexts.append(json.loads(body))
            if path == "speech.context" and not language:
                language = json.loads(body).get("phraseDetection", {}).get("language", "")
                self.languages.append(language)
            if path != "audio" or not isinstance(body, bytes):
                continue
            if audio is None:  # the first frame of a turn is the RIFF header
                audio = bytearray()
                frames = 0
                if self._fault != "stall":
                    await ws.send(_text_message("turn.start", request_id, {"context": {}}))
                if body.startswith(b"RIFF"):
                    body = body[RIFF_HEADER_BYTES:]
                    if not body:
                        continue
            if body:
                audio += body
                self.streamed_bytes += len(body)
                frames += 1
                if self._fault == "stall":
                    continue
                if self._fault == "drop":
                    self._drop(ws)  # TCP reset, no close frame
                    return
                if self._fault == "error":  # the service closes with 1011 when it fails
                    await ws.close(1011, "Internal service error.")
                    return
                await self._stt_progress(ws, request_id, audio, frames)
                continue
            self.received_audio.append(bytes(audio))
            if self._fault != "stall":
                await self._stt_results(ws, request_id, len(audio), request)
            audio = None

    async def _stt_progress(
        self, ws: ServerConnection, request_id: str, audio: bytearray, frames: int
    ) -> None:
        if frames == 1:
            await ws.send(_text_message("speech.startDetected", request_id, {"Offset": 0}))
        if frames % 3 == 1:
            words = " ".join(self.phrases).split()
            hypothesis = {
                "Text": " ".join(words[: 1 + frames // 3]),
                "Offset": 0,
                "Duration": _ticks(len(audio)),
            }
            await ws.send(_text_message("speech.hypothesis", request_id, hypothesis))
            if frames == 1 and self._fault in ("garbage", "corrupt"):
                await ws.send(GARBAGE if self._fault == "garbage" else CORRUPT)

    async def _stt_results(
        self, ws: ServerConnection, request_id: str, audio_bytes: int, request: _SttRequest
    ) -> None:
        await asyncio.sleep(self.delay)
        total = _ticks(audio_bytes)
        await ws.send(_text_message("speech.endDetected", request_id, {"Offset": total}))
        phrases = self.phrases or [""]
        span = total // len(phrases)
        for index, text in enumerate(phrases):
            phrase: dict[str, object] = {"Offset": index * span, "Duration": span}
            if not text:
                phrase.update(RecognitionStatus="NoMatch")
            elif request.detailed:
                best = {"Confidence": self.confidences[index % len(self.confidences)],
                        "Lexical": text.lower().strip(".,?!"), "ITN": text, "MaskedITN": text,
                        "Display": text}  # fmt: skip
                phrase.update(RecognitionStatus="Success", NBest=[best])
            else:
                phrase.update(RecognitionStatus="Success", DisplayText=text)
            if text and request.candidate_languages:
                spoken = self.spoken_language or request.candidate_languages[0]
                phrase["PrimaryLanguage"] = {"Language": spoken, "Confidence": "High"}
            await ws.send(_text_message("speech.phrase", request_id, phrase))
        await ws.send(_text_message("turn.end", request_id, {}))

    async def _serve_tts(self, ws: ServerConnection) -> None:
        output_format = ""
        turns: list[tuple[asyncio.Task[None], Production]] = []
        try:
            async for headers, body in self._messages(ws):
                path = headers.get("path", "").lower()
                self.tts_paths.append(path)
                if path == "synthesis.context" and isinstance(body, str):
                    audio = json.loads(body).get("synthesis", {}).get("audio", {})
                    output_format = audio.get("outputFormat", "")
                elif path == "ssml" and isinstance(body, str):
                    self.received_ssml.append(body)
                    self.output_formats.append(output_format)
                    if self._fault != "stall":
                        production = self._production()
                        previous = turns[-1][0] if turns else None
                        request_id = headers.get("x-requestid", "")
                        turn = self._tts_turn(
                            ws, request_id, body, output_format, production, previous
                        )
                        turns.append((asyncio.create_task(turn), production))
        finally:  # the client's connection went: the service stops speaking
            for task, production in turns:
                if not task.done():
                    production.stop("closed")
                    task.cancel()

    async def _tts_turn(
        self,
        ws: ServerConnection,
        request_id: str,
        ssml: str,
        output_format: str,
        production: Production,
        previous: asyncio.Task[None] | None,
    ) -> None:
        """Speak one turn, after the one before it on this connection."""
        if previous is not None:
            await asyncio.wait([previous])
        with contextlib.suppress(ConnectionClosed):
            await self._speak_turn(ws, request_id, ssml, output_format, production)

    async def _speak_turn(
        self,
        ws: ServerConnection,
        request_id: str,
        ssml: str,
        output_format: str,
        production: Production,
    ) -> None:
        await asyncio.sleep(self.delay)
        await ws.send(_text_message("turn.start", request_id, {"context": {"serviceTag": "fake"}}))
        if self._fault == "drop":  # lost before any audio: clients see only the failure
            self._drop(ws)
            return
        rate = _format_rate(output_format)
        pcm = self.tts_audio_for(ssml, rate)
        encoder = encoder_for(_encoding(output_format), rate)
        step = int(rate * TTS_FRAME_SECONDS) * 2
        for number, (audio, pcm_bytes) in enumerate(frames(pcm, step, encoder, last=True)):
            await self._send_audio(
                ws,
                _audio_message(request_id, audio),
                first=not number,
                production=production,
                pcm_bytes=pcm_bytes,
                seconds=pcm_bytes / (2 * rate),
            )
            if self._fault == "error":  # after some audio, as a service failing mid-turn
                await ws.close(1011, "Internal service error.")
                return
            if self._fault in ("garbage", "corrupt") and not number:
                await ws.send(GARBAGE if self._fault == "garbage" else CORRUPT)
        production.finished = True
        await ws.send(_text_message("turn.end", request_id, {}))


async def _answer_http(connection: ServerConnection, status: str, body: str) -> None:
    """Answer a plain HTTP request and linger before closing: websockets would reset the
    connection right after its own response, and the SDK then reports a read error."""
    data = body.encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    connection.transport.write(head.encode() + data)
    await asyncio.sleep(HTTP_LINGER_SECONDS)
    connection.transport.close()
    await asyncio.sleep(0)  # let the connection see the close, so websockets sends nothing more


def _encoding(output_format: str) -> Container | None:
    """What an ``audio-24khz-48kbitrate-mono-mp3`` or ``ogg-24khz-16bit-mono-opus`` style
    format encodes in (None: PCM, raw or RIFF)."""
    name = output_format.lower()
    if name.endswith("-mp3"):
        return "mp3"
    if name.startswith("ogg-") and name.endswith("-opus"):
        return "ogg-opus"
    return None


def _format_rate(output_format: str) -> int:
    """Sample rate of a ``raw-16khz-16bit-mono-pcm`` style format name (24 kHz if unknown)."""
    match = re.search(r"(\d+)(k?)hz", output_format.lower())
    if not match:
        return 24000
    value = int(match.group(1))
    return value * 1000 if match.group(2) else value


main = FakeAzure.main

if __name__ == "__main__":
    main()
