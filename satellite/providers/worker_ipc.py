"""The messages between the daemon and its provider workers: length-prefixed frames.

Each frame is a 4-byte big-endian length and a pickled tuple ``(kind, request id, ...)``.
Pickle is safe here: both ends are this program, over a socket pair only they hold.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from dataclasses import dataclass
from typing import Any

from ..logs import LogFormat

_LENGTH = struct.Struct(">I")
# Far above any message (audio chunks are kilobytes); a larger length means a broken peer.
MAX_FRAME_BYTES = 64 * 1024 * 1024
# A message between the daemon and a worker launcher (a few words; a pid, a return code).
MAX_LAUNCHER_MESSAGE_BYTES = 4096

Message = tuple[Any, ...]


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to build its provider, sent as the first message (the key goes
    through the socket, never the command line or the environment of a new process)."""

    provider: str  # its name in the provider table, as the log names the worker
    section: Any  # the provider's config section
    credentials: Any  # base.Credentials
    roles: dict[str, str | None]  # "asr", "tts" -> the role's language or voice
    log_level: str
    log_format: LogFormat


def process_title(provider: str, role: str) -> str:
    """How ``ps`` and ``systemctl status`` name a provider's worker or its launcher."""
    return f"voice-satellite {provider} {role}"


def encode(message: Message) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


async def read_message(reader: asyncio.StreamReader) -> Message | None:
    """The next message, or None when the peer has closed its end (or died)."""
    try:
        header = await reader.readexactly(_LENGTH.size)
        (length,) = _LENGTH.unpack(header)
        if length > MAX_FRAME_BYTES:
            return None
        return pickle.loads(await reader.readexactly(length))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
