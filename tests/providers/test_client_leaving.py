"""A synthesis whose client has gone stops at the provider, on every cloud.

The fakes speak at twice real time, reading the client as they go, and count the audio they
still sent once the client had left: with the real SDKs, a client that stops reading (the
generator closed) or whose task is cancelled gets the provider told to stop (Qwen realtime:
``input_text_buffer.clear`` and ``response.cancel``; CosyVoice: the task cancelled; Azure:
speaking stopped, its connection closed), so almost nothing of a long text is produced, and
the next request on the same provider gets exactly its own audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import pytest

from satellite.config_base import Timeouts
from satellite.provider_specs.azure import AzureConfig
from satellite.provider_specs.dashscope import DashScopeConfig, DashScopeTts
from satellite.providers.azure_tts import AzureTtsProvider
from satellite.providers.base import Credentials, SynthesisOptions, TtsProvider
from satellite.providers.dashscope_realtime_tts import QwenRealtimeTtsProvider
from satellite.providers.dashscope_tts import DashScopeTtsProvider
from tests.fakes.azure import FakeAzure
from tests.fakes.dashscope import FakeDashScope
from tests.fakes.dashscope_realtime import FakeDashScopeRealtime
from tests.fakes.threaded import Production, ThreadedFake
from tests.providers.common import pieces, wait_for

pytestmark = pytest.mark.timeout(60)

PACE = 0.5  # the fakes speak at twice real time, as the services roughly do
TIMEOUTS = Timeouts(connect=3, first_result=3, total=30)
DASHSCOPE_KEY = "test-dashscope-key"
# One sentence (Azure speaks sentence by sentence), 120 characters: 4.8 s of audio.
LONG_TEXT = "这是一段很长的回答，" * 11 + "需要说很久才说完。"
LONG_SECONDS = 0.04 * len(LONG_TEXT)
NEXT_TEXT = "下一句。"
STOP_WITHIN_S = 0.5  # from the client leaving to the stop reaching the service
AFTER_STOP_S = 0.25  # audio still sent after the stop came (at most what was in flight)
AFTER_LEAVING_S = 0.5  # audio sent after the client left


@dataclass
class Cloud:
    """A fake and how to build a provider on it."""

    name: str
    fake: ThreadedFake
    provider: Callable[[], TtsProvider]
    stopped_by: str  # how the fake learns that the client has gone
    bytes_per_second: int

    def expected(self, text: str) -> bytes:
        """The exact audio of ``text`` as the last request had it spoken."""
        if isinstance(self.fake, FakeAzure):
            return FakeAzure.tts_audio_for(self.fake.received_ssml[-1], 24000)
        rate = self.bytes_per_second // 2
        return FakeDashScope.tts_audio_for(text, rate)

    def seconds(self, pcm_bytes: int) -> float:
        return pcm_bytes / self.bytes_per_second


@pytest.fixture(scope="module")
def qwen_fake() -> Iterator[FakeDashScopeRealtime]:
    with FakeDashScopeRealtime(api_key=DASHSCOPE_KEY, pace=PACE) as fake:
        yield fake


@pytest.fixture(scope="module")
def cosyvoice_fake() -> Iterator[FakeDashScope]:
    with FakeDashScope(api_key=DASHSCOPE_KEY, pace=PACE) as fake:
        yield fake


@pytest.fixture(scope="module")
def azure_fake() -> Iterator[FakeAzure]:
    with FakeAzure(pace=PACE) as fake:
        yield fake


def qwen_cloud(fake: FakeDashScopeRealtime) -> Cloud:
    config = DashScopeConfig(
        realtime_url=fake.url,
        timeouts=TIMEOUTS,
        warm_connections=1,
        tts=DashScopeTts(model="qwen3-tts-flash-realtime"),
    )
    credentials = Credentials(DASHSCOPE_KEY, "")
    return Cloud(
        "qwen",
        fake,
        lambda: QwenRealtimeTtsProvider(config, credentials, None),
        "cancel",
        48000,
    )


def cosyvoice_cloud(fake: FakeDashScope) -> Cloud:
    config = DashScopeConfig(websocket_url=fake.url, timeouts=TIMEOUTS, warm_connections=1)
    credentials = Credentials(DASHSCOPE_KEY, "")
    return Cloud(
        "cosyvoice",
        fake,
        lambda: DashScopeTtsProvider(config, credentials, None),
        "cancel",
        44100,
    )


def azure_cloud(fake: FakeAzure) -> Cloud:
    config = AzureConfig(host=fake.host, timeouts=TIMEOUTS, warm_connections=1)
    credentials = Credentials("test-azure-key", "")
    return Cloud(
        "azure",
        fake,
        lambda: AzureTtsProvider(config, credentials, None),
        "closed",
        48000,
    )


@pytest.fixture(params=["qwen", "cosyvoice", "azure"])
def cloud(request: pytest.FixtureRequest) -> Cloud:
    name = request.param
    fake = request.getfixturevalue(f"{name}_fake")
    return {"qwen": qwen_cloud, "cosyvoice": cosyvoice_cloud, "azure": azure_cloud}[name](fake)


@contextlib.asynccontextmanager
async def prepared(cloud: Cloud) -> AsyncIterator[TtsProvider]:
    provider = cloud.provider()
    await provider.prepare()
    try:
        yield provider
    finally:
        await provider.close()


async def speak(provider: TtsProvider, text: str) -> bytes:
    stream = provider.synthesize(pieces(text), SynthesisOptions())
    return b"".join([chunk async for chunk in stream])


async def leave_by_closing(provider: TtsProvider) -> float:
    """Reads the first chunk of the long text and closes the stream: when it left."""
    stream = provider.synthesize(pieces(LONG_TEXT), SynthesisOptions())
    async with contextlib.aclosing(stream):
        assert await anext(stream)
    return time.monotonic()


async def leave_by_cancelling(provider: TtsProvider) -> float:
    """A task reads the long text's audio; it is cancelled (while it waits elsewhere) once
    the first chunk came: when it left."""
    first = asyncio.Event()

    async def listen() -> None:
        async for _ in provider.synthesize(pieces(LONG_TEXT), SynthesisOptions()):
            first.set()
            await asyncio.sleep(3600)  # e.g. writing to a slow client

    task = asyncio.create_task(listen())
    await first.wait()
    task.cancel()
    left = time.monotonic()
    await asyncio.gather(task, return_exceptions=True)
    return left


async def check_stopped(cloud: Cloud, production: Production, left: float) -> None:
    """The service was told to stop in time, and produced next to nothing after it."""
    assert await wait_for(lambda: production.stopped_at is not None, 3.0), production
    assert production.stopped_by == cloud.stopped_by
    assert production.stopped_at is not None
    assert production.stopped_at - left < STOP_WITHIN_S
    await asyncio.sleep(1.0)  # what a service still speaking would send meanwhile
    assert cloud.seconds(production.sent_after_stop) < AFTER_STOP_S
    assert cloud.seconds(production.sent_after(left)) < AFTER_LEAVING_S
    assert cloud.seconds(production.sent) < LONG_SECONDS / 4
    assert not production.finished


@pytest.mark.parametrize("leave", [leave_by_closing, leave_by_cancelling])
async def test_a_client_leaving_stops_the_synthesis_at_the_provider(
    cloud: Cloud, leave: Callable[[TtsProvider], asyncio.Future[float]]
) -> None:
    async with prepared(cloud) as provider:
        assert await speak(provider, NEXT_TEXT) == cloud.expected(NEXT_TEXT)  # warmed up
        before = len(cloud.fake.productions)
        started = time.monotonic()
        left = await leave(provider)
        assert time.monotonic() - left < 0.2  # leaving does not wait for the provider
        assert left - started < 2.0
        assert len(cloud.fake.productions) == before + 1
        await check_stopped(cloud, cloud.fake.productions[-1], left)
        # The next request on the same provider (a warm connection) gets its own audio.
        assert await speak(provider, NEXT_TEXT) == cloud.expected(NEXT_TEXT)
        assert cloud.fake.productions[-1].finished


async def test_qwen_realtime_tells_the_service_to_drop_the_text_and_cancel(
    qwen_fake: FakeDashScopeRealtime,
) -> None:
    async with prepared(qwen_cloud(qwen_fake)) as provider:
        left = await leave_by_closing(provider)
        session = qwen_fake.requests[-1]
        assert await wait_for(lambda: "response.cancel" in session.client_events)
        events = session.client_events
        assert events.index("input_text_buffer.clear") < events.index("response.cancel")
        assert session.production is not None and session.production.stopped_at is not None
        assert session.production.stopped_at - left < STOP_WITHIN_S
        # The cancelled session is closed, never handed to another request.
        assert await wait_for(lambda: qwen_fake.open_connections <= 1, 3.0)


async def test_cosyvoice_cancels_its_task(cosyvoice_fake: FakeDashScope) -> None:
    async with prepared(cosyvoice_cloud(cosyvoice_fake)) as provider:
        tasks = len(cosyvoice_fake.requests)
        await leave_by_closing(provider)
        assert len(cosyvoice_fake.requests) == tasks + 1
        production = cosyvoice_fake.productions[-1]
        assert await wait_for(lambda: production.stopped_by == "cancel")
        # The SDK closes the cancelled task's connection once task-finished came.
        assert await wait_for(lambda: cosyvoice_fake.open_connections <= 1, 3.0)
