"""What the Azure recognizer and synthesizer share: SDK configuration and error mapping."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Literal

import azure.cognitiveservices.speech as speechsdk

from ..errors import ErrorCode, ProviderError
from ..provider_specs.azure import AzureConfig
from .base import Credentials

_Code = speechsdk.CancellationErrorCode
_AUTH_CODES = (_Code.AuthenticationFailure, _Code.Forbidden)
_MAX_DETAILS = 300


# How often the SDK's connection loop looks for received messages while a request runs; its
# default of 10 ms adds up to ~10 ms to a transcript. 5 ms takes off most of that for about
# 0.01 CPU-s per second of recognition. Below 2 ms the SDK spins a core for the whole request
# (1 ms: one CPU-second per second of speech), so never lower this to chase milliseconds.
# Synthesis is not affected either way: a connected synthesizer idles at 0.01 CPU-s per second.
_RUN_POLLING_INTERVAL_MS = "5"


def speech_config(
    config: AzureConfig, credentials: Credentials, endpoint_path: str | None = None
) -> speechsdk.SpeechConfig:
    """A SpeechConfig for the configured container host or cloud region.

    ``endpoint_path`` pins the websocket path (e.g. an interactive recognition endpoint),
    which the SDK otherwise derives from the recognition mode.
    """
    config = _endpoint_config(config, credentials, endpoint_path)
    config.set_property_by_name("SPEECH-USPRunPollingInterval", _RUN_POLLING_INTERVAL_MS)
    return config


def _endpoint_config(
    config: AzureConfig, credentials: Credentials, endpoint_path: str | None
) -> speechsdk.SpeechConfig:
    if config.host:
        key = credentials.key or None  # a container may need no key
        if endpoint_path:
            return speechsdk.SpeechConfig(
                endpoint=config.host.rstrip("/") + endpoint_path, subscription=key
            )
        return speechsdk.SpeechConfig(host=config.host, subscription=key)
    if not config.region:
        message = (
            "no Azure Speech region: set the environment variable AZURE_SPEECH_REGION "
            "(providers.azure.region), or providers.azure.host for a Speech container"
        )
        if not credentials.key:
            message += f"; no Azure Speech key: {credentials.hint}"
        raise ProviderError(ErrorCode.MISSING_CREDENTIALS, message)
    key = credentials.require("Azure Speech")
    if endpoint_path:
        domain = "azure.cn" if config.region.startswith("china") else "microsoft.com"
        endpoint = f"wss://{config.region}.stt.speech.{domain}{endpoint_path}"
        return speechsdk.SpeechConfig(endpoint=endpoint, subscription=key)
    return speechsdk.SpeechConfig(subscription=key, region=config.region)


@dataclass(frozen=True)
class Cancellation:
    """Why the SDK canceled a request, copied out of its event on the callback thread."""

    reason: speechsdk.CancellationReason
    code: speechsdk.CancellationErrorCode
    details: str

    def error(self, what: str, connected: bool, key: str) -> ProviderError:
        """The ProviderError for this cancellation; ``connected``: the service was reached."""
        if self.code in _AUTH_CODES:
            code = ErrorCode.AUTH_FAILED
        elif self.code == _Code.ConnectionFailure and not connected:
            code = ErrorCode.CONNECT_FAILED
        elif self.code == _Code.ServiceTimeout:
            code = ErrorCode.TIMEOUT
        else:
            code = ErrorCode.PROVIDER_FAILED
        details = self.details.replace(key, "***") if key else self.details
        # Whole words only: a host name or URL is kept whole or left out, never cut.
        details = textwrap.shorten(details, _MAX_DETAILS, placeholder=" ...")
        return ProviderError(code, f"{what}: {self.code.name}: {details}")


@dataclass(frozen=True)
class SdkEvent:
    """One SDK callback, copied out of the SDK's event object on the callback thread."""

    kind: Literal[
        "connected", "disconnected", "recognizing", "recognized", "audio", "done", "canceled"
    ]
    text: str = ""
    audio: bytes = b""
    cancellation: Cancellation | None = None
    confidence: float | None = None  # recognized: the best hypothesis' confidence
    language: str | None = None  # recognized: the locale identified, when identifying
