"""Warm connections of the TTS providers: opened ahead of requests, bounded, never leaked.

Whether a request used a warm connection is read from the fakes' connection counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

import pytest

from satellite.config_base import Timeouts
from satellite.errors import ErrorCode, ProviderError
from satellite.providers import dashscope_tts
from satellite.providers.azure_tts import AzureTtsProvider
from satellite.providers.base import Credentials, TtsProvider
from satellite.providers.dashscope_tts import DashScopeTtsProvider
from tests.fakes.azure import FakeAzure
from tests.fakes.dashscope import FakeDashScope
from tests.providers import test_azure as az
from tests.providers import test_dashscope as ds
from tests.providers.common import wait_for

pytestmark = pytest.mark.timeout(60)

WRONG_KEY = "wrong-secret-key"
REQUESTS = 200
P = TypeVar("P", bound=TtsProvider)


@pytest.fixture
def dashscope() -> Iterator[FakeDashScope]:
    with FakeDashScope(api_key=ds.KEY) as fake:
        yield fake


@pytest.fixture
def azure() -> Iterator[FakeAzure]:
    with FakeAzure() as fake:
        yield fake


def cosyvoice(
    fake: FakeDashScope, warm: int = 1, key: str = ds.KEY, connect: float = 1.0
) -> DashScopeTtsProvider:
    return ds.tts_provider(fake, key, warm_connections=warm, connect=connect, first_result=1.0)


def azure_tts(fake: FakeAzure, warm: int = 1, key: str = az.KEY) -> AzureTtsProvider:
    timeouts = Timeouts(connect=0.5, first_result=1.0, total=10)
    config = az.azure_config(fake, timeouts, warm_connections=warm)
    return AzureTtsProvider(config, Credentials(key, az.HINT), None)


@contextlib.asynccontextmanager
async def prepared(provider: P) -> AsyncIterator[P]:
    """The provider after ``prepare()``, closed on exit."""
    try:
        await provider.prepare()
        yield provider
    finally:
        await provider.close()


def threads() -> int:
    """OS threads of the process, less the workers ``bridge`` keeps for blocking calls."""
    workers = sum(t.name.startswith("sdk-call") for t in threading.enumerate())
    return len(os.listdir("/proc/self/task")) - workers


def sockets() -> int:
    """Open socket descriptors of the process (the fakes' included)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


async def usage() -> tuple[int, int]:
    await asyncio.sleep(0.3)  # let what the last step started settle
    return threads(), sockets()


async def check_back_to(baseline: tuple[int, int], seconds: float = 10.0) -> None:
    settled = await wait_for(lambda: threads() <= baseline[0] and sockets() <= baseline[1], seconds)
    assert settled, (baseline, (threads(), sockets()))


async def check_auth_failed(provider: TtsProvider, speak: object) -> None:
    for _ in range(3):
        with pytest.raises(ProviderError) as caught:
            await speak(provider, "你好")  # type: ignore[operator]
        assert caught.value.code == ErrorCode.AUTH_FAILED
        assert WRONG_KEY not in caught.value.message


# --- CosyVoice -----------------------------------------------------------------------


async def test_cosyvoice_request_uses_the_warm_connection(dashscope: FakeDashScope) -> None:
    async with prepared(cosyvoice(dashscope)) as provider:
        assert provider.warm_connections == 1
        assert await wait_for(lambda: dashscope.connections == 1)
        assert dashscope.handshakes == 1 and dashscope.task_connections == []
        assert await ds.speak(provider, "你好") == ds.expected_audio(["你好"])
        assert dashscope.task_connections == [1]  # the task ran on the warm connection
        assert await wait_for(lambda: provider.warm_connections == 1)  # replenished
        assert (dashscope.connections, dashscope.open_connections) == (2, 1)
        assert await ds.speak(provider, "再见") == ds.expected_audio(["再见"])
        assert dashscope.task_connections == [1, 2]
        assert await wait_for(lambda: dashscope.connections == 3)
    assert await wait_for(lambda: dashscope.open_connections == 0)
    await ds.check_sdk_threads_end()


async def test_cosyvoice_other_voice_connects_anew(dashscope: FakeDashScope) -> None:
    async with prepared(cosyvoice(dashscope)) as provider:
        assert await wait_for(lambda: dashscope.connections == 1)
        audio = await ds.speak(provider, "你好", voice="longshu_v2")
        assert audio == ds.expected_audio(["你好"])
        assert dashscope.task_connections == [2]
        assert dashscope.requests[-1]["parameters"]["voice"] == "longshu_v2"
        assert provider.warm_connections == 1  # the warm one waits
        assert await ds.speak(provider, "你好") == ds.expected_audio(["你好"])
        assert dashscope.task_connections == [2, 1]
        assert dashscope.requests[-1]["parameters"]["voice"] == "longxiaochun_v2"


@pytest.mark.parametrize("noticed", [True, False])
async def test_cosyvoice_dropped_warm_connection(dashscope: FakeDashScope, noticed: bool) -> None:
    """Whether or not the client has seen the drop yet, the request connects anew."""
    async with prepared(cosyvoice(dashscope)) as provider:
        for attempt in range(3):
            assert await wait_for(lambda: provider.warm_connections == 1)
            warm = dashscope.connections
            dashscope.drop_connections()
            if noticed:
                await asyncio.sleep(0.1)
            text = f"第{attempt}次"
            assert await ds.speak(provider, text) == ds.expected_audio([text])
            assert dashscope.task_connections[-1] > warm


async def test_cosyvoice_without_warm_connections(dashscope: FakeDashScope) -> None:
    async with prepared(cosyvoice(dashscope, warm=0)) as provider:
        await asyncio.sleep(0.2)
        assert dashscope.handshakes == 0
        assert await ds.speak(provider, "你好") == ds.expected_audio(["你好"])
        assert dashscope.task_connections == [1]
        await asyncio.sleep(0.3)
        assert (dashscope.connections, dashscope.open_connections) == (1, 0)
    await ds.check_sdk_threads_end()


async def test_cosyvoice_wrong_key(
    dashscope: FakeDashScope, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "satellite")
    async with prepared(cosyvoice(dashscope, key=WRONG_KEY, connect=0.5)) as provider:
        assert dashscope.handshakes == 1 and dashscope.connections == 0
        await check_auth_failed(provider, ds.speak)
        await asyncio.sleep(0.5)
        assert dashscope.handshakes == 1 + 3  # the pool waits before it tries again
    assert "rejected the API key" in caplog.text and WRONG_KEY not in caplog.text
    await ds.check_sdk_threads_end()


async def test_cosyvoice_refreshes_idle_connections(
    dashscope: FakeDashScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashscope_tts, "MAX_IDLE_SECONDS", 0.3)
    async with prepared(cosyvoice(dashscope, warm=2)):
        assert await wait_for(lambda: dashscope.connections >= 6, 5.0)
        assert await wait_for(lambda: dashscope.open_connections == 2)
    assert await wait_for(lambda: dashscope.open_connections == 0)
    await ds.check_sdk_threads_end()


async def test_cosyvoice_leaks_nothing_over_200_requests(dashscope: FakeDashScope) -> None:
    texts = [f"第{n}句。" for n in range(10)]
    faults = (None, None, None, "task-failed", "drop")
    async with prepared(cosyvoice(dashscope, warm=2)) as provider:
        baseline = await usage()
        for batch in range(REQUESTS // len(texts)):
            dashscope.fault = faults[batch % len(faults)]
            results = await asyncio.gather(
                *(ds.speak(provider, text) for text in texts), return_exceptions=True
            )
            if dashscope.fault is None:
                assert results == [ds.expected_audio([text]) for text in texts]
            else:
                assert all(isinstance(result, ProviderError) for result in results), results
        dashscope.fault = None
        assert len(dashscope.task_connections) == REQUESTS
        await check_back_to(baseline)
        assert dashscope.open_connections == 2
    assert await wait_for(lambda: dashscope.open_connections == 0)
    await ds.check_sdk_threads_end()


# --- Azure ---------------------------------------------------------------------------


async def az_speak(provider: AzureTtsProvider, text: str) -> bytes:
    return b"".join(await az.speak(provider, text))


async def test_azure_request_uses_the_warm_connection(azure: FakeAzure) -> None:
    async with prepared(azure_tts(azure)) as provider:
        assert await wait_for(lambda: azure.connections == 1)
        assert azure.received_ssml == []
        assert await az_speak(provider, "Hello.") == az.expected_audio(azure)
        assert await az_speak(provider, "Again.")
        assert azure.connections == azure.handshakes == 1  # one connection, kept


async def test_azure_two_warm_connections(azure: FakeAzure) -> None:
    async with prepared(azure_tts(azure, warm=2)) as provider:
        assert await wait_for(lambda: azure.connections == 2)
        await asyncio.gather(az_speak(provider, "One."), az_speak(provider, "Two."))
        assert len(azure.received_ssml) == 2
        assert azure.connections == 2


async def test_azure_without_warm_connections(azure: FakeAzure) -> None:
    async with prepared(azure_tts(azure, warm=0)) as provider:
        await asyncio.sleep(0.2)
        assert azure.handshakes == 0
        assert await az_speak(provider, "Hello.") == az.expected_audio(azure)
        assert azure.connections == 1


async def test_azure_wrong_key(azure: FakeAzure) -> None:
    async with prepared(azure_tts(azure, key=WRONG_KEY)) as provider:
        assert azure.handshakes == 1 and azure.connections == 0
        await check_auth_failed(provider, az.speak)
        await asyncio.sleep(0.5)
        assert azure.handshakes == 1 + 3


async def test_azure_leaks_nothing_over_200_requests(azure: FakeAzure) -> None:
    faults = {50: "error", 100: "drop", 150: "error"}  # each costs a new synthesizer
    async with prepared(azure_tts(azure)) as provider:
        # A synthesizer starts more native threads when it first speaks; they live with it.
        assert await az_speak(provider, "Warm up.")
        baseline = await usage()
        for index in range(REQUESTS):
            azure.fault = faults.get(index)
            if azure.fault is None:
                assert await az_speak(provider, f"Request {index}.")
            else:
                with pytest.raises(ProviderError):
                    await az_speak(provider, f"Request {index}.")
        azure.fault = None
        # The SDK may send a failed request again, on a new connection.
        assert REQUESTS < len(azure.received_ssml) <= REQUESTS + 1 + len(faults)
        assert azure.connections <= 1 + 2 * len(faults)  # the others reused one
        await check_back_to(baseline)
