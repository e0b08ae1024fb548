"""The remote wake engine against a fake Wyoming wake service on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable

import pytest

from satellite.config import WakeConfig
from satellite.wake.engine import WakeModelInfo, WakeResult
from satellite.wake.remote import RemoteEngine
from tests.fakes.wyoming_wake import MARKER, FakeWakeService

WAIT_S = 5.0  # bound of every wait for something to happen
SILENCE = bytes(640)  # 20 ms
WAKE = MARKER + bytes(636)
LOGGER = "satellite.wake.remote"
CANNOT_CONNECT = re.compile(r"cannot connect \((.+)\); retrying in ([0-9.]+) s$")


def make_engine(port: int, models: tuple[str, ...] = ("okay_nabu",)) -> RemoteEngine:
    config = WakeConfig(engine="remote", uri=f"tcp://127.0.0.1:{port}", models=models)
    engine = RemoteEngine(config)
    # Short backoff, so outages play out in a fraction of a second.
    engine.retry_first_s = 0.05
    engine.retry_max_s = 0.2
    engine.write_timeout_s = 0.5
    return engine


async def feed_until(
    engine: RemoteEngine, done: Callable[[], bool], pcm: bytes = SILENCE
) -> list[WakeResult]:
    """Feeds ``pcm`` every 10 ms until ``done()``; fails after WAIT_S."""
    results: list[WakeResult] = []

    async def feed() -> None:
        while not done():
            results.append(await engine.process(pcm))
            await asyncio.sleep(0.01)

    await asyncio.wait_for(feed(), WAIT_S)
    return results


async def connected_engine(
    service: FakeWakeService, engines: list[RemoteEngine], caplog: pytest.LogCaptureFixture
) -> RemoteEngine:
    """An engine streaming to ``service``, logging at INFO; closed by the ``engines`` fixture."""
    caplog.set_level(logging.INFO, LOGGER)
    engine = make_engine(service.port)
    engines.append(engine)
    await feed_until(engine, lambda: engine.connected)
    return engine


async def detect_once(engine: RemoteEngine) -> list[str]:
    """Sends one chunk holding the marker, then silence until the engine reports something."""
    detected: list[str] = []
    await engine.process(WAKE)

    def reported() -> bool:
        return bool(detected)

    async def feed() -> None:
        while not reported():
            detected.extend((await engine.process(SILENCE)).detected)
            await asyncio.sleep(0.01)

    await asyncio.wait_for(feed(), WAIT_S)
    return detected


async def until(done: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not done():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), WAIT_S)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING
    ]


def engine_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t.get_name().startswith("wake service")}


@pytest.fixture
async def service() -> AsyncIterator[FakeWakeService]:
    async with FakeWakeService() as fake:
        yield fake


@pytest.fixture
async def engines() -> AsyncIterator[list[RemoteEngine]]:
    """Engines a test makes, closed at its end whatever happened."""
    made: list[RemoteEngine] = []
    yield made
    for engine in made:
        await asyncio.wait_for(engine.close(), WAIT_S)


async def test_learns_the_service_models_and_phrases(
    engines: list[RemoteEngine], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    models = [("okay_nabu_v0.1", "okay nabu", ("en", "de")), ("hey_jarvis", "Hey Jarvis", ())]
    async with FakeWakeService(models=models) as fake:
        engine = make_engine(fake.port, models=("okay_nabu",))
        engines.append(engine)
        # Before the service answered: the configured name and a phrase made from it.
        assert engine.models == (WakeModelInfo("okay_nabu", "Okay Nabu"),)
        await feed_until(engine, lambda: engine.connected)
        assert engine.models == (WakeModelInfo("okay_nabu", "okay nabu", ("en", "de")),)

        every = make_engine(fake.port, models=())  # no names: whatever the service offers
        engines.append(every)
        assert every.models == ()
        await feed_until(every, lambda: every.connected)
        assert every.models == (
            WakeModelInfo("okay_nabu_v0.1", "okay nabu", ("en", "de")),
            WakeModelInfo("hey_jarvis", "Hey Jarvis", ("en",)),
        )
    connected = [r.getMessage() for r in caplog.records if "connected" in r.getMessage()]
    assert len(connected) == 2
    assert 'models okay_nabu ("okay nabu")' in connected[0]


async def test_the_configured_names_are_sent_in_detect(
    service: FakeWakeService, engines: list[RemoteEngine]
) -> None:
    named = make_engine(service.port, models=("okay_nabu", "hey_jarvis"))
    engines.append(named)
    await feed_until(named, lambda: named.connected)
    await named.close()
    unnamed = make_engine(service.port, models=())
    engines.append(unnamed)
    await feed_until(unnamed, lambda: unnamed.connected)
    assert service.detect_names == [["okay_nabu", "hey_jarvis"], None]
    # describe, then detect before audio-start (a stream's names are read at its start)
    assert service.events[:3] == ["describe", "detect", "audio-start"]


async def test_audio_reaches_the_service(
    service: FakeWakeService, engines: list[RemoteEngine]
) -> None:
    engine = make_engine(service.port)
    engines.append(engine)
    await feed_until(engine, lambda: len(service.chunks) > 0)
    before = len(service.chunks)
    sent = [bytes([n]) * 320 for n in range(1, 6)]  # 10 ms each
    for pcm in sent:
        assert await engine.process(pcm) == WakeResult()
    await until(lambda: len(service.chunks) == before + len(sent))
    assert service.chunks[before:] == sent
    # Each chunk's timestamp is the milliseconds of audio sent before it in the stream.
    first = service.timestamps[before]
    assert first == before * 20
    assert service.timestamps[before:] == [first + 10 * n for n in range(len(sent))]


async def test_a_detection_from_the_service_is_reported(
    service: FakeWakeService, engines: list[RemoteEngine]
) -> None:
    engine = make_engine(service.port)
    engines.append(engine)
    await feed_until(engine, lambda: engine.connected)
    assert await detect_once(engine) == ["okay_nabu"]
    engine.reset()
    # Detections keep working after one: each opens a new stream with the same names.
    assert await detect_once(engine) == ["okay_nabu"]
    assert service.detections == ["okay_nabu", "okay_nabu"]
    assert service.detect_names[-1] == ["okay_nabu"]
    assert service.events.count("audio-start") >= 2
    starts = [i for i, kind in enumerate(service.events) if kind == "audio-start"]
    assert service.events[starts[1] - 2 : starts[1]] == ["audio-stop", "detect"]


@pytest.mark.parametrize(
    ("service_name", "reported"),
    [("okay_nabu_v0.1", "okay_nabu"), ("hey_jarvis", "hey_jarvis")],
)
async def test_a_service_name_is_mapped_to_the_configured_one(
    engines: list[RemoteEngine], service_name: str, reported: str
) -> None:
    async with FakeWakeService(detection_name=service_name) as fake:
        engine = make_engine(fake.port)
        engines.append(engine)
        await feed_until(engine, lambda: engine.connected)
        assert await detect_once(engine) == [reported]


async def test_with_the_service_down_process_answers_at_once_and_warns_per_attempt(
    engines: list[RemoteEngine], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    fake = FakeWakeService()
    await fake.start()
    await fake.stop()  # its port now refuses connections
    engine = make_engine(fake.port)
    engines.append(engine)
    for _ in range(50):
        result = await asyncio.wait_for(engine.process(SILENCE), WAIT_S)
        assert result == WakeResult()
        await asyncio.sleep(0.01)
    await until(lambda: len(warnings(caplog)) >= 4)
    await engine.close()
    found = [CANNOT_CONNECT.search(message) for message in warnings(caplog)]
    assert all(found), warnings(caplog)
    delays = [float(match.group(2)) for match in found if match]
    # One warning per attempt, each with the next delay: 0.05, 0.1, 0.2 (the cap), 0.2 ...
    assert len(delays) < 50
    assert delays == [min(0.05 * 2**n, 0.2) for n in range(len(delays))]
    assert not engine.connected


async def test_one_warning_per_failed_attempt_counted_at_the_service(
    engines: list[RemoteEngine], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    async with FakeWakeService() as fake:
        fake.hang_up = True  # accepts, then closes before answering
        engine = make_engine(fake.port)
        engines.append(engine)
        for _ in range(50):
            assert await asyncio.wait_for(engine.process(SILENCE), WAIT_S) == WakeResult()
            await asyncio.sleep(0.01)
        await until(lambda: fake.connections >= 3)
        await engine.close()
        messages = warnings(caplog)
        # The attempt close() interrupted may not have logged yet.
        assert fake.connections - 1 <= len(messages) <= fake.connections
        assert all("cannot connect (closed by the service)" in m for m in messages), messages


async def test_the_engine_reconnects_when_the_service_comes_back(
    service: FakeWakeService, engines: list[RemoteEngine], caplog: pytest.LogCaptureFixture
) -> None:
    engine = await connected_engine(service, engines, caplog)
    assert await detect_once(engine) == ["okay_nabu"]

    await service.stop()
    down = await feed_until(engine, lambda: len(warnings(caplog)) >= 3)
    assert all(result == WakeResult() for result in down)
    assert not engine.connected
    assert "connection lost" in warnings(caplog)[0]
    assert all(CANNOT_CONNECT.search(m) for m in warnings(caplog)[1:])

    await service.start()
    await feed_until(engine, lambda: engine.connected)
    assert await detect_once(engine) == ["okay_nabu"]
    connected = [r for r in caplog.records if r.levelno == logging.INFO and "connected" in r.msg]
    assert len(connected) == 2


async def test_a_stalled_service_counts_as_a_broken_connection(
    service: FakeWakeService, engines: list[RemoteEngine], caplog: pytest.LogCaptureFixture
) -> None:
    engine = await connected_engine(service, engines, caplog)
    service.stall = True
    big = bytes(64000)  # 2 s a piece: fills the socket buffers soon
    await feed_until(engine, lambda: bool(warnings(caplog)), pcm=big)
    assert service.stalled.is_set()
    assert "connection lost (write stalled" in warnings(caplog)[0]
    # The engine keeps reconnecting; once the service reads again, detections work again.
    service.unstall()
    detected: list[str] = []

    async def detect() -> None:
        while not detected:
            detected.extend((await engine.process(WAKE)).detected)
            await asyncio.sleep(0.01)

    await asyncio.wait_for(detect(), WAIT_S)
    assert detected == ["okay_nabu"]


async def test_close_leaves_no_task_running(
    service: FakeWakeService, engines: list[RemoteEngine], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    never_used = make_engine(service.port)
    await never_used.close()

    engine = make_engine(service.port)
    engines.append(engine)
    await feed_until(engine, lambda: engine.connected)
    assert engine_tasks()
    await asyncio.wait_for(engine.close(), WAIT_S)
    await asyncio.wait_for(engine.close(), WAIT_S)  # again: nothing left to do
    assert not engine_tasks()
    assert not engine.connected
    assert await engine.process(WAKE) == WakeResult()
    assert not engine_tasks()  # process() after close() starts nothing

    await service.stop()  # closed while it waits to retry
    retrying = make_engine(service.port)
    engines.append(retrying)
    await feed_until(retrying, lambda: len(warnings(caplog)) >= 1)
    await asyncio.wait_for(retrying.close(), WAIT_S)
    assert not engine_tasks()
    assert not [r for r in caplog.records if r.name == "asyncio"]
