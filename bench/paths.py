"""Latency and cost of each provider path, cold and warm, and what failover costs.

The daemon process runs against the fake providers, each answering after a fixed delay.
Prints, per path: TTS request -> client's first audio-chunk, and the provider's first audio
-> client's first audio-chunk; ASR audio-stop -> transcript, the audio sent in real time;
each with connections opened on demand (cold, warm_connections: 0) and ahead of requests
(warm, warm_connections: 1), with the CPU seconds per request and the peak RSS of the daemon
and its provider workers.
Under each path, the same requests made with the SDK directly, with its default settings
(``bench/sdk_direct.py``, in its own process). Then the latency a failover list adds when
its first provider refuses connections and when it times out.
Run: .venv/bin/python -m bench.paths [--runs N] [--delay S] [--asr-seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from wyoming.tts import Synthesize

from bench.proc import family_cpu_seconds, family_mb
from bench.speech_endpoint import percentile
from satellite.providers.base import Deadlines
from tests.e2e.daemon import Daemon
from tests.fakes.azure import FakeAzure
from tests.fakes.dashscope import FakeDashScope
from tests.fakes.dashscope_http import EVENT_SECONDS as HTTP_EVENT_SECONDS
from tests.fakes.dashscope_http import FakeDashScopeHttp
from tests.fakes.dashscope_realtime import FakeDashScopeRealtime
from tests.wyoming_client import connect, read, read_until, send_utterance

TEXT = "客厅的灯已经打开了。"
CHUNK_BYTES = 3200  # 100 ms of 16 kHz mono s16le
CHUNK_S = 0.1
PAUSE_S = 0.05  # between requests: lets a warm pool replenish as it would between commands
# Up to this much more, at random: requests at a fixed period can fall in step with an SDK's
# own timers and land in the same phase of them every time, in one daemon and not the other.
PAUSE_JITTER_S = 0.02
STALL_FIRST_RESULT_S = 1.0
STALL_TIMEOUTS = Deadlines(connect=3, first_result=STALL_FIRST_RESULT_S, total=20)


@dataclass
class Fakes:
    dashscope: FakeDashScope
    realtime: FakeDashScopeRealtime
    azure: FakeAzure
    http: FakeDashScopeHttp


@contextlib.contextmanager
def running_fakes(delay: float, pace: float = 0.0) -> Iterator[Fakes]:
    """The fake providers on 127.0.0.1, each answering after ``delay`` seconds and speaking
    at ``pace`` seconds per second of audio (0: all of it at once)."""
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    with (
        FakeDashScope() as dashscope,
        FakeDashScopeRealtime() as realtime,
        FakeAzure() as azure,
        FakeDashScopeHttp() as http,
    ):
        for fake in (dashscope, realtime, azure, http):
            fake.delay = delay
        for fake in (dashscope, realtime, azure):
            fake.pace = pace
        http.interval = pace * HTTP_EVENT_SECONDS
        yield Fakes(dashscope, realtime, azure, http)


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
    isolation: str = "inline",
) -> str:
    """The providers section for the fakes; ``timeouts`` per provider name (by default a
    short first_result for DashScope, the config's defaults for the others). The SDKs run
    in the daemon (``isolation``), as in the direct-SDK rows: bench/isolation.py compares."""
    timeouts = {"dashscope": STALL_TIMEOUTS} if timeouts is None else timeouts

    def timeouts_line(provider: str) -> str:
        deadlines = timeouts.get(provider)
        return "" if deadlines is None else f"    timeouts: {timeouts_yaml(deadlines)}\n"

    models = "".join(
        f"    {role}: {{model: {model}}}\n" for role, model in dashscope_models.items()
    )
    return f"""
providers:
  isolation: {isolation}
  dashscope:
    websocket_url: {fakes.dashscope.url}
    realtime_url: {fakes.realtime.url}
    http_url: {fakes.http.url}
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
    isolation: str = "inline",
) -> str:
    return f"""
speech:
  uri: LISTEN_URI
  asr: {{provider: {asr}, language: zh}}
  tts: {{provider: {tts}}}
  failover: {{failures: {failures}, cooldown_s: 600}}
{provider_blocks(fakes, warm, models or {}, isolation=isolation)}"""


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"p50 {statistics.median(values):7.1f}  p95 {percentile(values, 0.95):7.1f} ms"


def cost(cpu_per_request: float, peak_rss_mb: float) -> str:
    return f"CPU {cpu_per_request:6.3f} s/request  peak RSS {peak_rss_mb:5.1f} MB"


@dataclass
class Measured:
    """What one daemon used while its requests ran."""

    cpu_per_request: float = 0.0
    peak_rss_mb: float = 0.0


@contextlib.contextmanager
def measured(daemon: Daemon, runs: int) -> Iterator[Measured]:
    """The CPU seconds per request over the block of the daemon and its workers, and their
    peak RSS after it."""
    result = Measured()
    pid = daemon.process.pid
    started = family_cpu_seconds(pid)
    yield result
    result.cpu_per_request = (family_cpu_seconds(pid) - started) / runs
    result.peak_rss_mb = family_mb(pid, "VmHWM")


async def sdk_direct(path: str, url: str, runs: int, asr_seconds: float) -> str:
    """The row for the same requests made with the SDK directly, with its defaults."""
    label = "  the SDK directly, its defaults"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.sdk_direct", path, "--url", url,
        "--runs", str(runs), "--seconds", str(asr_seconds),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    output, _ = await process.communicate()
    if process.returncode != 0:
        return f"  {label:42} failed (exit {process.returncode})"
    figures = json.loads(output.decode().splitlines()[-1])
    return (
        f"  {label:42} cold  {summary(figures['latency_ms'])}"
        f" | {cost(figures['cpu_s'], figures['peak_rss_mb'])}"
    )


@dataclass(frozen=True)
class ProviderPath:
    """One provider path: how the daemon is configured for it, and its direct-SDK twin."""

    label: str
    provider: str
    direct: str | None  # bench.sdk_direct's name for it; None: no SDK (espeak-ng)
    url: Callable[[Fakes], str] = lambda fakes: ""
    models: dict[str, str] = field(default_factory=dict)
    first_audio_sent: Callable[[Fakes], list[float]] | None = None  # TTS: the fake's stamps
    warm: bool = True  # warm_connections applies (HTTP: none are opened ahead)


TTS_PATHS = [
    ProviderPath(
        "CosyVoice (cosyvoice-v2)",
        "dashscope",
        "cosyvoice",
        lambda f: f.dashscope.url,
        first_audio_sent=lambda f: f.dashscope.first_audio_sent,
    ),
    ProviderPath(
        "Qwen realtime (qwen3-tts-flash-realtime)",
        "dashscope",
        "qwen-tts",
        lambda f: f.realtime.url,
        {"tts": "qwen3-tts-flash-realtime"},
        lambda f: f.realtime.first_audio_sent,
    ),
    ProviderPath(
        "Qwen HTTP (qwen3-tts-flash)",
        "dashscope",
        "qwen-http-tts",
        lambda f: f.http.url,
        {"tts": "qwen3-tts-flash"},
        lambda f: [r.first_audio_at or 0.0 for r in f.http.requests],
        warm=False,
    ),
    ProviderPath(
        "Azure",
        "azure",
        "azure-tts",
        lambda f: f.azure.host,
        first_audio_sent=lambda f: f.azure.first_audio_sent,
    ),
    ProviderPath("espeak-ng (offline)", "espeak", None),
]
ASR_PATHS = [
    ProviderPath(
        "paraformer (paraformer-realtime-v2)", "dashscope", "paraformer", lambda f: f.dashscope.url
    ),
    ProviderPath(
        "Qwen realtime (qwen3-asr-flash-realtime)",
        "dashscope",
        "qwen-asr",
        lambda f: f.realtime.url,
        {"asr": "qwen3-asr-flash-realtime"},
    ),
    ProviderPath("Azure", "azure", "azure-asr", lambda f: f.azure.host),
]


async def tts_latency(
    port: int, runs: int, first_audio_sent: Callable[[], list[float]] | None
) -> tuple[list[float], list[float]]:
    """(request -> first audio-chunk, provider's first audio -> first audio-chunk), in ms."""
    to_chunk, after_provider = [], []
    for _ in range(runs):
        await asyncio.sleep(PAUSE_S + random.uniform(0, PAUSE_JITTER_S))
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


async def asr_latency(port: int, runs: int, seconds: float) -> list[float]:
    """Milliseconds from audio-stop to transcript; ``seconds`` of audio sent in real time."""
    utterance = bytes(round(seconds / CHUNK_S) * CHUNK_BYTES)
    results = []
    for _ in range(runs):
        await asyncio.sleep(PAUSE_S + random.uniform(0, PAUSE_JITTER_S))
        client = await connect(port)
        await send_utterance(client, utterance, CHUNK_BYTES, language="zh", pause_s=CHUNK_S)
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


async def bench_tts(fakes: Fakes, workdir: Path, runs: int, asr_seconds: float) -> None:
    print(
        "TTS: request -> first audio-chunk | provider's first audio -> first audio-chunk"
        " | daemon CPU per request, peak RSS"
    )
    for path in TTS_PATHS:
        sent = path.first_audio_sent
        stamps = None if sent is None else functools.partial(sent, fakes)
        # espeak-ng has no connection to keep warm; the HTTP path keeps its connection alive
        # between requests but opens none ahead.
        for warm in (0, 1) if path.direct and path.warm else (0,):
            text = config(fakes, "azure", path.provider, warm, models=path.models)
            async with daemon_for(workdir, text) as daemon:
                with measured(daemon, runs) as used:
                    to_chunk, after = await tts_latency(daemon.port, runs, stamps)
            print(
                f"  {path.label:42} {'warm' if warm else 'cold'}  {summary(to_chunk)}"
                f" | {summary(after)} | {cost(used.cpu_per_request, used.peak_rss_mb)}"
            )
        if path.direct:
            print(await sdk_direct(path.direct, path.url(fakes), runs, asr_seconds))


async def bench_asr(fakes: Fakes, workdir: Path, runs: int, asr_seconds: float) -> None:
    print(
        f"ASR: audio-stop -> transcript ({asr_seconds:g} s of audio in real time)"
        " | daemon CPU per request, peak RSS"
    )
    for path in ASR_PATHS:
        for warm in (0, 1):
            text = config(fakes, path.provider, "azure", warm, models=path.models)
            async with daemon_for(workdir, text) as daemon:
                with measured(daemon, runs) as used:
                    latency = await asr_latency(daemon.port, runs, asr_seconds)
            print(
                f"  {path.label:42} {'warm' if warm else 'cold'}  {summary(latency)}"
                f" | {cost(used.cpu_per_request, used.peak_rss_mb)}"
            )
        assert path.direct is not None
        print(await sdk_direct(path.direct, path.url(fakes), runs, asr_seconds))


async def bench_failover(fakes: Fakes, workdir: Path, runs: int, asr_seconds: float) -> None:
    print("Failover [dashscope, azure] vs azure alone (p50 added latency)")
    async with daemon_for(workdir, config(fakes, "azure", "azure", 1)) as daemon:
        base_tts, _ = await tts_latency(daemon.port, runs, None)
        base_asr = await asr_latency(daemon.port, runs, asr_seconds)
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
                asr = await asr_latency(daemon.port, runs, asr_seconds)
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
    parser.add_argument(
        "--asr-seconds", type=float, default=2.0, help="audio per ASR request, sent in real time"
    )
    args = parser.parse_args()
    with running_fakes(args.delay) as fakes, tempfile.TemporaryDirectory() as tmp:
        print(f"voice-satellite provider paths ({os.cpu_count()} CPUs, fake delay {args.delay} s)")
        sections = {"tts": bench_tts, "asr": bench_asr, "failover": bench_failover}
        for name, section in sections.items():
            if args.only in (None, name):
                await section(fakes, Path(tmp), args.runs, args.asr_seconds)


if __name__ == "__main__":
    asyncio.run(main())
