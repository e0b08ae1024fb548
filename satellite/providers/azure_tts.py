"""Text-to-speech with Azure Speech: streamed text is spoken sentence by sentence."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from xml.sax.saxutils import escape, quoteattr

import azure.cognitiveservices.speech as speechsdk

from ..audio.pcm import AudioFormat
from ..bridge import CallbackQueue, run_blocking, run_blocking_detached
from ..errors import ErrorCode, ProviderError
from ..provider_specs.azure import AzureConfig, AzureTts
from .azure_common import Cancellation, SdkEvent, speech_config
from .base import (
    CallClock,
    Credentials,
    Deadlines,
    EncodedAudio,
    SynthesisOptions,
    TtsProvider,
    Voice,
)
from .text import SentenceSplitter, WholeText
from .warm_pool import WarmPool

_WHAT = "Azure TTS"
_FORMATS = {
    8000: speechsdk.SpeechSynthesisOutputFormat.Raw8Khz16BitMonoPcm,
    16000: speechsdk.SpeechSynthesisOutputFormat.Raw16Khz16BitMonoPcm,
    22050: speechsdk.SpeechSynthesisOutputFormat.Raw22050Hz16BitMonoPcm,
    24000: speechsdk.SpeechSynthesisOutputFormat.Raw24Khz16BitMonoPcm,
    44100: speechsdk.SpeechSynthesisOutputFormat.Raw44100Hz16BitMonoPcm,
    48000: speechsdk.SpeechSynthesisOutputFormat.Raw48Khz16BitMonoPcm,
}
_Format = speechsdk.SpeechSynthesisOutputFormat
# What the service encodes itself, by sample rate.
_ENCODED_FORMATS = {
    EncodedAudio.MP3: {
        16000: _Format.Audio16Khz32KBitRateMonoMp3,
        24000: _Format.Audio24Khz48KBitRateMonoMp3,
        48000: _Format.Audio48Khz96KBitRateMonoMp3,
    },
    EncodedAudio.OGG_OPUS: {
        16000: _Format.Ogg16Khz16BitMonoOpus,
        24000: _Format.Ogg24Khz16BitMonoOpus,
        48000: _Format.Ogg48Khz16BitMonoOpus,
    },
}
_MAX_IDLE = 4  # connected synthesizers kept for the next requests (more if warm_connections says)


def voice_locale(voice: str) -> str:
    """The locale of a voice name: everything before its last part (zh-CN-XiaoxiaoNeural)."""
    return voice.rsplit("-", 1)[0]


def describe_voice(voice: str) -> Voice:
    locale = voice_locale(voice)
    speaker = voice.rsplit("-", 1)[-1].removesuffix("Neural") or voice
    return Voice(name=voice, languages=(locale,), description=f"{speaker} ({locale})")


def build_ssml(text: str, voice: str, tts: AzureTts) -> str:
    """SSML speaking plain ``text`` with the configured prosody and style."""
    body = escape(text)
    prosody = {"rate": tts.rate, "pitch": tts.pitch, "volume": tts.volume}
    attributes = "".join(f" {name}={quoteattr(v)}" for name, v in prosody.items() if v)
    if attributes:
        body = f"<prosody{attributes}>{body}</prosody>"
    if tts.style:
        express = {"style": tts.style, "styledegree": tts.styledegree, "role": tts.role}
        attributes = "".join(
            f" {name}={quoteattr(f'{v:g}' if isinstance(v, float) else v)}"
            for name, v in express.items()
            if v is not None
        )
        body = f"<mstts:express-as{attributes}>{body}</mstts:express-as>"
    return (
        '<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" '
        f'xmlns:mstts="https://www.w3.org/2001/mstts" xml:lang={quoteattr(voice_locale(voice))}>'
        f"<voice name={quoteattr(voice)}>{body}</voice></speak>"
    )


class _Sink:
    """Where a synthesizer's callbacks deliver: the queue of the request using it.

    The callbacks hold this object, never the synthesizer: a reference cycle would let the
    garbage collector free the synthesizer on whichever thread it happens to run.
    """

    def __init__(self) -> None:
        self.events: CallbackQueue[SdkEvent] | None = None
        self.connected = False

    def put(self, event: SdkEvent) -> None:
        if event.kind in ("connected", "disconnected"):
            self.connected = event.kind == "connected"
        if self.events is not None:
            self.events.put(event)


def _cancellation(e: speechsdk.SpeechSynthesisEventArgs) -> Cancellation:
    details = e.result.cancellation_details
    return Cancellation(details.reason, details.error_code, details.error_details or "")


class _Synthesizer:
    """A SpeechSynthesizer and its sink. The SDK keeps the connection between requests, and
    connects again by itself if the service has closed it meanwhile."""

    def __init__(self, config: speechsdk.SpeechConfig) -> None:
        self.sink = _Sink()
        self.synthesizer: speechsdk.SpeechSynthesizer | None = speechsdk.SpeechSynthesizer(
            speech_config=config, audio_config=None
        )
        self.connection: speechsdk.Connection | None = speechsdk.Connection.from_speech_synthesizer(
            self.synthesizer
        )
        self.pending: speechsdk.ResultFuture | None = None  # the request being spoken
        self._closed = False
        put = self.sink.put
        self.connection.connected.connect(lambda _: put(SdkEvent("connected")))
        self.connection.disconnected.connect(lambda _: put(SdkEvent("disconnected")))
        self.synthesizer.synthesizing.connect(
            lambda e: put(SdkEvent("audio", audio=e.result.audio_data))
        )
        self.synthesizer.synthesis_completed.connect(lambda _: put(SdkEvent("done")))
        self.synthesizer.synthesis_canceled.connect(
            lambda e: put(SdkEvent("canceled", cancellation=_cancellation(e)))
        )

    @property
    def ready(self) -> bool:
        """Not freed, and not speaking: the next request may use it."""
        return not self._closed and self.pending is None

    def open(self) -> None:
        """Start connecting now rather than at the first request; ``connected`` follows."""
        assert self.connection is not None
        self.connection.open(for_continuous_recognition=False)

    def speak(self, ssml: str, events: CallbackQueue[SdkEvent]) -> None:
        """Start speaking (returns at once); events go to ``events``."""
        assert self.synthesizer is not None
        self.sink.events = events
        self.pending = self.synthesizer.speak_ssml_async(ssml)

    def close(self) -> None:
        """Stop speaking and free the native objects, on a pool thread (non-blocking)."""
        if not self._closed:
            self._closed = True
            run_blocking_detached(self._release)

    def _release(self) -> None:
        """Blocking: the native objects' last references are dropped on this (pool) thread."""
        synthesizer, self.synthesizer = self.synthesizer, None
        pending, self.pending = self.pending, None
        self.connection = None
        if synthesizer is not None and pending is not None:
            synthesizer.stop_speaking_async().get()
            pending.get()  # an unresolved request would keep the synthesizer's threads alive


class _Call:
    """One ``synthesize`` call: its deadlines and the synthesizer it speaks with, a kept one
    for PCM, or one of its own for an encoded ``output_format``."""

    def __init__(
        self,
        provider: AzureTtsProvider,
        limits: Deadlines,
        key: str,
        output_format: speechsdk.SpeechSynthesisOutputFormat | None,
    ) -> None:
        self._provider = provider
        self._limits = limits
        self._key = key
        self._output_format = output_format
        self._clock: CallClock | None = None
        self._events: CallbackQueue[SdkEvent] | None = None
        self._synth: _Synthesizer | None = None
        self._reached = False  # the service answered the request being spoken

    def start(self, ssml: str) -> None:
        if self._clock is None:  # the clock starts when the provider is first contacted
            self._clock = CallClock(self._limits)
            self._events = CallbackQueue()
        assert self._events is not None
        if self._synth is None and self._output_format is not None:
            self._synth = self._provider.new_synthesizer(self._output_format)
        elif self._synth is None:
            self._synth = self._provider.take_synthesizer()
        self._reached = False
        self._synth.speak(ssml, self._events)

    async def next_audio(self) -> bytes | None:
        """The next chunk of the request being spoken; None once it is complete."""
        assert self._clock is not None and self._events is not None and self._synth is not None
        while True:
            connected = self._reached or self._synth.sink.connected
            phase = self._clock.deadlines.first_result
            if not connected:
                phase = self._clock.deadlines.connect
            try:
                event = await self._events.get(self._clock.limit(phase))
            except TimeoutError:
                raise self._timeout(phase, connected) from None
            if event.kind in ("audio", "connected"):
                self._reached = True
                if event.audio:
                    return event.audio
            elif event.kind == "canceled":
                assert event.cancellation is not None
                raise event.cancellation.error(_WHAT, self._reached, self._key)
            elif event.kind == "done":
                pending, self._synth.pending = self._synth.pending, None
                if pending is not None:
                    await run_blocking(pending.get)
                return None

    def _timeout(self, phase: float, connected: bool) -> ProviderError:
        assert self._clock is not None
        if connected or self._clock.limit(phase) <= 0:
            return self._clock.timeout_error(_WHAT, phase)
        return ProviderError(ErrorCode.CONNECT_FAILED, f"{_WHAT}: no connection within {phase:g} s")

    def close(self) -> None:
        """Give the synthesizer back: kept for later calls if idle, stopped and freed if busy."""
        synth, self._synth = self._synth, None
        if synth is None:
            return
        synth.sink.events = None
        if self._output_format is None:  # the pool's: it keeps it if idle, frees it if busy
            self._provider.give_back(synth)
        else:  # an encoded request's own synthesizer
            synth.close()


class AzureTtsProvider(TtsProvider):
    name = "azure"

    def __init__(
        self, config: AzureConfig, credentials: Credentials, default_voice: str | None
    ) -> None:
        self._config = config
        self._credentials = credentials
        self._voice = default_voice or config.tts.voice
        self.model = "azure-neural"
        self.audio_format = AudioFormat(rate=config.tts.sample_rate, width=2, channels=1)
        names = dict.fromkeys((self._voice, *config.tts.voices))
        self.voices = tuple(describe_voice(name) for name in names)
        # Kept between requests: the SDK keeps their connections, so none expires.
        self._pool = WarmPool(
            "Azure TTS connection",
            config.warm_connections,
            functools.partial(run_blocking, self._new_synthesizer),
            self._connect,
            keep=max(_MAX_IDLE, config.warm_connections),
        )

    async def prepare(self) -> None:
        """Connect ``warm_connections`` synthesizers ahead of the first requests (none without
        a host, or a region and a key: requests report what is missing)."""
        if self._config.host or (self._config.region and self._credentials.key):
            await self._pool.fill()

    async def _connect(self, synth: _Synthesizer) -> None:
        events: CallbackQueue[SdkEvent] = CallbackQueue()
        synth.sink.events = events
        timeout = self._config.timeouts.connect
        try:
            await run_blocking(synth.open)
            event = await events.get(timeout)  # connected, or disconnected: nothing else comes
        except TimeoutError:  # e.g. a rejected key: the SDK reports why only to a request
            raise self._connect_failed(f"no connection within {timeout:g} s") from None
        except RuntimeError as exc:  # what the SDK raises when a native call fails
            raise self._connect_failed(exc) from None
        finally:
            synth.sink.events = None
        if event.kind != "connected":
            raise self._connect_failed("the service closed the connection")

    @staticmethod
    def _connect_failed(detail: object) -> ProviderError:
        return ProviderError(ErrorCode.CONNECT_FAILED, f"{_WHAT}: {detail}")

    async def synthesize(
        self, text: AsyncIterator[str], options: SynthesisOptions
    ) -> AsyncIterator[bytes]:
        documents = self._documents(text, options, options.voice or self._voice)
        async for audio in self._speak(documents, None):
            yield audio

    def encoded_formats(self) -> frozenset[EncodedAudio]:
        rate = self.audio_format.rate
        return frozenset(kind for kind, rates in _ENCODED_FORMATS.items() if rate in rates)

    async def synthesize_encoded(
        self, text: str, options: SynthesisOptions, encoding: EncodedAudio
    ) -> AsyncIterator[bytes]:
        """The whole text in one SSML document: one request, so one stream."""
        voice = options.voice or self._voice
        ssml = text if options.ssml else build_ssml(text, voice, self._config.tts)
        output_format = _ENCODED_FORMATS[encoding][self.audio_format.rate]
        async for audio in self._speak(WholeText(ssml), output_format):
            yield audio

    async def _speak(
        self,
        documents: AsyncIterator[str],
        output_format: speechsdk.SpeechSynthesisOutputFormat | None,
    ) -> AsyncIterator[bytes]:
        """The audio of each SSML document in turn (PCM unless ``output_format`` says)."""
        limits = Deadlines.from_timeouts(self._config.timeouts)
        call = _Call(self, limits, self._credentials.key, output_format)
        try:
            async with contextlib.aclosing(documents):
                async for ssml in documents:
                    call.start(ssml)
                    while (audio := await call.next_audio()) is not None:
                        yield audio
        finally:
            call.close()

    async def _documents(
        self, text: AsyncIterator[str], options: SynthesisOptions, voice: str
    ) -> AsyncIterator[str]:
        """SSML documents to speak, each as soon as its text is complete."""
        if options.ssml:
            document = "".join([piece async for piece in text])
            if document.strip():
                yield document
            return
        splitter = SentenceSplitter()
        async for piece in text:
            for sentence in splitter.feed(piece):
                yield build_ssml(sentence, voice, self._config.tts)
        for sentence in splitter.flush():
            yield build_ssml(sentence, voice, self._config.tts)

    def take_synthesizer(self) -> _Synthesizer:
        """An idle kept synthesizer, else a new one. Built on the event loop: the SDK's
        constructor only sets up native objects (0.1-0.5 ms here); it connects later."""
        synth = self._pool.take()
        if synth is None:
            synth = self._new_synthesizer()
            self._pool.adopt(synth)
        return synth

    def _new_synthesizer(self) -> _Synthesizer:
        return self.new_synthesizer(_FORMATS[self.audio_format.rate])

    def new_synthesizer(self, output_format: speechsdk.SpeechSynthesisOutputFormat) -> _Synthesizer:
        """A synthesizer producing ``output_format``, not yet connected."""
        config = speech_config(self._config, self._credentials)
        config.set_speech_synthesis_output_format(output_format)
        if self._config.tts.endpoint_id:
            config.endpoint_id = self._config.tts.endpoint_id
        # Without this the SDK waits 40 s for a silent service, then retries once.
        timeouts = self._config.timeouts
        first_chunk_ms = int((timeouts.connect + timeouts.first_result + 1) * 1000)
        config.set_property_by_name("SpeechSynthesis_FirstChunkTimeoutMs", str(first_chunk_ms))
        return _Synthesizer(config)

    def give_back(self, synth: _Synthesizer) -> None:
        self._pool.give_back(synth)

    async def close(self) -> None:
        await self._pool.close()
