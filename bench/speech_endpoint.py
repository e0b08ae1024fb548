"""Speech endpoint benchmark: the daemon process against the fake providers (no delay).

Prints, per provider: daemon readiness, ASR overhead (audio-stop -> transcript) with
real-time-paced audio, TTS delay from the provider's first audio to the client's first
audio-chunk, each with the CPU seconds per request of the daemon and its provider workers,
and 10 concurrent ASR + 10 concurrent TTS sessions with their peak RSS (the sum of each
process's peak); then the peak RSS with both providers in use.
Run: .venv/bin/python -m bench.speech_endpoint [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.tts import Synthesize

from bench.proc import family_cpu_seconds, family_mb
from tests.e2e.daemon import Daemon
from tests.fakes.azure import FakeAzure
from tests.fakes.dashscope import FakeDashScope
from tests.wyoming_client import audio_of, connect, read, read_until, send_utterance

CHUNK_BYTES = 640  # 20 ms of 16 kHz mono s16le, as a satellite streams it
UTTERANCE_SECONDS = 1.0


def config_for(asr: str, tts: str, dashscope: FakeDashScope, azure: FakeAzure) -> str:
    voice = "longxiaochun_v2" if tts == "dashscope" else "en-US-JennyNeural"
    return f"""
speech:
  uri: LISTEN_URI
  asr: {{provider: {asr}, language: {"zh" if asr == "dashscope" else "en-US"}}}
  tts: {{provider: {tts}, voice: {voice}}}
providers:
  dashscope: {{websocket_url: "{dashscope.url}"}}
  azure: {{host: "{azure.host}", asr: {{languages: [en-US, zh-CN]}}}}
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(values_ms: list[float]) -> str:
    return (
        f"p50 {statistics.median(values_ms):6.1f} ms  p95 {percentile(values_ms, 0.95):6.1f} ms"
        f"  max {max(values_ms):6.1f} ms  (n={len(values_ms)})"
    )


async def asr_overhead(port: int, runs: int) -> list[float]:
    """Milliseconds from audio-stop to transcript, audio paced in real time."""
    results = []
    silence = bytes(CHUNK_BYTES)
    for _ in range(runs):
        client = await connect(port)
        chunks = int(UTTERANCE_SECONDS * 16000 * 2 / CHUNK_BYTES)
        paced = time.monotonic()
        await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        for index in range(chunks):
            await client.write_event(AudioChunk(16000, 2, 1, silence).event())
            await asyncio.sleep(max(0.0, paced + (index + 1) * 0.02 - time.monotonic()))
        stopped = time.monotonic()
        await client.write_event(AudioStop().event())
        event = await read(client)
        assert event.type == "transcript", event.data
        results.append((time.monotonic() - stopped) * 1000)
        await client.disconnect()
    return results


async def tts_first_audio(port: int, fake: FakeDashScope | FakeAzure, runs: int) -> list[float]:
    """Milliseconds from the fake sending its first audio to the client receiving it."""
    results = []
    for _ in range(runs):
        client = await connect(port)
        await client.write_event(Synthesize(text="The kitchen light is on.").event())
        while (event := await read(client)).type != "audio-chunk":
            assert event.type == "audio-start", event.data
        received = time.monotonic()
        await read_until(client, "audio-stop")
        results.append((received - fake.first_audio_sent[-1]) * 1000)
        await client.disconnect()
    return results


async def concurrent(port: int, sessions: int) -> tuple[int, int]:
    """Runs ``sessions`` ASR and ``sessions`` TTS requests at once; returns (ok, failed)."""

    async def transcribe() -> bool:
        client = await connect(port)
        await send_utterance(client, bytes(32000), CHUNK_BYTES)
        event = await read(client, timeout=30)
        await client.disconnect()
        return event.type == "transcript"

    async def speak() -> bool:
        client = await connect(port)
        await client.write_event(Synthesize(text="Concurrent speech.").event())
        events = await read_until(client, "audio-stop", timeout=30)
        await client.disconnect()
        return events[-1].type == "audio-stop" and bool(audio_of(events))

    outcomes = await asyncio.gather(
        *(transcribe() for _ in range(sessions)), *(speak() for _ in range(sessions))
    )
    return sum(outcomes), len(outcomes) - sum(outcomes)


async def bench_provider(name: str, dashscope, azure, workdir: Path, runs: int) -> None:
    fake = dashscope if name == "dashscope" else azure
    config = config_for(name, name, dashscope, azure)
    ready = []
    for _ in range(5):
        daemon = Daemon(workdir, config)
        try:
            ready.append(daemon.wait_listening() * 1000)
        finally:
            daemon.stop()
    daemon = Daemon(workdir, config)
    try:
        daemon.wait_listening()
        pid = daemon.process.pid
        started = family_cpu_seconds(pid)
        overhead = await asr_overhead(daemon.port, runs)
        asr_cpu = (family_cpu_seconds(pid) - started) / runs
        started = family_cpu_seconds(pid)
        first_audio = await tts_first_audio(daemon.port, fake, runs)
        tts_cpu = (family_cpu_seconds(pid) - started) / runs
        ok, failed = await concurrent(daemon.port, 10)
        peak_rss = family_mb(pid, "VmHWM")
    finally:
        daemon.stop()
    print(f"[{name}]")
    print(f"  daemon ready (listening)        {summary(ready)}")
    print(f"  ASR audio-stop -> transcript    {summary(overhead)}  CPU {asr_cpu:.3f} s/request")
    print(f"  TTS provider audio -> client    {summary(first_audio)}  CPU {tts_cpu:.3f} s/request")
    print(f"  10 ASR + 10 TTS concurrent      {ok} ok, {failed} failed; peak RSS {peak_rss:.1f} MB")


async def bench_rss(dashscope, azure, workdir: Path) -> None:
    for asr, tts in (("dashscope", "azure"), ("azure", "dashscope")):
        daemon = Daemon(workdir, config_for(asr, tts, dashscope, azure))
        try:
            daemon.wait_listening()
            ok, failed = await concurrent(daemon.port, 10)
            rss = family_mb(daemon.process.pid, "VmHWM")
        finally:
            daemon.stop()
        print(f"peak RSS, ASR {asr} + TTS {tts} in use: {rss:.1f} MB ({ok} ok, {failed} failed)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="requests per latency figure")
    args = parser.parse_args()
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    with FakeDashScope() as dashscope, FakeAzure() as azure, tempfile.TemporaryDirectory() as tmp:
        print(f"voice-satellite speech endpoint benchmark ({os.cpu_count()} CPUs)")
        for name in ("dashscope", "azure"):
            await bench_provider(name, dashscope, azure, Path(tmp), args.runs)
        await bench_rss(dashscope, azure, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
