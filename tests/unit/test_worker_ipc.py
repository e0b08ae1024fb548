"""The daemon's messages to and from its provider workers, and how a worker's end is named."""

from __future__ import annotations

import asyncio
import struct

from satellite.providers.launcher import exit_reason
from satellite.providers.worker_ipc import MAX_FRAME_BYTES, encode, read_message


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_messages_come_out_as_they_went_in_then_none_at_the_end() -> None:
    audio = bytes(range(256)) * 40
    reader = reader_of(encode(("audio", 7, audio)) + encode(("end", 7)))
    assert await read_message(reader) == ("audio", 7, audio)
    assert await read_message(reader) == ("end", 7)
    assert await read_message(reader) is None


async def test_a_message_cut_short_or_announcing_too_much_reads_as_the_end() -> None:
    assert await read_message(reader_of(encode(("end", 1))[:-2])) is None
    assert await read_message(reader_of(struct.pack(">I", MAX_FRAME_BYTES + 1))) is None


def test_a_workers_end_is_named_by_its_signal_or_status() -> None:
    assert exit_reason(-11) == "SIGSEGV"
    assert exit_reason(-9) == "SIGKILL"
    assert exit_reason(-6) == "SIGABRT"
    assert exit_reason(3) == "exit status 3"
