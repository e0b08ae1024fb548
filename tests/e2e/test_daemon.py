"""Starting and stopping the daemon; requests when the provider cannot be reached."""

from __future__ import annotations

import signal

from wyoming.info import Describe
from wyoming.tts import Synthesize

from tests.e2e.daemon import Daemon, free_port
from tests.wyoming_client import connect, read, send_utterance


async def test_no_config_no_key_still_starts_and_errors_name_the_variable(tmp_path):
    daemon = Daemon(
        tmp_path,
        "speech: {uri: LISTEN_URI}\n",
        env={"DASHSCOPE_API_KEY": None, "VOICE_SATELLITE_CONFIG": None},
    )
    try:
        daemon.wait_listening()
        client = await connect(daemon.port)
        await send_utterance(client, bytes(3200), chunk_bytes=320, language="zh")
        error = await read(client)
        assert error.data["code"] == "missing-credentials"
        assert "DASHSCOPE_API_KEY" in error.data["text"]
        await client.write_event(Synthesize(text="你好").event())
        error = await read(client)
        assert error.data["code"] == "missing-credentials"
        await client.disconnect()
        assert "DASHSCOPE_API_KEY" in daemon.logs()
    finally:
        assert daemon.stop() == 0


async def test_refused_provider_fails_fast(tmp_path):
    closed = free_port()
    config = f"""
speech: {{uri: LISTEN_URI, asr: {{provider: dashscope}}, tts: {{provider: azure}}}}
providers:
  dashscope: {{websocket_url: "ws://127.0.0.1:{closed}/api-ws/v1/inference"}}
  azure: {{host: "ws://127.0.0.1:{closed}"}}
"""
    daemon = Daemon(tmp_path, config)
    try:
        daemon.wait_listening()
        client = await connect(daemon.port)
        await send_utterance(client, bytes(3200), chunk_bytes=320)
        assert (await read(client, timeout=5)).data["code"] == "connect-failed"
        await client.write_event(Synthesize(text="hello").event())
        assert (await read(client, timeout=5)).data["code"] == "connect-failed"
        await client.disconnect()
    finally:
        assert daemon.stop() == 0


async def test_sigint_stops_cleanly_and_logs_where_it_listens(tmp_path):
    # No connection is opened ahead of requests: the cloud is out of reach from tests.
    config = "speech: {uri: LISTEN_URI}\nproviders: {dashscope: {warm_connections: 0}}\n"
    daemon = Daemon(tmp_path, config)
    daemon.wait_listening()
    client = await connect(daemon.port)
    await client.write_event(Describe().event())
    assert (await read(client)).type == "info"
    daemon.process.send_signal(signal.SIGINT)
    assert daemon.process.wait(10) == 0
    logs = daemon.logs()
    assert f"listening on tcp://127.0.0.1:{daemon.port}" in logs
    assert "ASR dashscope paraformer-realtime-v2" in logs
    daemon.stop()
