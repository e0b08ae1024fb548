"""Hundreds of requests through a failover list leave no sockets or threads behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

from wyoming.tts import Synthesize

from tests.e2e.daemon import Daemon
from tests.fakes.azure import FakeAzure
from tests.fakes.dashscope import FakeDashScope
from tests.wyoming_client import connect, read, read_until, send_utterance

REQUESTS = 200
WARM_UP = 100  # two fault cycles: the thread pool has grown to what this traffic needs
SETTLE_SECONDS = 15.0
# Pool threads are created on demand and kept; one more may be needed when a slow cleanup
# (the Azure SDK releasing a recognizer after a failure) overlaps the next request.
SPARE_THREADS = 2


def sockets_and_threads(pid: int) -> tuple[int, int]:
    fds = Path(f"/proc/{pid}/fd")
    sockets = 0
    for fd in fds.iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed while we looked
            sockets += os.readlink(fd).startswith("socket:")
    return sockets, len(os.listdir(f"/proc/{pid}/task"))


async def one_request(port: int, index: int) -> str:
    client = await connect(port)
    try:
        if index % 2:
            await client.write_event(Synthesize(text=f"第{index}句。").event())
            return (await read_until(client, "audio-stop"))[-1].type
        await send_utterance(client, bytes(6400), chunk_bytes=3200, language="zh")
        return (await read(client)).type
    finally:
        await client.disconnect()


async def test_200_requests_with_faults_leave_socket_and_thread_counts_flat(tmp_path):
    with FakeDashScope() as dashscope, FakeAzure() as azure:
        daemon = Daemon(
            tmp_path,
            f"""
speech:
  uri: LISTEN_URI
  asr: {{provider: [dashscope, azure], language: zh}}
  tts: {{provider: [dashscope, azure]}}
  failover: {{failures: 2, cooldown_s: 0.5}}
providers:
  dashscope: {{websocket_url: {dashscope.url}, timeouts: {{connect: 2, first_result: 2, total: 8}}}}
  azure: {{host: {azure.host}, asr: {{languages: [zh-CN]}}, tts: {{voice: zh-CN-XiaoxiaoNeural}}}}
""",
        )
        try:
            daemon.wait_listening()
            pid = daemon.process.pid
            outcomes, baseline = [], (0, 0)
            for index in range(REQUESTS):
                if index == WARM_UP:
                    await asyncio.sleep(2.0)
                    baseline = sockets_and_threads(pid)
                if index % 50 == 20:
                    dashscope.fault = "refuse"  # the primary goes away for 10 requests
                elif index % 50 == 30:
                    dashscope.fault = None
                outcomes.append(await one_request(daemon.port, index))
            assert outcomes.count("transcript") == outcomes.count("audio-stop") == REQUESTS // 2
            limit = (baseline[0], baseline[1] + SPARE_THREADS)
            deadline = time.monotonic() + SETTLE_SECONDS
            while time.monotonic() < deadline:
                now = sockets_and_threads(pid)
                if now[0] <= limit[0] and now[1] <= limit[1]:
                    break
                await asyncio.sleep(0.2)
            assert now[0] <= limit[0] and now[1] <= limit[1], (now, baseline)
        finally:
            assert daemon.stop() == 0, daemon.logs()
