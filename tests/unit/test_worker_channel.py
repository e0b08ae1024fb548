"""One request's answers from its worker, as the request in the daemon waits for them."""

from __future__ import annotations

import asyncio

import pytest

from satellite.errors import ErrorCode, ProviderError
from satellite.providers.supervisor import Channel


async def test_answers_come_in_order_whether_they_came_before_or_during_the_wait() -> None:
    channel = Channel(None)
    channel.deliver(("audio", 1, b"first", 0.05))
    asyncio.get_running_loop().call_later(0.01, channel.deliver, ("done", 1))
    assert await channel.next(1.0) == ("audio", 1, b"first", 0.05)
    assert await channel.next(1.0) == ("done", 1)


async def test_a_silent_worker_times_out_and_a_late_answer_still_reaches_the_next_wait() -> None:
    channel = Channel(None)
    with pytest.raises(TimeoutError):
        await channel.next(0.02)
    channel.deliver(("result", 1, "hello", 0.01))
    assert await channel.next(0.02) == ("result", 1, "hello", 0.01)


async def test_the_workers_error_is_raised_to_this_wait_and_every_later_check() -> None:
    channel = Channel(None)
    asyncio.get_running_loop().call_soon(
        channel.deliver, ("error", 1, ErrorCode.TIMEOUT.value, "no audio within 5 s")
    )
    with pytest.raises(ProviderError) as raised:
        await channel.next(1.0)
    assert (raised.value.code, raised.value.message) == (ErrorCode.TIMEOUT, "no audio within 5 s")
    with pytest.raises(ProviderError):
        channel.check()


async def test_the_workers_death_ends_a_wait_with_the_death_not_a_timeout() -> None:
    channel = Channel(None)
    died = ProviderError(ErrorCode.PROVIDER_FAILED, "azure worker died (SIGSEGV)")
    asyncio.get_running_loop().call_later(0.01, channel.fail, died)
    with pytest.raises(ProviderError) as raised:
        await channel.next(1.0)
    assert raised.value is died


async def test_a_cancelled_wait_leaves_the_channel_serving_the_next() -> None:
    channel = Channel(None)
    waiting = asyncio.create_task(channel.next(1.0))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    channel.deliver(("audio", 1, b"x", 0.0))
    assert await channel.next(0.1) == ("audio", 1, b"x", 0.0)


async def test_partials_go_to_their_callback_and_text_requests_to_the_pump() -> None:
    heard: list[str] = []
    channel = Channel(heard.append)
    channel.deliver(("partial", 1, "turn on"))
    channel.deliver(("more", 1))
    channel.deliver(("result", 1, "turn on the light", 0.01))
    assert heard == ["turn on"]
    assert channel.wants_text.is_set()
    assert await channel.next(0.1) == ("result", 1, "turn on the light", 0.01)
