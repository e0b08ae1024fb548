"""Latency of each provider path, cold and warm, and what failover costs.

The daemon process runs against the fake providers, each answering after a fixed delay.
Prints, per path: TTS request -> client's first audio-chunk, and the provider's first audio
-> client's first audio-chunk; ASR audio-stop -> transcript; each with connections opened on
demand (cold, warm_connections: 0) and ahead of requests (warm, warm_connections: 1). Then
the latency a failover list adds when its first provider refuses connections and when it
times out. Run: .venv/bin/python -m bench.paths [--runs N] [--delay S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from wyoming.tts import Synthesize

from bench.speech_endpoint import percentile
from satellite.providers.base import Deadlines
from tests.e2e.daemon import Daemon
from tests.fakes.azure import FakeAzure
from tests.fakes.dashscope import FakeDashScope
from tests.fakes.dashscope_realtime import FakeDashScopeRealtime
from tests.wyoming_client import connect, read, read_until, send_utterance

TEXT = "客厅的灯已经打开了。"
UTTERANCE = bytes(16000)  # 0.5 s of 16 kHz mono s16le
CHUNK_BYTES = 3200
PAUSE_S = 0.05  # between requests: lets a warm pool replenish as it would between commands
STALL_FIRST_RESULT_S = 1.0
STALL_TIMEOUTS = Deadlines(connect=3, first_result=STALL_FIRST_RESULT_S, total=20)


@dataclass
class Fakes:
    dashscope: FakeDashScope
    realtime: FakeDashScopeRealtime
    azure: FakeAzure


@contextlib.contextmanager
def running_fakes(delay: float) -> Iterator[Fakes]:
    """The fake providers on 127.0.0.1, each answering after ``delay`` seconds."""
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    with FakeDashScope() as dashscope, FakeDashScopeRealtime() as realtime, FakeAzure() as azure:
        for fake in (dashscope, realtime, azure):
            fake.delay = delay
        yield Fakes(dashscope, realtime, azure)


def timeouts_yaml(deadlines: Deadlines) -> str:
    return (
        f"{{connect: {deadlines.connect:g}, first_result: {deadlines.first_result:g},"
        f" total: {deadlines.total:g}}}"
    )


def provider_blocks(
    fakes: Fakes,
    warm: int,
    dashscope_models: dict[str, str],
    timeouts: dict[str, Deadlines] | None = None,
) -> str:
    """The providers section for the fakes; ``timeouts`` per provider name (by default a
    short first_result for DashScope, the config's defaults for the others)."""
    timeouts = {"dashscope": STALL_TIMEOUTS} if timeouts is None else timeouts

    def timeouts_line(provider: str) -> str:
        deadlines = timeouts.get(provider)
        return "" if deadlines is None else f"    timeouts: {timeouts_yaml(deadlines)}\n"

    models = "".join(
        f"    {role}: {{model: {model}}}\n" for role, model in dashscope_models.items()
    )
    return f"""
providers:
  dashscope:
    websocket_url: {fakes.dashscope.url}
    realtime_url: {fakes.realtime.url}
    warm_connections: {warm}
{timeouts_line("dashscope")}{models}  azure:
    host: {fakes.azure.host}
    warm_connections: {warm}
    asr: {{languages: [zh-CN, en-US]}}
    tts: {{voice: zh-CN-XiaoxiaoNeural}}
{timeouts_line("azure")}  espeak:
    voice: cmn
{timeouts_line("espeak")}"""


def config(
    fakes: Fakes,
    asr: str,
    tts: str,
    warm: int,
    failures: int = 3,
    models: dict[str, str] | None = None,
) -> str:
    return f"""
speech:
  uri: LISTEN_URI
  asr: {{provider: {asr}, language: zh}}
  tts: {{provider: {tts}}}
  failover: {{failures: {failures}, cooldown_s: 600}}
{provider_blocks(fakes, warm, models or {})}"""


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"p50 {statistics.median(values):7.1f}  p95 {percentile(values, 0.95):7.1f} ms"


async def tts_latency(
    port: int, runs: int, first_audio_sent: Callable[[], list[float]] | None
) -> tuple[list[float], list[float]]:
    """(request -> first audio-chunk, provider's first audio -> first audio-chunk), in ms."""
    to_chunk, after_provider = [], []
    for _ in range(runs):
        await asyncio.sleep(PAUSE_S)
        client = await connect(port)
        sent = time.monotonic()
        await client.write_event(Synthesize(text=TEXT).event())
        while (event := await read(client)).type != "audio-chunk":
            assert event.type == "audio-start", event.data
        received = time.monotonic()
        await read_until(client, "audio-stop")
        await client.disconnect()
        to_chunk.append((received - sent) * 1000)
        if first_audio_sent is not None:
            after_provider.append((received - first_audio_sent()[-1]) * 1000)
    return to_chunk, after_provider


async def asr_latency(port: int, runs: int) -> list[float]:
    """Milliseconds from audio-stop to transcript."""
    results = []
    for _ in range(runs):
        await asyncio.sleep(PAUSE_S)
        client = await connect(port)
        await send_utterance(client, UTTERANCE, CHUNK_BYTES, language="zh")
        stopped = time.monotonic()  # send_utterance's last write is audio-stop
        event = await read(client)
        assert event.type == "transcript", event.data
        results.append((time.monotonic() - stopped) * 1000)
        await client.disconnect()
    return results


@contextlib.asynccontextmanager
async def daemon_for(workdir: Path, text: str):
    daemon = Daemon(workdir, text)
    try:
        daemon.wait_listening()
        await asyncio.sleep(0.5)  # warm connections open after the server listens
        yield daemon
    finally:
        daemon.stop()


async def bench_tts(fakes: Fakes, workdir: Path, runs: int) -> None:
    paths = [
        ("CosyVoice (cosyvoice-v2)", "dashscope", {}, lambda: fakes.dashscope.first_audio_sent),
        (
            "Qwen realtime (qwen3-tts-flash-realtime)",
            "dashscope",
            {"tts": "qwen3-tts-flash-realtime"},
            lambda: fakes.realtime.first_audio_sent,
        ),
        ("Azure", "azure", {}, lambda: fakes.azure.first_audio_sent),
        ("espeak-ng (offline)", "espeak", {}, None),
    ]
    print("TTS: request -> first audio-chunk | provider's first audio -> first audio-chunk")
    for label, provider, models, stamps in paths:
        for warm in (0, 1):
            text = config(fakes, "azure", provider, warm, models=models)
            async with daemon_for(workdir, text) as daemon:
                to_chunk, after = await tts_latency(daemon.port, runs, stamps)
            state = "warm" if warm else "cold"
            print(f"  {label:42} {state}  {summary(to_chunk)} | {summary(after)}")
            if provider == "espeak":
                break  # no connection to keep warm


async def bench_asr(fakes: Fakes, workdir: Path, runs: int) -> None:
    paths = [
        ("paraformer (paraformer-realtime-v2)", "dashscope", {}),
        (
            "Qwen realtime (qwen3-asr-flash-realtime)",
            "dashscope",
            {"asr": "qwen3-asr-flash-realtime"},
        ),
        ("Azure", "azure", {}),
    ]
    print("ASR: audio-stop -> transcript")
    for label, provider, models in paths:
        for warm in (0, 1):
            text = config(fakes, provider, "azure", warm, models=models)
            async with daemon_for(workdir, text) as daemon:
                latency = await asr_latency(daemon.port, runs)
            print(f"  {label:42} {'warm' if warm else 'cold'}  {summary(latency)}")


async def bench_failover(fakes: Fakes, workdir: Path, runs: int) -> None:
    print("Failover [dashscope, azure] vs azure alone (p50 added latency)")
    async with daemon_for(workdir, config(fakes, "azure", "azure", 1)) as daemon:
        base_tts, _ = await tts_latency(daemon.port, runs, None)
        base_asr = await asr_latency(daemon.port, runs)
    for fault, failures, label in (
        ("refuse", 100, "primary refuses (breaker kept closed)"),
        ("refuse", 3, "primary refuses (breaker opens after 3)"),
        ("stall", 100, f"primary stalls (first_result {STALL_FIRST_RESULT_S:g} s)"),
    ):
        fakes.dashscope.fault = fault
        chain = "[dashscope, azure]"
        try:
            async with daemon_for(workdir, config(fakes, chain, chain, 1, failures)) as daemon:
                tts, _ = await tts_latency(daemon.port, runs, None)
                asr = await asr_latency(daemon.port, runs)
        finally:
            fakes.dashscope.fault = None
        added_tts = statistics.median(tts) - statistics.median(base_tts)
        added_asr = statistics.median(asr) - statistics.median(base_asr)
        print(f"  {label:42} TTS +{added_tts:7.1f} ms   ASR +{added_asr:7.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="requests per figure")
    parser.add_argument("--delay", type=float, default=0.05, help="each fake's answer delay, s")
    parser.add_argument(
        "--only", choices=("tts", "asr", "failover"), help="run one section of the benchmark"
    )
    args = parser.parse_args()
    with running_fakes(args.delay) as fakes, tempfile.TemporaryDirectory() as tmp:
        print(f"voice-satellite provider paths ({os.cpu_count()} CPUs, fake delay {args.delay} s)")
        sections = {"tts": bench_tts, "asr": bench_asr, "failover": bench_failover}
        for name, section in sections.items():
            if args.only in (None, name):
                await section(fakes, Path(tmp), args.runs)


if __name__ == "__main__":
    asyncio.run(main())
