"""Provider SDKs in worker processes (``providers.isolation: process``), through the daemon
process: a worker that crashes, is killed or hangs costs its requests in flight (an
``error``, or the next provider of a failover list), never the daemon; it is replaced and
the next request is served. Workers are recycled without losing a request, replaced after
a reload that changes their provider, and closed with the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.info import Describe, Info
from wyoming.tts import SynthesizeChunk, SynthesizeStart, SynthesizeStop

from satellite.providers.supervisor import MAX_BACKOFF_S
from tests.audio.speech import silence, write_wav
from tests.e2e.daemon import (
    REPO,
    TEST_KEYS,
    Daemon,
    free_port,
    launchers_of,
    openssl_in,
    port_open,
    status_file,
    status_line,
    worker_round_trip_ms,
    workers_of,
)
from tests.fakes.azure import FakeAzure
from tests.fakes.dashscope import FakeDashScope
from tests.faults.clouds import (
    CLOUDS,
    SPEECH,
    TOTAL_S,
    Cloud,
    check_answer,
    config_for,
    synthesize,
    transcribe,
)
from tests.faults.common import MARGIN_S, check_log, read_synthesis
from tests.wyoming_client import audio_of, connect, read, send_utterance

ISOLATED = "  isolation: process\n"  # appended under ``providers:``
WAIT_S = 15.0  # bound on every poll for what the daemon does in the background


def wait_for(what: str, check, timeout: float = WAIT_S):
    """Poll ``check`` until it returns something true (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not after {timeout} s")


def replaced(daemon: Daemon, provider: str, old_pid: int, timeout: float = WAIT_S) -> int:
    """The pid of the worker that replaced ``old_pid``, once it runs."""

    def new_pid() -> int | None:
        pid = workers_of(daemon.process.pid).get(provider)
        return pid if pid not in (None, old_pid) else None

    return wait_for(f"a new {provider} worker", new_pid, timeout)


@contextlib.contextmanager
def isolated_daemon(
    workdir: Path, config: str, env: dict[str, str] | None = None
) -> Iterator[Daemon]:
    """A daemon (LISTEN_URI filled in) keeping its status line in ``workdir/run``; stopped
    at the end, which must exit 0, leave no worker behind and log no traceback or key."""
    (workdir / "run").mkdir(exist_ok=True)
    daemon = Daemon(workdir, config, env={"RUNTIME_DIRECTORY": str(workdir / "run"), **(env or {})})
    try:
        daemon.wait_listening()
        yield daemon
        assert daemon.process.poll() is None, f"the daemon died:\n{daemon.logs()}"
        children = [*launchers_of(daemon.process.pid).values()]
        children += workers_of(daemon.process.pid).values()
        assert daemon.stop() == 0, daemon.logs()
        for pid in children:
            assert _gone(pid), daemon.logs()
        check_log(daemon.logs())
    finally:
        daemon.stop()


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return True


def azure_cloud(fake: FakeAzure, daemon: Daemon) -> Cloud:
    return Cloud("azure", fake, daemon, *CLOUDS["azure"][1:])


async def test_corrupt_frame_during_azure_recognition_costs_the_worker_not_the_daemon(
    tmp_path,
):
    with FakeAzure() as fake, isolated_daemon(tmp_path, config_for(fake) + ISOLATED) as daemon:
        cloud = azure_cloud(fake, daemon)
        await check_answer(cloud, "asr")
        fake.fault = "corrupt"
        event, _ = await transcribe(cloud)
        assert event.type == "error" and event.data.get("code") == "provider-failed", event
        assert "worker died (SIGSEGV)" in event.data["text"]
        fake.fault = None
        await check_answer(cloud, "asr")
        await check_answer(cloud, "tts")
        assert daemon.logs().count("azure worker died (SIGSEGV); restarting") == 1
        wait_for("the restart in the status", lambda: "worker restarts: 1" in status_line(tmp_path))


async def test_corrupt_frame_during_azure_recognition_fails_over_to_the_next_provider(
    tmp_path,
):
    with FakeAzure() as azure, FakeDashScope() as dashscope:
        config = f"""speech:
  uri: LISTEN_URI
  asr: {{provider: [azure, dashscope], language: zh}}
  tts: {{provider: dashscope}}
  failover: {{failures: 2, cooldown_s: 600}}
providers:
  dashscope: {{websocket_url: {dashscope.url}}}
  azure: {{host: {azure.host}, asr: {{languages: [zh-CN]}}}}
{ISOLATED}"""
        with isolated_daemon(tmp_path, config) as daemon:
            azure.fault = "corrupt"
            for _ in range(2):  # the breaker counts each crash as a failure
                client = await connect(daemon.port)
                try:
                    await send_utterance(client, SPEECH, chunk_bytes=3200, language="zh")
                    event = await read(client, TOTAL_S + MARGIN_S)
                finally:
                    await client.disconnect()
                transcript = CLOUDS["dashscope"][2]
                assert (event.type, event.data.get("text")) == ("transcript", transcript)
            logs = daemon.logs()
            assert logs.count("azure worker died (SIGSEGV); restarting") == 2
            assert "ASR azure failed 2 times in a row: skipped for 600 s" in logs


async def test_a_worker_killed_mid_recognition_ends_its_request_and_is_replaced(tmp_path):
    with FakeAzure() as fake, isolated_daemon(tmp_path, config_for(fake) + ISOLATED) as daemon:
        cloud = azure_cloud(fake, daemon)
        pid = workers_of(daemon.process.pid)["azure"]
        client = await connect(daemon.port)
        try:
            await client.write_event(Transcribe(language="en-US").event())
            await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            chunk = AudioChunk(rate=16000, width=2, channels=1, audio=SPEECH[:3200]).event()
            for _ in range(5):
                await client.write_event(chunk)
            wait_for("audio at the fake", lambda: fake.streamed_bytes > 0)
            os.kill(pid, signal.SIGKILL)
            await client.write_event(chunk)
            await client.write_event(AudioStop().event())
            event = await read(client, TOTAL_S + MARGIN_S)
        finally:
            await client.disconnect()
        assert event.type == "error" and event.data.get("code") == "provider-failed", event
        assert "worker died (SIGKILL)" in event.data["text"]
        replaced(daemon, "azure", pid)
        await check_answer(cloud, "asr")
        assert daemon.logs().count("azure worker died (SIGKILL); restarting") == 1


async def test_a_death_reported_late_still_reaches_the_request_with_its_signal(tmp_path):
    """The launcher (which reaps the worker) is slow to report: the request's audio meets a
    broken socket first, and still ends with the worker's death and its signal."""
    with FakeAzure() as fake, isolated_daemon(tmp_path, config_for(fake) + ISOLATED) as daemon:
        launcher = launchers_of(daemon.process.pid)["azure"]
        pid = workers_of(daemon.process.pid)["azure"]
        client = await connect(daemon.port)
        chunk = AudioChunk(rate=16000, width=2, channels=1, audio=SPEECH[:3200]).event()
        try:
            await client.write_event(Transcribe(language="en-US").event())
            await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            await client.write_event(chunk)
            wait_for("audio at the fake", lambda: fake.streamed_bytes > 0)
            os.kill(launcher, signal.SIGSTOP)
            try:
                os.kill(pid, signal.SIGKILL)
                for _ in range(3):  # into the broken socket
                    await client.write_event(chunk)
                    await asyncio.sleep(0.1)
                await client.write_event(AudioStop().event())
                await asyncio.sleep(0.3)
            finally:
                os.kill(launcher, signal.SIGCONT)
            event = await read(client, TOTAL_S + MARGIN_S)
        finally:
            await client.disconnect()
        assert event.type == "error" and event.data.get("code") == "provider-failed", event
        assert "worker died (SIGKILL)" in event.data["text"], event
        replaced(daemon, "azure", pid)
        await check_answer(azure_cloud(fake, daemon), "asr")


async def test_a_killed_launcher_takes_its_worker_and_both_come_back(tmp_path):
    with FakeAzure() as fake, isolated_daemon(tmp_path, config_for(fake) + ISOLATED) as daemon:
        cloud = azure_cloud(fake, daemon)
        launcher = launchers_of(daemon.process.pid)["azure"]
        pid = workers_of(daemon.process.pid)["azure"]
        os.kill(launcher, signal.SIGKILL)
        replaced(daemon, "azure", pid)
        assert launchers_of(daemon.process.pid)["azure"] != launcher
        await check_answer(cloud, "asr")
        await check_answer(cloud, "tts")
        logs = daemon.logs()
        assert "azure worker launcher ended (SIGKILL) and its worker with it" in logs
        assert logs.count("azure worker died (SIGKILL); restarting") == 1


async def test_a_worker_killed_mid_synthesis_ends_its_request_and_is_replaced(tmp_path):
    with (
        FakeAzure(pace=1.0) as fake,
        isolated_daemon(tmp_path, config_for(fake) + ISOLATED) as daemon,
    ):
        cloud = azure_cloud(fake, daemon)
        pid = workers_of(daemon.process.pid)["azure"]
        client = await connect(daemon.port)
        try:
            await client.write_event(SynthesizeStart().event())
            await client.write_event(SynthesizeChunk(text="A long answer to speak. ").event())
            await client.write_event(SynthesizeStop().event())
            while (event := await read(client, TOTAL_S)).type != "audio-chunk":
                assert event.type == "audio-start", event
            os.kill(pid, signal.SIGKILL)
            events, _ = await read_synthesis(client, TOTAL_S + MARGIN_S)
        finally:
            await client.disconnect()
        errors = [event for event in events if event.type == "error"]
        assert len(errors) == 1 and errors[0].data.get("code") == "provider-failed", events
        assert events[-1].type == "synthesize-stopped"
        replaced(daemon, "azure", pid)
        fake.pace = 0.0
        await check_answer(cloud, "tts")


def breakable_workers(workdir: Path) -> tuple[dict[str, str], Path]:
    """The environment of a daemon whose new workers exit at once (status 3) while the
    returned file exists, as when an SDK cannot start in a new process."""
    site = workdir / "site"
    site.mkdir()
    broken = workdir / "workers-broken"
    (site / "sitecustomize.py").write_text(
        "import os, sys\n"
        "def _broken():\n"
        f"    if os.path.exists({str(broken)!r}):\n"
        "        os._exit(3)\n"
        "if 'satellite.providers.fork_server' in sys.orig_argv:\n"
        "    os.register_at_fork(after_in_child=_broken)\n"
    )
    return {"PYTHONPATH": str(site)}, broken


def start_failures(logs: str) -> list[int]:
    """The waits before the next try, in seconds, of each logged failure to start."""
    return [
        int(wait)
        for wait in re.findall(
            r"azure worker did not start: it ended \(exit status 3\); next try in (\d+) s", logs
        )
    ]


async def test_a_worker_that_cannot_start_is_retried_ever_less_often_and_comes_back(tmp_path):
    env, broken = breakable_workers(tmp_path)
    with (
        FakeAzure() as fake,
        isolated_daemon(tmp_path, config_for(fake) + ISOLATED, env) as daemon,
    ):
        cloud = azure_cloud(fake, daemon)
        pid = workers_of(daemon.process.pid)["azure"]
        broken.touch()
        os.kill(pid, signal.SIGKILL)
        wait_for("four failed starts", lambda: len(start_failures(daemon.logs())) >= 4, 30)
        assert "Unknown child process" not in daemon.logs()  # each exit read right
        waits = start_failures(daemon.logs())
        assert waits == sorted(waits) and waits[-1] >= 2, waits  # backing off, not spinning
        event, seconds = await transcribe(cloud)  # meanwhile: an error within the deadline
        assert event.type == "error" and event.data.get("code") in (
            "provider-failed",
            "connect-failed",
        ), event
        assert seconds < TOTAL_S
        broken.unlink()
        last_wait = start_failures(daemon.logs())[-1]
        replaced(daemon, "azure", pid, last_wait + WAIT_S)  # the next try comes back
        await check_answer(cloud, "asr")
        await check_answer(cloud, "tts")


async def voices_offered(port: int) -> list[str]:
    """The TTS voices the speech endpoint's info lists."""
    client = await connect(port)
    try:
        await client.write_event(Describe().event())
        info = Info.from_event(await read(client))
    finally:
        await client.disconnect()
    return [voice.name for program in info.tts for voice in program.voices]


async def test_a_worker_that_cannot_start_at_boot_leaves_the_rest_serving(tmp_path):
    env, broken = breakable_workers(tmp_path)
    broken.touch()
    with FakeAzure() as fake:
        config = config_for(fake).replace(
            "tts: {provider: azure}", "tts: {provider: [azure, espeak]}"
        )
        with isolated_daemon(tmp_path, config + ISOLATED, env) as daemon:
            cloud = azure_cloud(fake, daemon)
            assert "azure worker did not start" in daemon.logs()
            assert "the speech endpoint goes on without azure until it starts" in daemon.logs()
            assert "en-US-JennyNeural" not in await voices_offered(daemon.port)
            events, _ = await synthesize(cloud)  # espeak-ng answers
            assert [e.type for e in events][-2:] == ["audio-stop", "synthesize-stopped"], events
            assert audio_of(events) and not fake.received_ssml
            event, seconds = await transcribe(cloud)  # no other provider: an error, in time
            assert event.type == "error", event
            assert seconds < TOTAL_S

            broken.unlink()
            waits = start_failures(daemon.logs()) or [0]
            deadline = time.monotonic() + waits[-1] + WAIT_S  # the next try, then its start
            while "en-US-JennyNeural" not in await voices_offered(daemon.port):
                assert time.monotonic() < deadline, daemon.logs()
                await asyncio.sleep(0.1)
            await check_answer(cloud, "asr")
            await check_answer(cloud, "tts")


async def test_a_recycled_worker_whose_replacement_cannot_start_keeps_serving(tmp_path):
    env, broken = breakable_workers(tmp_path)
    with FakeAzure() as fake:
        config = config_for(fake) + ISOLATED + "  recycle_after_requests: 1\n"
        with isolated_daemon(tmp_path, config, env) as daemon:
            cloud = azure_cloud(fake, daemon)
            pid = workers_of(daemon.process.pid)["azure"]
            broken.touch()
            for _ in range(6):  # each asks for a recycling that fails: none is lost
                await check_answer(cloud, "asr")
            assert workers_of(daemon.process.pid)["azure"] == pid
            waits = start_failures(daemon.logs())
            assert waits == sorted(waits) and len(waits) < 6, waits  # tries backed off
            broken.unlink()

            deadline = time.monotonic() + MAX_BACKOFF_S + WAIT_S
            while workers_of(daemon.process.pid).get("azure") in (None, pid):
                assert time.monotonic() < deadline, "not recycled once its replacement could start"
                await check_answer(cloud, "tts")  # a request's end tries again, backed off
            await check_answer(cloud, "asr")


async def test_a_hung_worker_times_out_its_request_and_is_replaced(tmp_path):
    with FakeAzure() as fake, isolated_daemon(tmp_path, config_for(fake) + ISOLATED) as daemon:
        cloud = azure_cloud(fake, daemon)
        pid = workers_of(daemon.process.pid)["azure"]
        os.kill(pid, signal.SIGSTOP)
        try:
            event, _ = await transcribe(cloud)
            assert event.type == "error" and event.data.get("code") == "timeout", event
            replaced(daemon, "azure", pid)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        await check_answer(cloud, "asr")
        assert daemon.logs().count("azure worker does not answer (hung)") == 1


async def test_recycling_under_load_loses_no_request(tmp_path):
    with FakeAzure() as fake:
        config = config_for(fake) + ISOLATED + "  recycle_after_requests: 3\n"
        with isolated_daemon(tmp_path, config) as daemon:
            cloud = azure_cloud(fake, daemon)
            first = workers_of(daemon.process.pid)
            for _ in range(4):  # four rounds of three recognitions and three syntheses at once
                outcomes = await asyncio.gather(
                    *(transcribe(cloud) for _ in range(3)), *(synthesize(cloud) for _ in range(3))
                )
                for event, _ in outcomes[:3]:
                    assert (event.type, event.data.get("text")) == (
                        "transcript",
                        cloud.transcript,
                    ), event
                for events, _ in outcomes[3:]:
                    assert "error" not in [event.type for event in events], events
                    assert events[-1].type == "synthesize-stopped"
            logs = daemon.logs()
            assert re.search(r"azure worker served \d+ requests: replacing it", logs)
            assert "worker died" not in logs

            def renewed() -> bool:  # once the last ones replaced have drained and closed
                now = workers_of(daemon.process.pid)
                return len(now) == 1 and not set(now.values()) & set(first.values())

            wait_for("only new workers", renewed)


async def test_a_worker_over_its_memory_limit_is_replaced_without_losing_a_request(tmp_path):
    with FakeAzure() as fake:
        config = config_for(fake) + ISOLATED + "  worker_max_rss_mb: 1\n"  # any worker is over
        with isolated_daemon(tmp_path, config) as daemon:
            cloud = azure_cloud(fake, daemon)
            pid = workers_of(daemon.process.pid)["azure"]
            await check_answer(cloud, "asr")
            replaced(daemon, "azure", pid)
            await check_answer(cloud, "tts")
            assert re.search(r"azure worker uses \d+ MB \(over 1 MB\): replacing it", daemon.logs())


async def test_a_restarted_worker_opens_its_warm_connection_before_any_request(tmp_path):
    with FakeAzure() as fake, isolated_daemon(tmp_path, config_for(fake) + ISOLATED) as daemon:
        cloud = azure_cloud(fake, daemon)
        pid = workers_of(daemon.process.pid)["azure"]
        await check_answer(cloud, "tts")

        def settled() -> int | None:  # connections the worker opened ahead are all open
            count = fake.connections
            time.sleep(0.3)
            return count if count == fake.connections else None

        before = wait_for("the warm connections", settled)
        os.kill(pid, signal.SIGKILL)
        replaced(daemon, "azure", pid)
        wait_for("a new warm synthesizer", lambda: fake.connections > before)
        await check_answer(cloud, "tts")


async def test_on_sigterm_to_every_process_a_synthesis_in_flight_still_finishes(tmp_path):
    """systemd stops a service by sending SIGTERM to each of its processes: the workers
    leave the stop to the daemon, which drains its requests, then closes them."""
    with FakeAzure(pace=1.0) as fake:
        (tmp_path / "run").mkdir()
        daemon = Daemon(tmp_path, config_for(fake) + ISOLATED)
        try:
            daemon.wait_listening()
            workers = {**launchers_of(daemon.process.pid), **workers_of(daemon.process.pid)}
            client = await connect(daemon.port)
            await client.write_event(SynthesizeStart().event())
            await client.write_event(SynthesizeChunk(text="An answer to finish. ").event())
            await client.write_event(SynthesizeStop().event())
            while (event := await read(client, TOTAL_S)).type != "audio-chunk":
                assert event.type == "audio-start", event
            for pid in (daemon.process.pid, *workers.values()):
                os.kill(pid, signal.SIGTERM)
            events, _ = await read_synthesis(client, TOTAL_S + MARGIN_S)
            await client.disconnect()
            assert "error" not in [event.type for event in events], events
            assert events[-2:][0].type == "audio-stop"
            assert daemon.process.wait(TOTAL_S + MARGIN_S) == 0
            wait_for("the workers gone", lambda: all(_gone(pid) for pid in workers.values()))
            check_log(daemon.logs())
        finally:
            daemon.stop()


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists() or _zombie(pid)


async def test_a_reload_that_changes_a_provider_replaces_its_worker(tmp_path):
    with FakeAzure() as fake, isolated_daemon(tmp_path, config_for(fake) + ISOLATED) as daemon:
        cloud = azure_cloud(fake, daemon)
        before = workers_of(daemon.process.pid)
        daemon.reload(config_for(fake).replace("en-US-JennyNeural", "en-US-GuyNeural") + ISOLATED)
        replaced(daemon, "azure", before["azure"])
        wait_for(
            "the old workers to close",
            lambda: not set(workers_of(daemon.process.pid).values()) & set(before.values()),
        )
        await check_answer(cloud, "asr")
        await check_answer(cloud, "tts")
        assert "GuyNeural" in fake.received_ssml[-1]


async def test_workers_follow_a_reload_of_the_log_level_and_format(tmp_path):
    with FakeAzure() as fake, isolated_daemon(tmp_path, config_for(fake) + ISOLATED) as daemon:
        cloud = azure_cloud(fake, daemon)
        wait_for("the worker's ready line", lambda: "ready: ASR, TTS" in daemon.logs())
        daemon.reload("log_level: debug\nlog_format: json\n" + config_for(fake) + ISOLATED)
        await check_answer(cloud, "asr")

        def worker_lines() -> list[dict]:  # the worker logs the request's end just after it
            lines = [json.loads(line) for line in daemon.logs().splitlines() if line[:1] == "{"]
            return [line for line in lines if line["logger"] == "satellite.providers.worker"]

        ended = wait_for("the worker's JSON debug line", worker_lines)
        assert "request" in ended[-1]["message"], ended


# Runs the daemon in this interpreter, then prints which SDK modules it had loaded.
_IN_PROCESS = """
import asyncio, json, sys
from pathlib import Path
from satellite import logs
from satellite.config import load_config
from satellite.daemon import Daemon
logs.setup("info")
path = Path(sys.argv[1])
asyncio.run(Daemon(load_config(path), path).run())
sdks = sorted(m for m in sys.modules if m.split(".")[0] in ("dashscope", "azure"))
print(json.dumps(sdks), flush=True)
"""


async def test_the_daemon_itself_loads_no_sdk(tmp_path):
    with FakeAzure() as azure, FakeDashScope() as dashscope:
        port = free_port()
        config = tmp_path / "config.yaml"
        config.write_text(
            f"""zeroconf: false
speech:
  uri: tcp://127.0.0.1:{port}
  asr: {{provider: azure, language: en-US}}
  tts: {{provider: dashscope}}
providers:
  dashscope: {{websocket_url: {dashscope.url}}}
  azure: {{host: {azure.host}, asr: {{languages: [en-US]}}}}
{ISOLATED}""",
            encoding="utf-8",
        )
        env = {**os.environ, **TEST_KEYS, "NO_PROXY": "127.0.0.1,localhost"}
        with (tmp_path / "daemon.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", _IN_PROCESS, str(config)],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
            )
            try:
                wait_for("the daemon listening", lambda: port_open(port), 20.0)
                assert workers_of(process.pid).keys() == {"azure", "dashscope"}
                daemon = Daemon.__new__(Daemon)  # only its port, for the fault helpers
                daemon.port = port
                event, _ = await transcribe(Cloud("azure", azure, daemon, "en-US", ""))
                assert event.type == "transcript", event
                await check_answer(Cloud("dashscope", dashscope, daemon, "zh", ""), "tts")
                process.send_signal(signal.SIGTERM)
                out, _ = process.communicate(timeout=20)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(5)
        assert process.returncode == 0
        assert json.loads(out) == []


async def test_with_isolation_inline_the_daemon_serves_without_workers(tmp_path):
    with FakeAzure() as fake:
        config = config_for(fake) + "  isolation: inline\n"
        with isolated_daemon(tmp_path, config) as daemon:
            cloud = azure_cloud(fake, daemon)
            await check_answer(cloud, "asr")
            await check_answer(cloud, "tts")
            assert workers_of(daemon.process.pid) == {}
            assert "worker restarts" not in status_line(tmp_path)
            assert "libssl" in openssl_in(daemon.process.pid)  # the SDKs' TLS, in the daemon


async def test_with_workers_only_the_workers_load_openssl_and_a_reload_keeps_them(tmp_path):
    """The daemon's own process speaks no TLS, so it leaves OpenSSL out (4.8 MB); the SDKs
    in the workers have it. Moving the SDKs inline would need it: that waits for a restart."""
    with FakeAzure() as fake:
        config = config_for(fake) + ISOLATED
        with isolated_daemon(tmp_path, config) as daemon:
            cloud = azure_cloud(fake, daemon)
            await check_answer(cloud, "asr")
            await check_answer(cloud, "tts")
            assert openssl_in(daemon.process.pid) == set()
            assert "libssl" in openssl_in(workers_of(daemon.process.pid)["azure"])

            logs = await asyncio.to_thread(
                daemon.reload, config.replace(ISOLATED, "  isolation: inline\n")
            )
            assert "providers.isolation changed; restart the service to apply" in logs
            await check_answer(cloud, "asr")
            await check_answer(cloud, "tts")
            assert "azure" in workers_of(daemon.process.pid)
            assert openssl_in(daemon.process.pid) == set()


def test_a_satellite_only_device_starts_no_worker(tmp_path):
    mic = tmp_path / "mic.wav"
    write_wav(mic, silence(10.0))
    config = f"""speech: {{enabled: false}}
satellite:
  enabled: true
  uri: LISTEN_URI
  wake: {{engine: none}}
  mic: {{backend: file, file: "{mic}"}}
providers:
{ISOLATED}"""
    with isolated_daemon(tmp_path, config) as daemon:
        time.sleep(0.5)
        assert workers_of(daemon.process.pid) == {}
        assert openssl_in(daemon.process.pid) == set()


async def test_the_status_line_tells_what_the_worker_round_trip_adds(tmp_path):
    """``systemctl status`` says what crossing to the worker and back adds to an answer: the
    provider's own time (the fake's 0.5 s before it answers) is left out."""
    with (
        FakeAzure(delay=0.5) as fake,
        isolated_daemon(tmp_path, config_for(fake) + ISOLATED) as daemon,
    ):
        cloud = azure_cloud(fake, daemon)
        wait_for("the first status line", status_file(tmp_path).exists)
        assert "round trip" not in status_line(tmp_path)  # no answer yet: no figure
        for kind in ("asr", "tts", "asr", "tts"):
            await check_answer(cloud, kind)
        for role in ("ASR", "TTS"):
            p50, p95 = wait_for(
                f"the {role} round trip in the status",
                lambda role=role: worker_round_trip_ms(status_line(tmp_path), role),
            )
            assert 0 < p50 <= p95 < 500, status_line(tmp_path)
