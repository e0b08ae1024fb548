"""The Wyoming speech endpoint: one handler per client connection, ASR and TTS.

Each event goes to what it belongs to: the ASR requests (asr_request.py), the TTS requests
(tts_request.py), or the endpoint's info. While the endpoint drains, events that would
start a request are refused (requests.py).
"""

from __future__ import annotations

import asyncio

from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from ..errors import ErrorCode
from ..wyoming_handler import GuardedHandler
from .asr_request import AsrRequests
from .requests import ClientRequests, SpeechEndpoint
from .tts_request import TtsRequests


class SpeechHandler(GuardedHandler):
    """Serves one Wyoming client: describe, transcribe, synthesize (plain and streaming)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        endpoint: SpeechEndpoint,
    ) -> None:
        super().__init__(reader, writer)
        self.endpoint = endpoint
        self._requests = ClientRequests(endpoint, self)
        self._asr = AsrRequests(self, self._requests)
        self._tts = TtsRequests(self, self._requests)
        self._told_stopping = False

    async def dispatch(self, event: Event) -> None:
        if self.endpoint.stopping and self._starts_request(event):
            if not self._told_stopping:  # once: the rest of the refused request is dropped
                self._told_stopping = True
                await self.send_error(
                    ErrorCode.SHUTTING_DOWN, "the speech endpoint is shutting down; try again"
                )
            return
        if Describe.is_type(event.type):
            self._asr.described = True
            await self.write_event(self.endpoint.service.info)
        elif Transcribe.is_type(event.type):
            self._asr.set_language(event.data)
        elif AudioStart.is_type(event.type):
            self._asr.start(event.data)
        elif AudioChunk.is_type(event.type):
            await self._asr.add_audio(event)
        elif AudioStop.is_type(event.type):
            self._asr.end()
        elif Synthesize.is_type(event.type):
            self._tts.synthesize(event.data)
        elif SynthesizeStart.is_type(event.type):
            self._tts.start_stream(event.data)
        elif SynthesizeChunk.is_type(event.type):
            await self._tts.add_text(event.data)
        elif SynthesizeStop.is_type(event.type):
            self._tts.stop_stream()
        # Anything else (ping, future events) is ignored, as Wyoming peers expect.

    def _starts_request(self, event: Event) -> bool:
        """Whether ``event`` begins (or belongs to no) request: refused while stopping."""
        kind = event.type
        if AudioStart.is_type(kind) or SynthesizeStart.is_type(kind):
            return True
        if AudioChunk.is_type(kind) or AudioStop.is_type(kind):
            return not self._asr.receiving
        if any(t.is_type(kind) for t in (Synthesize, SynthesizeChunk, SynthesizeStop)):
            return not self._tts.streaming
        return False

    async def disconnect(self) -> None:
        """Cancel whatever this client started; providers release their sessions."""
        await self._requests.cancel_all()
        # The request objects point back at this handler: dropped once the connection is
        # over, its buffers and audio are freed now, not at the next full collection.
        del self._requests, self._asr, self._tts
