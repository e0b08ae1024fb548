"""Fuzzing the Wyoming servers of a running daemon (speech endpoint and satellite) with
hypothesis: malformed header lines, wrong JSON types in event data, events out of order,
truncated events and random bytes, each example on its own raw TCP connection.

Every example ends with a ``describe`` (which the random part never contains). The daemon
must then answer it, or have said with an ``error`` why it stopped reading; send only
well-formed events (errors with a documented code other than internal-error); close the
connection once the client has stopped sending; log no traceback; and answer ``describe``
on a new connection within a second. At the end real requests must still work.

Events out of order (ALWAYS_TRIED) and inputs that once ended a handler with an
exception (PAST_CRASHES) are tried on every run.
"""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from wyoming.event import read_event
from wyoming.ping import Ping
from wyoming.satellite import RunSatellite
from wyoming.tts import Synthesize

from satellite.errors import ErrorCode
from tests.audio.speech import silence, write_wav
from tests.e2e.daemon import Daemon, free_port
from tests.fakes.dashscope import FakeDashScope
from tests.faults.common import DESCRIBE_S, running_daemon
from tests.wyoming_client import audio_of, connect, read, read_until, send_utterance

CLOSE_S = 5.0  # the daemon ends a connection the client has finished sending on
CLIENT_CODES = {code.value for code in ErrorCode} - {ErrorCode.INTERNAL.value}
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Both:
    daemon: Daemon
    speech_port: int
    satellite_port: int
    log_checked: int = 0  # length of the log already checked for tracebacks

    def port(self, role: str) -> int:
        return self.speech_port if role == "speech" else self.satellite_port

    def new_log(self) -> str:
        """The log written since the last call."""
        logs = self.daemon.logs()
        new, self.log_checked = logs[self.log_checked :], len(logs)
        return new


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> Iterator[Both]:
    """One daemon serving both roles: speech on the fake DashScope, the satellite with a
    silent file mic and a file speaker."""
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    write_wav(workdir / "mic.wav", silence(1))
    satellite_port = free_port()
    with FakeDashScope() as fake:
        config = f"""
speech:
  uri: LISTEN_URI
  asr: {{provider: dashscope, language: zh}}
  tts: {{provider: dashscope}}
providers:
  dashscope:
    websocket_url: {fake.url}
    timeouts: {{connect: 2, first_result: 2, total: 8}}
satellite:
  enabled: true
  uri: tcp://127.0.0.1:{satellite_port}
  start_stage: asr
  wake: {{engine: none}}
  mic: {{backend: file, file: "{workdir}/mic.wav"}}
  speaker: {{backend: file, file: "{workdir}/speaker.raw"}}
"""
        with running_daemon(workdir, config) as daemon:
            yield Both(daemon, daemon.port, satellite_port)


# --- what the client sends ----------------------------------------------------------


def encode(event_type: object, data: object = None, payload: bytes = b"") -> bytes:
    """One event as the wire carries it (``data`` as separate JSON, as wyoming writes it)."""
    header: dict[str, object] = {"type": event_type, "version": "1.10.2"}
    data_bytes = b""
    if data is not None:
        data_bytes = json.dumps(data).encode()
        header["data_length"] = len(data_bytes)
    if payload:
        header["payload_length"] = len(payload)
    return json.dumps(header).encode() + b"\n" + data_bytes + payload


# ``describe`` is left out: it ends every example, so an ``info`` answers that one.
SPEECH_TYPES = [
    "transcribe",
    "audio-start",
    "audio-chunk",
    "audio-stop",
    "synthesize",
    "synthesize-start",
    "synthesize-chunk",
    "synthesize-stop",
    "ping",
]
SATELLITE_TYPES = [
    "run-satellite",
    "pause-satellite",
    "run-pipeline",
    "detection",
    "voice-started",
    "voice-stopped",
    "transcript",
    "error",
    "played",
    "timer-started",
    "timer-finished",
]
TYPES = SPEECH_TYPES + SATELLITE_TYPES
FIELDS = ["rate", "width", "channels", "text", "language", "voice", "name", "timestamp", "code"]

# JSON values of every type, and the ones most likely to confuse a parser.
tricky = st.sampled_from(
    ["16000", "", "abc", [], [1], {}, {"name": 5}, None, True, 0, -1, 2**64, float("inf")]
)
scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
)
values = tricky | st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
# Event types: strings, known or not, and any other JSON.
event_types = st.sampled_from(TYPES) | st.text(max_size=16) | values
audio_formats = st.fixed_dictionaries(
    {
        "rate": st.sampled_from([8000, 16000, 22050, 44100]),
        "width": st.just(2),
        "channels": st.just(1),
    }
)
payloads = st.binary(max_size=640).map(lambda b: b[: len(b) - len(b) % 2])


@st.composite
def well_typed_events(draw) -> bytes:
    """A known event with plausible data, in any order with the others."""
    event_type = draw(st.sampled_from(TYPES))
    if event_type.startswith("audio"):
        return encode(event_type, draw(audio_formats), draw(payloads))
    if event_type in ("synthesize", "synthesize-chunk", "transcript"):
        return encode(event_type, {"text": draw(st.text(max_size=30))})
    return encode(event_type, {})


AUDIO = {"rate": 16000, "width": 2, "channels": 1}
# Plausible data of the events that carry some.
DATA: dict[str, dict[str, object]] = {
    "audio-start": AUDIO,
    "audio-chunk": AUDIO,
    "audio-stop": {"timestamp": 0},
    "transcribe": {"language": "zh"},
    "synthesize": {"text": "Hello.", "voice": {"name": "longxiaochun_v2"}},
    "synthesize-start": {"voice": {"name": "longxiaochun_v2"}},
    "synthesize-chunk": {"text": "Hello."},
    "ping": {"text": "ping"},
    "transcript": {"text": "turn on the light"},
    "detection": {"name": "ok_nabu"},
    "error": {"text": "no wake word", "code": "no-wake-word"},
}


@st.composite
def wrongly_typed_events(draw) -> bytes:
    """A known event with one to three of its data fields (or other fields) holding any
    JSON: a wrong type, mostly."""
    event_type = draw(st.sampled_from(list(DATA)) | st.sampled_from(TYPES))
    data = dict(DATA.get(event_type, {}))
    keys = draw(st.lists(st.sampled_from([*data, *FIELDS]), min_size=1, max_size=3, unique=True))
    for key in keys:
        data[key] = draw(values)
    return encode(event_type, data, draw(payloads))


@st.composite
def odd_headers(draw) -> bytes:
    """A header line that is JSON of any shape, with lengths that may lie; data and payload
    bytes after it, which may or may not match."""
    header = draw(
        st.dictionaries(
            st.sampled_from(["type", "version", "data", "data_length", "payload_length"]),
            values,
            max_size=5,
        )
        | values
    )
    if isinstance(header, dict) and "type" in header:
        header["type"] = draw(event_types)
    if isinstance(header, dict) and "data" in header:
        fields = st.dictionaries(st.sampled_from(FIELDS), values, max_size=3)
        header["data"] = draw(fields | values)
    return json.dumps(header).encode() + b"\n" + draw(st.binary(max_size=64))


@st.composite
def truncated_events(draw) -> bytes:
    """A well-typed event cut short: its declared data or payload never fully arrives."""
    whole = draw(well_typed_events())
    header_end = whole.index(b"\n") + 1
    if header_end == len(whole):  # nothing after the header: announce a payload instead
        head = json.loads(whole)
        head["payload_length"] = draw(st.integers(1, 4096))
        return json.dumps(head).encode() + b"\n"
    return whole[: draw(st.integers(header_end, len(whole) - 1))]


garbage_lines = st.binary(max_size=120).map(lambda b: b.replace(b"\n", b"") + b"\n")
random_bytes = st.binary(min_size=1, max_size=400)
# One connection's worth: some events, maybe ending in something broken.
connections = st.builds(
    lambda events, tail: b"".join(events) + tail,
    st.lists(well_typed_events() | wrongly_typed_events(), max_size=5),
    st.sampled_from([b""]) | odd_headers() | truncated_events() | garbage_lines | random_bytes,
)


# --- what the daemon must do -----------------------------------------------------------


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection, stop sending, and return everything the daemon
    sent until it closed the connection, which it must do within CLOSE_S."""
    with socket.create_connection(("127.0.0.1", port), timeout=CLOSE_S) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except ConnectionError:  # the daemon refused it and closed early: allowed
            pass
        received = bytearray()
        deadline = time.monotonic() + CLOSE_S
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        else:
            pytest.fail(f"the connection was still open after {CLOSE_S} s")
        return bytes(received)


def takes_what_follows(data: bytes) -> bool:
    """Whether a header in ``data`` announces more data or payload bytes than follow it, so
    that a Wyoming reader takes the bytes sent after ``data`` as that event's own.

    The walk reads as ``async_read_event`` does: a positive integer length (``true``
    counts as 1) makes the reader take that many bytes; any other value fails the read,
    and a line that is not a JSON object ends it.
    """
    position = 0
    while position < len(data):
        end = data.find(b"\n", position)
        if end < 0:
            return False  # an unfinished line: what follows joins it
        try:
            header = json.loads(data[position:end])
        except (ValueError, RecursionError):
            return False
        if not isinstance(header, dict):
            return False
        lengths = [header.get(key) for key in ("data_length", "payload_length")]
        position = end + 1 + sum(n for n in lengths if isinstance(n, int) and n > 0)
    return position > len(data)


def check_answer(received: bytes, describe_framed: bool = True) -> None:
    """Everything the daemon sent is whole, well-formed events; errors have a code a client
    can act on; and, when the ``describe`` that ended the input was an event of its own
    (``describe_framed``), the daemon either answered it or said with an ``error`` why it
    stopped reading before it."""
    stream = io.BytesIO(received)
    types = []
    while stream.tell() < len(received):
        event = read_event(stream)
        assert event is not None, f"malformed output at byte {stream.tell()}: {received!r}"
        types.append(event.type)
        if event.type == "error":
            assert event.data.get("code") in CLIENT_CODES, event
    if describe_framed:
        assert "info" in types or types[-1:] == ["error"], f"no answer, no error: {received!r}"


def describe_answers(port: int) -> None:
    """HA's discovery on a new connection: ``info`` within DESCRIBE_S."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=DESCRIBE_S) as sock:
        sock.sendall(encode("describe"))
        reader = sock.makefile("rb")
        event = read_event(reader)
        reader.close()
    assert event is not None and event.type == "info", event
    assert time.monotonic() - started < DESCRIBE_S


def check_survives(both: Both, role: str, data: bytes) -> None:
    received = exchange(both.port(role), data + encode("describe"))
    check_answer(received, describe_framed=not takes_what_follows(data))
    new_log = both.new_log()
    assert "Traceback" not in new_log, new_log
    assert both.daemon.process.poll() is None, both.daemon.logs()[-4000:]
    describe_answers(both.port(role))


# Inputs that once ended a handler with an exception (a traceback in the log and, for the
# client, a closed connection instead of an ``error``).
PAST_CRASHES = [
    b'{"type": "audio-start", "data": {"rate": Infinity, "width": 2, "channels": 1}}\n',
    b'{"type": "ping", "data": ' + b"[" * 5000 + b"]" * 5000 + b"}\n",
    b'{"type": "transcribe", "data": 5}\n',
    b'{"type": ["transcript"]}\n',
]


CHUNK = encode("audio-chunk", AUDIO, bytes(640))
ALWAYS_TRIED = [
    *PAST_CRASHES,
    CHUNK + encode("audio-start", AUDIO) + CHUNK,  # audio-chunk before audio-start
    encode("synthesize-stop", {}),  # without synthesize-start
    encode("synthesize-chunk", {"text": "Hi."}) + encode("synthesize-stop", {}),
    encode("transcribe", {}) + encode("audio-start", AUDIO) + CHUNK + encode("audio-stop") * 2,
    encode("audio-stop") + encode("played") + encode("run-pipeline", {"start_stage": "asr"}),
    encode("synthesize-start", {}) + encode("synthesize-start", {}) + encode("audio-start", AUDIO),
    b'{"type": "", "data_length": 42}\n',  # takes the describe after it (42 bytes) as data
    encode("timer-started", {}),  # timers without their fields
    encode("timer-updated", {"id": "t", "is_active": True, "total_seconds": "soon"}),
    encode("timer-started", {"id": ["t"], "total_seconds": 1e300}) + encode("timer-finished", {}),
]


def always_tried(**arguments):
    """Adds every input of ALWAYS_TRIED as an explicit example (with ``arguments``)."""

    def add(test):
        for data in ALWAYS_TRIED:
            test = example(data=data, **arguments)(test)
        return test

    return add


@FUZZ
@given(data=connections)
@always_tried()
def test_fuzzed_speech_connections_leave_the_endpoint_serving(both: Both, data: bytes):
    assume(b"describe" not in data)
    check_survives(both, "speech", data)


@FUZZ
@given(data=connections, takes_over=st.booleans())
@always_tried(takes_over=True)
def test_fuzzed_ha_connections_leave_the_satellite_serving(
    both: Both, data: bytes, takes_over: bool
):
    assume(b"describe" not in data)
    prefix = encode("run-satellite") if takes_over else b""
    check_survives(both, "satellite", prefix + data)


async def test_after_the_fuzzing_real_requests_still_work(both: Both):
    client = await connect(both.speech_port)
    await send_utterance(client, bytes(16000), chunk_bytes=3200, language="zh")
    transcript = await read(client)
    assert (transcript.type, transcript.data.get("text")) == ("transcript", "你好。打开客厅的灯。")
    await client.write_event(Synthesize(text="你好。").event())
    events = await read_until(client, "audio-stop")
    assert events[-1].type == "audio-stop" and audio_of(events)
    await client.disconnect()

    ha = await connect(both.satellite_port)
    await ha.write_event(RunSatellite().event())
    await ha.write_event(Ping(text="still there?").event())
    pong = await read(ha)
    assert (pong.type, pong.data.get("text")) == ("pong", "still there?")
    await ha.disconnect()
    assert both.daemon.process.poll() is None


@pytest.mark.parametrize(
    ("data", "takes"),
    [
        (b"", False),
        (encode("ping", {"text": "x"}, b"ab"), False),
        (b'{"type": "ping", "data_length": 3}\n', True),
        (b'{"type": "ping", "payload_length": true}\n', True),
        (b'{"type": "ping", "payload_length": 2.0}\n', False),  # the read fails instead
        (b'{"type": "ping", "data_length": -3}\n', False),
        (b'{"type": "ping", "data_length": 3}\nabc', False),
        (b'not json {"data_length": 3}\n', False),
        (b'{"type": "ping"', False),
    ],
)
def test_the_fuzz_check_knows_when_the_describe_is_taken_as_data(data: bytes, takes: bool):
    assert takes_what_follows(data) is takes
