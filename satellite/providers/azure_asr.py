"""Speech-to-text with Azure Speech continuous recognition, fed by a push stream."""

from __future__ import annotations

import asyncio
import json

import azure.cognitiveservices.speech as speechsdk

from ..bridge import CallbackQueue, run_blocking, run_blocking_detached
from ..config_base import AUTO_LANGUAGE
from ..errors import ErrorCode, ProviderError
from ..provider_specs.azure import MAX_IDENTIFIED_LOCALES, AzureConfig
from .azure_common import Cancellation, SdkEvent, speech_config
from .base import (
    AsrProvider,
    AsrResult,
    AsrSession,
    CallClock,
    Credentials,
    Deadlines,
    PartialCallback,
)
from .text import Hypothesis

_WHAT = "Azure ASR"
_PROFANITY = {
    "masked": speechsdk.ProfanityOption.Masked,
    "removed": speechsdk.ProfanityOption.Removed,
    "raw": speechsdk.ProfanityOption.Raw,
}
# Continuous recognition cannot switch the SDK to interactive mode: name its endpoint instead.
_INTERACTIVE_PATH = "/speech/recognition/interactive/cognitiveservices/v1"
# How long stopping (and freeing) a recognizer waits for a silent or lost service; the
# SDK's default is 10 s, during which a pool thread is held.
_STOP_TIMEOUT_SECONDS = "1"
_IDENTIFIED = speechsdk.PropertyId.SpeechServiceConnection_AutoDetectSourceLanguageResult


def _best_confidence(result_json: str) -> float | None:
    """NBest[0].Confidence of a detailed recognition result, if it has one."""
    try:
        confidence = json.loads(result_json)["NBest"][0]["Confidence"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return float(confidence) if isinstance(confidence, int | float) else None


def _primary(locale: str) -> str:
    return locale.split("-", 1)[0].lower()


def _same_primary(language: str, locales: tuple[str, ...]) -> str | None:
    return next((loc for loc in locales if _primary(loc) == _primary(language)), None)


def advertised_languages(configured: tuple[str, ...], default: str | None) -> tuple[str, ...]:
    """The configured locales with the default language's locale first."""
    if not default:
        return configured
    preferred = default if default in configured or "-" in default else None
    preferred = preferred or _same_primary(default, configured)
    if preferred is None:
        return configured
    return (preferred, *(loc for loc in configured if loc != preferred))


class AzureAsrProvider(AsrProvider):
    name = "azure"

    def __init__(
        self, config: AzureConfig, credentials: Credentials, default_language: str | None
    ) -> None:
        self._config = config
        self._credentials = credentials
        self.model = f"azure-{config.asr.mode}"
        self.languages = advertised_languages(config.asr.languages, default_language)
        self._identify = default_language == AUTO_LANGUAGE

    def locale_for(self, language: str | None) -> str | None:
        """The locale to recognize for the language HA sent; None: identify it among
        ``languages``."""
        if not language:
            return None if self._identify else self.languages[0]
        if language in self.languages:
            return language
        match = _same_primary(language, self.languages)
        if match:
            return match
        return language if "-" in language else self.languages[0]

    async def open(
        self, language: str | None, on_partial: PartialCallback | None = None
    ) -> AsrSession:
        clock = CallClock(Deadlines.from_timeouts(self._config.timeouts))
        mode = self._config.asr.mode
        config = speech_config(
            self._config, self._credentials, _INTERACTIVE_PATH if mode == "interactive" else None
        )
        locale = self.locale_for(language)
        identify = None
        if locale is None:
            config.set_property(
                speechsdk.PropertyId.SpeechServiceConnection_LanguageIdMode, "Continuous"
            )
            identify = speechsdk.languageconfig.AutoDetectSourceLanguageConfig(
                languages=list(self.languages[:MAX_IDENTIFIED_LOCALES])
            )
        else:
            config.speech_recognition_language = locale
        config.output_format = speechsdk.OutputFormat.Detailed  # for each phrase's confidence
        config.set_profanity(_PROFANITY[self._config.asr.profanity])
        config.set_property_by_name("SPEECH-StopRecognitionTimeoutInSeconds", _STOP_TIMEOUT_SECONDS)
        if mode == "dictation":
            config.enable_dictation()
        asr = self._config.asr
        if asr.endpoint_id:
            config.endpoint_id = asr.endpoint_id
        for prop, value in (
            (speechsdk.PropertyId.SpeechServiceConnection_InitialSilenceTimeoutMs,
             asr.initial_silence_timeout_ms),
            (speechsdk.PropertyId.Speech_SegmentationSilenceTimeoutMs,
             asr.segmentation_silence_timeout_ms),
        ):  # fmt: skip
            if value is not None:
                config.set_property(prop, str(value))
        session = AzureAsrSession(config, identify, clock, self._credentials.key, on_partial)
        await session.start()
        return session


class _Recognition:
    """The SDK objects of one utterance.

    The callbacks hold ``events``, never these objects: a reference cycle would let the
    garbage collector free the recognizer on whichever thread it happens to run.
    """

    def __init__(
        self,
        config: speechsdk.SpeechConfig,
        identify: speechsdk.languageconfig.AutoDetectSourceLanguageConfig | None,
        events: CallbackQueue[SdkEvent],
    ) -> None:
        self.stream = speechsdk.audio.PushAudioInputStream(
            speechsdk.audio.AudioStreamFormat(
                samples_per_second=16000, bits_per_sample=16, channels=1
            )
        )
        self.recognizer: speechsdk.SpeechRecognizer | None = speechsdk.SpeechRecognizer(
            speech_config=config,
            audio_config=speechsdk.audio.AudioConfig(stream=self.stream),
            auto_detect_source_language_config=identify,
        )
        self.connection: speechsdk.Connection | None = speechsdk.Connection.from_recognizer(
            self.recognizer
        )

        def on_recognizing(e: speechsdk.SpeechRecognitionEventArgs) -> None:
            events.put(SdkEvent("recognizing", text=e.result.text.strip()))

        def on_recognized(e: speechsdk.SpeechRecognitionEventArgs) -> None:
            result = e.result
            text = result.text.strip()
            if result.reason == speechsdk.ResultReason.RecognizedSpeech and text:
                confidence = _best_confidence(result.json)
                language = result.properties.get(_IDENTIFIED) or None
                events.put(SdkEvent("recognized", text, confidence=confidence, language=language))

        def on_canceled(e: speechsdk.SpeechRecognitionCanceledEventArgs) -> None:
            details = e.cancellation_details
            cancellation = Cancellation(details.reason, details.code, details.error_details or "")
            events.put(SdkEvent("canceled", cancellation=cancellation))

        self.connection.connected.connect(lambda _: events.put(SdkEvent("connected")))
        self.recognizer.recognizing.connect(on_recognizing)
        self.recognizer.recognized.connect(on_recognized)
        self.recognizer.canceled.connect(on_canceled)
        self.recognizer.session_stopped.connect(lambda _: events.put(SdkEvent("done")))

    def start(self) -> None:
        """Blocking."""
        assert self.recognizer is not None
        self.recognizer.start_continuous_recognition_async().get()

    def release(self) -> None:
        """Blocking: stop recognizing and free the native objects on this (pool) thread.

        After a failure, stopping and freeing each wait the stop timeout.
        """
        recognizer, self.recognizer = self.recognizer, None
        self.connection = None
        if recognizer is not None:
            recognizer.stop_continuous_recognition_async().get()


class AzureAsrSession(AsrSession):
    def __init__(
        self,
        config: speechsdk.SpeechConfig,
        identify: speechsdk.languageconfig.AutoDetectSourceLanguageConfig | None,
        clock: CallClock,
        key: str,
        on_partial: PartialCallback | None,
    ) -> None:
        self._clock = clock
        self._key = key
        self._events: CallbackQueue[SdkEvent] = CallbackQueue()
        self._native: _Recognition | None = _Recognition(config, identify, self._events)
        self._connected = False
        self._ended = False  # the stream was closed
        self._hypothesis = Hypothesis(on_partial)

    async def start(self) -> None:
        """Start recognizing and wait until the service is connected."""
        connect = self._clock.deadlines.connect
        try:
            assert self._native is not None
            async with asyncio.timeout(self._clock.limit(connect)):
                await run_blocking(self._native.start)
                while not self._connected:
                    self._handle(await self._events.get(None))
        except TimeoutError:
            await self.cancel()
            if self._clock.limit(connect) > 0:  # the connect deadline ran out, not the total
                raise ProviderError(
                    ErrorCode.CONNECT_FAILED, f"{_WHAT}: no connection within {connect:g} s"
                ) from None
            raise self._clock.timeout_error(_WHAT, connect) from None
        except BaseException:
            await self.cancel()
            raise

    def _handle(self, event: SdkEvent) -> None:
        """Apply one SDK event; raises the ProviderError of a failure."""
        if event.kind == "connected":
            self._connected = True
        elif event.kind == "recognizing":
            self._hypothesis.partial(event.text)
        elif event.kind == "recognized":
            self._hypothesis.final(event.text, event.confidence, event.language)
        elif event.kind == "canceled":
            assert event.cancellation is not None
            if event.cancellation.reason != speechsdk.CancellationReason.EndOfStream:
                raise event.cancellation.error(_WHAT, self._connected, self._key)
        elif event.kind == "done" and not self._ended:
            raise ProviderError(ErrorCode.PROVIDER_FAILED, f"{_WHAT}: session ended early")

    async def send(self, pcm: bytes) -> None:
        if self._native is None or self._ended:
            return
        try:
            while (event := self._events.get_nowait()) is not None:
                self._handle(event)
            if self._clock.limit(self._clock.deadlines.total) <= 0:
                raise self._clock.timeout_error(_WHAT, self._clock.deadlines.total)
        except ProviderError:
            await self.cancel()
            raise
        self._native.stream.write(pcm)

    async def finish(self) -> AsrResult:
        if self._native is None:
            raise ProviderError(ErrorCode.INTERNAL, f"{_WHAT}: session already closed")
        first_result = self._clock.deadlines.first_result
        self._ended = True
        self._native.stream.close()
        try:
            async with asyncio.timeout(self._clock.limit(first_result)):
                while (event := await self._events.get(None)).kind != "done":
                    self._handle(event)
        except TimeoutError:
            raise self._clock.timeout_error(_WHAT, first_result) from None
        finally:
            await self.cancel()
        return self._hypothesis.result

    async def cancel(self) -> None:
        native, self._native = self._native, None
        if native is not None:
            run_blocking_detached(native.release)
