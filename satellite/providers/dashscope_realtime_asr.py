"""Speech to text with DashScope's Qwen realtime ASR models (qwen3-asr-flash-realtime).

``OmniRealtimeConversation`` takes the key and URL per connection, so no SDK global is touched.
Without turn detection the audio is committed when it ends; with it, the server commits each
turn after a pause, and the transcript joins every turn.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import websocket
from dashscope.audio.qwen_omni import MultiModality, OmniRealtimeConversation
from dashscope.audio.qwen_omni.omni_realtime import TranscriptionParams

from ..audio.pcm import AudioFormat
from ..config_base import AUTO_LANGUAGE
from ..errors import ProviderError
from ..provider_specs.dashscope import DashScopeConfig
from ..provider_specs.dashscope_models import asr_model
from .base import (
    AsrProvider,
    AsrResult,
    AsrSession,
    CallClock,
    Credentials,
    Deadlines,
    PartialCallback,
)
from .dashscope_common import Failures, asr_languages, language_hints
from .dashscope_realtime import (
    RealtimeCallback,
    RealtimeConnection,
    RealtimeServerError,
    RealtimeSessions,
)
from .text import Hypothesis

_TRANSCRIPTION = "conversation.item.input_audio_transcription"


class _Conversation(OmniRealtimeConversation):
    """Reports socket errors and unreadable frames, which the SDK only logs (or raises in its
    websocket thread): a refused connection would otherwise wait out its 5 s connect loop."""

    callback: RealtimeCallback

    def _on_message(self, ws: websocket.WebSocketApp, message: object) -> None:
        self.callback.message(ws, message)

    def _on_error(self, ws: object, error: object) -> None:
        self.callback.socket_error(error)


class QwenRealtimeAsrSession(AsrSession):
    """One utterance on one realtime session; turns are joined in the order they were committed."""

    def __init__(
        self,
        connection: RealtimeConnection,
        clock: CallClock,
        on_partial: PartialCallback | None,
    ) -> None:
        self._connection = connection
        self._clock = clock
        self._hypothesis = Hypothesis(on_partial)
        self._items: list[str] = []  # committed, not yet transcribed, in commit order
        self._transcripts: dict[str, dict[str, Any]] = {}  # completed events by item
        self._uncommitted = False  # audio appended since the last commit
        self._commit_sent = False  # our commit is not yet confirmed
        self._turns_ending = 0  # speech_stopped seen: the server commits that turn next
        self._commit_overtaken = False  # the server committed after our commit was sent
        self._ended = False  # finishing, finished or cancelled: no more audio
        self._released = False  # the connection is being ended or was cut
        self._failure: ProviderError | None = None

    async def send(self, pcm: bytes) -> None:
        self._apply_ready()
        if self._clock.limit(self._clock.deadlines.total) <= 0:
            total = self._clock.deadlines.total
            raise self._fail(self._connection.failures.timeout(self._clock, total))
        if pcm and not self._ended:
            audio = base64.b64encode(pcm).decode("ascii")
            self._connection.call(self._connection.client.append_audio, audio)
            self._uncommitted = True

    async def finish(self) -> AsrResult:
        self._apply_ready()
        self._ended = True
        if self._uncommitted:  # with turn detection: the end of the last turn
            self._connection.call(self._connection.client.commit)
            self._uncommitted, self._commit_sent = False, True
        first_result = self._clock.deadlines.first_result
        deadline = time.monotonic() + first_result
        while self._commit_sent or self._items:
            try:
                event = await self._connection.next_event(
                    self._clock.limit(deadline - time.monotonic())
                )
                self._handle(event)
            except TimeoutError:
                failures = self._connection.failures
                raise self._fail(failures.timeout(self._clock, first_result)) from None
            except RealtimeServerError as exc:
                if not self._commit_overtaken:
                    raise self._fail(exc) from None
                # The server ended the last turn while our commit was on its way: it found
                # nothing left to commit.
                self._commit_sent = self._commit_overtaken = False
            except ProviderError as exc:
                raise self._fail(exc) from None
        self._released = True
        self._connection.end(finish_session=True)
        return self._hypothesis.result

    async def cancel(self) -> None:
        self._ended = True
        if not self._released:
            self._released = True
            self._connection.close()

    def _apply_ready(self) -> None:
        """Handle the events that have arrived; raises the session's failure, if any."""
        if self._failure is None:
            try:
                for event in self._connection.ready_events():
                    self._handle(event)
            except ProviderError as exc:
                self._fail(exc)
        if self._failure is not None:
            raise self._failure

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "input_audio_buffer.speech_stopped":
            self._turns_ending += 1
        elif kind == "input_audio_buffer.committed":
            self._items.append(event.get("item_id", ""))
            if self._turns_ending:  # the server ended a turn: later audio needs a commit
                self._turns_ending -= 1
                self._uncommitted = False
                self._commit_overtaken = self._commit_sent
            else:  # ours
                self._commit_sent = self._commit_overtaken = False
        elif kind == f"{_TRANSCRIPTION}.text":
            self._hypothesis.partial((event.get("text") or "") + (event.get("stash") or ""))
        elif kind == f"{_TRANSCRIPTION}.completed":
            self._transcripts[event.get("item_id", "")] = event
            while self._items and self._items[0] in self._transcripts:
                completed = self._transcripts.pop(self._items.pop(0))
                self._hypothesis.final(
                    completed.get("transcript") or "", language=completed.get("language")
                )
        elif kind == f"{_TRANSCRIPTION}.failed":
            error = event.get("error") or {}
            failures = self._connection.failures
            raise failures.task_failed(error.get("code"), error.get("message"))

    def _fail(self, error: ProviderError) -> ProviderError:
        self._failure = error
        self._ended = self._released = True
        self._connection.close()
        return error


class QwenRealtimeAsrProvider(AsrProvider):
    name = "dashscope"

    def __init__(
        self, config: DashScopeConfig, credentials: Credentials, default_language: str | None
    ) -> None:
        self._config = config
        self._credentials = credentials
        self.model = config.asr.model
        self.input_format = AudioFormat(asr_model(self.model).sample_rate, 2, 1)
        self.languages = asr_languages(default_language, config.asr.languages)
        self._identify = default_language == AUTO_LANGUAGE
        self._deadlines = Deadlines.from_timeouts(config.timeouts)
        failures = Failures("recognition", config.realtime_url, credentials.key)
        self._sessions = RealtimeSessions(
            config.warm_connections, self._client, failures, self._deadlines
        )

    async def open(
        self, language: str | None, on_partial: PartialCallback | None = None
    ) -> AsrSession:
        self._credentials.require("DashScope")
        clock = CallClock(self._deadlines)
        hints = language_hints(language, self.languages, self._identify)
        hint = hints[0] if len(hints) == 1 else None  # None: the model identifies it
        asr = self._config.asr

        def update(conversation: OmniRealtimeConversation) -> None:
            conversation.update_session(
                output_modalities=[MultiModality.TEXT],
                enable_turn_detection=asr.turn_detection,
                turn_detection_silence_duration_ms=asr.turn_detection_silence_ms,
                transcription_params=TranscriptionParams(
                    language=hint, sample_rate=self.input_format.rate, input_audio_format="pcm"
                ),
                **asr.parameters,  # explicit configuration wins
            )

        connection = await self._sessions.acquire(clock, update)
        return QwenRealtimeAsrSession(connection, clock, on_partial)

    async def prepare(self) -> None:
        if self._credentials.key:
            await self._sessions.fill()

    async def close(self) -> None:
        await self._sessions.close()

    def _client(self, callback: RealtimeCallback) -> _Conversation:
        return _Conversation(
            self._config.asr.model,
            callback,
            url=self._config.realtime_url,
            api_key=self._credentials.key,
        )
