"""What every config section shares: the frozen model base, provider deadlines and URL checks.

The provider sections (provider_specs/) and the config schema (config.py) both build on it,
so a provider's section can live with its provider without importing the whole schema.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Seconds = Annotated[float, Field(gt=0, le=3600)]
# Connections a provider opens ahead of requests, per role (0: connect on demand).
WarmConnections = Annotated[int, Field(ge=0, le=8)]

# speech.asr.language: identify the language among the configured ones.
AUTO_LANGUAGE = "auto"


class Timeouts(Model):
    """Deadlines of every provider call, in seconds."""

    connect: Seconds = 5.0
    first_result: Seconds = 10.0
    total: Seconds = 60.0


def check_ws_url(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("ws", "wss") or not parsed.hostname:
        raise ValueError("expected a websocket URL, ws://HOST[:PORT]/PATH or wss://...")
    return value


def check_http_url(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("expected an HTTP URL, https://HOST[:PORT]/PATH or http://...")
    return value
