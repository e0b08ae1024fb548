"""Speech to text with DashScope realtime recognition (paraformer) over its websocket API.

The SDK's ``Recognition`` accepts ``api_key`` and ``base_address`` per call (they travel through
its ``**kwargs`` to the request builder), so no SDK global is touched here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Generator
from typing import Any

from dashscope.audio.asr import Recognition, RecognitionCallback, RecognitionResult
from dashscope.common.constants import WEBSOCKET_ERROR_CODE
from dashscope.common.error import InvalidParameter, InvalidTask

from ..audio.pcm import AudioFormat
from ..bridge import CallbackQueue, run_blocking, run_blocking_detached
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
from .dashscope_common import Failures, SdkCalls, asr_languages, language_hints
from .text import Hypothesis

# How long a cancelled session may take to finish gracefully before its socket is cut.
CANCEL_GRACE_SECONDS = 2.0


Event = tuple[str, Any]  # ("started" | "partial" | "final" | "complete" | "error", value)


class _Callback(RecognitionCallback):
    """Runs on SDK threads: hands everything to the session's queue."""

    def __init__(self, events: CallbackQueue[Event]) -> None:
        self._events = events

    def on_event(self, result: RecognitionResult) -> None:
        sentence = result.get_sentence()
        if not isinstance(sentence, dict):
            return
        ended = RecognitionResult.is_sentence_end(sentence) or sentence.get("sentence_end") is True
        self._events.put(("final" if ended else "partial", sentence.get("text") or ""))

    def on_complete(self) -> None:
        self._events.put(("complete", None))

    def on_error(self, result: RecognitionResult) -> None:
        self._events.put(("error", (result.status_code, result.code, result.message)))


class _Recognition(Recognition):
    """A Recognition that reports task-started and can be cut off.

    The SDK pulls audio from ``_input_stream_cycle`` right after task-started, inside the
    event loop of its own websocket thread. The first pull is the only sign that the task
    has started, and that loop is the only handle on the socket: ``stop()`` alone waits for
    the server forever, so a stalled task is ended by cancelling the loop's tasks.
    """

    def __init__(self, events: CallbackQueue[Event], **kwargs: Any) -> None:
        super().__init__(callback=_Callback(events), **kwargs)
        self._events = events
        self._sdk_loop: asyncio.AbstractEventLoop | None = None

    def _input_stream_cycle(self) -> Generator[Any, None, None]:
        self._sdk_loop = asyncio.get_running_loop()
        self._events.put(("started", None))
        yield from super()._input_stream_cycle()

    def stop_quietly(self) -> None:
        """Blocking: finish the task (after a failure the SDK has stopped already)."""
        with contextlib.suppress(InvalidParameter):
            self.stop()
        self._drop_silence_timer()

    def abort(self) -> None:
        """Non-blocking: close the socket now."""
        self._drop_silence_timer()
        loop = self._sdk_loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the SDK has closed its loop: done already
                loop.call_soon_threadsafe(_cancel_tasks, loop)

    def _drop_silence_timer(self) -> None:
        """The SDK's 23 s silence timer is a non-daemon thread that outlives a failed task."""
        timer = self._silence_timer
        if timer is not None:
            timer.cancel()


def _cancel_tasks(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()


class DashScopeAsrSession(AsrSession):
    """One recognition task; SDK events arrive through ``events`` in the order they happened."""

    def __init__(
        self,
        recognition: _Recognition,
        events: CallbackQueue[Event],
        clock: CallClock,
        failures: Failures,
        on_partial: PartialCallback | None,
    ) -> None:
        self._recognition = recognition
        self._events = events
        self._clock = clock
        self._failures = failures
        self._calls = SdkCalls()
        self._hypothesis = Hypothesis(on_partial)
        self._started = False
        self._failure: ProviderError | None = None
        self._ended = False  # stop() requested: no more audio

    async def start(self) -> None:
        """Connect, within the connect deadline."""
        # InvalidTask: the task ended (task-failed, refused key...) before start() looked at
        # it. The error event it sent says why, and is read below like any other.
        with contextlib.suppress(InvalidTask):
            await run_blocking(self._calls.run, self._recognition.start)
        connect = self._clock.deadlines.connect
        while not self._started:
            try:
                event = await self._events.get(self._clock.limit(connect))
            except TimeoutError:
                raise self._failures.connect_timeout(self._clock) from None
            self._handle(event)

    async def send(self, pcm: bytes) -> None:
        while (event := self._events.get_nowait()) is not None:
            self._handle(event)
        if self._failure is not None:
            raise self._failure
        if self._clock.limit(self._clock.deadlines.total) <= 0:
            raise self._fail(self._failures.timeout(self._clock, self._clock.deadlines.total))
        if pcm and not self._ended:
            # Only queues the frame (never blocks); after a failure the SDK refuses it and
            # the failure event, already on its way, is raised by the next call.
            with contextlib.suppress(InvalidParameter):
                self._recognition.send_audio_frame(pcm)

    async def finish(self) -> AsrResult:
        if self._failure is not None:
            raise self._failure
        self._end()
        first_result = self._clock.deadlines.first_result
        deadline = time.monotonic() + first_result
        while True:
            try:
                event = await self._events.get(self._clock.limit(deadline - time.monotonic()))
            except TimeoutError:
                self._recognition.abort()
                raise self._fail(self._failures.timeout(self._clock, first_result)) from None
            try:
                if self._handle(event):
                    return self._hypothesis.result
            except ProviderError:
                self._recognition.abort()
                raise

    async def cancel(self) -> None:
        if not self._ended:
            self._end()
            asyncio.get_running_loop().call_later(CANCEL_GRACE_SECONDS, self._recognition.abort)

    def _end(self) -> None:
        """Stop sending: the SDK sends finish-task and waits for the results in the pool."""
        self._ended = True
        run_blocking_detached(self._calls.close, self._recognition.stop_quietly)

    def _handle(self, event: Event) -> bool:
        """Apply one SDK event; True once the task has finished."""
        kind, value = event
        if kind == "started":
            self._started = True
        elif kind == "partial":
            self._hypothesis.partial(value)
        elif kind == "final":
            self._hypothesis.final(value)
        elif kind == "error":
            raise self._fail(self._error(*value))
        return kind == "complete"

    def _fail(self, error: ProviderError) -> ProviderError:
        self._failure = error
        return error

    def _error(self, status: object, code: object, message: object) -> ProviderError:
        if status in (401, 403):
            return self._failures.auth(status)
        if status == WEBSOCKET_ERROR_CODE:  # a task-failed event
            return self._failures.task_failed(code, message)
        if not self._started:
            return self._failures.connect(message)
        return self._failures.lost(message)


class DashScopeAsrProvider(AsrProvider):
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

    async def open(
        self, language: str | None, on_partial: PartialCallback | None = None
    ) -> AsrSession:
        key = self._credentials.require("DashScope")
        clock = CallClock(self._deadlines)
        parameters: dict[str, Any] = {}
        hints = language_hints(language, self.languages, self._identify)
        if hints:
            parameters["language_hints"] = hints
        parameters.update(self._config.asr.recognition_parameters)
        parameters.update(self._config.asr.parameters)  # explicit configuration wins
        events: CallbackQueue[Event] = CallbackQueue()
        recognition = _Recognition(
            events,
            model=self._config.asr.model,
            format="pcm",
            sample_rate=self.input_format.rate,
            api_key=key,
            base_address=self._config.websocket_url,
            request_timeout=self._deadlines.connect,  # bounds the websocket handshake only
            **parameters,
        )
        failures = Failures("recognition", self._config.websocket_url, key)
        session = DashScopeAsrSession(recognition, events, clock, failures, on_partial)
        try:
            await session.start()
        except BaseException:
            await session.cancel()
            raise
        return session
