"""A microphone for the satellite's ``command`` mic backend: writes raw PCM to stdout in real
time, then silence until it is stopped.

The source is 16 kHz mono s16le. It is written as a sound card delivers it: a piece of
``--piece-ms`` (flushed) each time that much audio has been "captured", paced by
``time.monotonic`` from the start, so piece boundaries fall on multiples of ``--piece-ms``
of the stream. ``--marks`` lists spans of the source (``START_BYTE END_BYTE`` per line, END
exclusive), e.g. wake words: a piece is also cut at each span's start and end, so the end of
a span is written the moment it is "captured", and a line ``INDEX START END`` is then appended
to ``--times``: the wall-clock times (``time.time()``) at which the byte before the span and
its last byte had been written.
Run: python bench/paced_mic.py SOURCE [--marks FILE --times FILE] [--piece-ms MS]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TextIO

RATE = 16000
FRAME_BYTES = 2
BYTES_PER_SECOND = RATE * FRAME_BYTES


def read_marks(path: Path | None) -> list[tuple[int, int]]:
    """The spans of ``path``, in order; empty spans are left out."""
    if path is None:
        return []
    marks = []
    for line in path.read_text().splitlines():
        if line.strip():
            start, end = (int(field) for field in line.split())
            if end > start:
                marks.append((start, end))
    return sorted(marks)


def play(source: bytes, marks: list[tuple[int, int]], times: TextIO | None, piece: int) -> None:
    out = sys.stdout.buffer
    starts: dict[int, list[int]] = {}  # byte offset -> the spans starting there
    ends: dict[int, list[int]] = {}
    for index, (start, end) in enumerate(marks):
        starts.setdefault(start, []).append(index)
        ends.setdefault(end, []).append(index)
    cuts = sorted({*starts, *ends})
    next_cut = 0
    began: dict[int, float] = {index: time.time() for index in starts.get(0, [])}
    started = time.monotonic()
    offset = 0
    while True:
        while next_cut < len(cuts) and cuts[next_cut] <= offset:
            next_cut += 1
        cut = (offset // piece + 1) * piece
        if next_cut < len(cuts):
            cut = min(cut, cuts[next_cut])
        data = source[offset:cut] if offset < len(source) else b""
        data += bytes(cut - offset - len(data))  # silence after the source
        delay = started + cut / BYTES_PER_SECOND - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        out.write(data)
        out.flush()
        written = time.time()
        offset = cut
        for index in starts.get(cut, []):
            began[index] = written
        for index in ends.get(cut, []):
            if times is not None:
                times.write(f"{index} {began.pop(index, written):.6f} {written:.6f}\n")
                times.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="raw 16 kHz mono s16le PCM")
    parser.add_argument("--marks", type=Path, help="spans to time: START_BYTE END_BYTE a line")
    parser.add_argument("--times", type=Path, help="appended: INDEX START END (wall clock)")
    parser.add_argument("--piece-ms", type=int, default=100, help="written at a time (ms)")
    args = parser.parse_args()
    piece = max(1, RATE * args.piece_ms // 1000) * FRAME_BYTES
    source = args.source.read_bytes()
    marks = read_marks(args.marks)
    try:
        if args.times is None:
            play(source, marks, None, piece)
        else:
            with args.times.open("a") as times:
                play(source, marks, times, piece)
    except BrokenPipeError:
        # The reader went away: point stdout at /dev/null so the final flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
