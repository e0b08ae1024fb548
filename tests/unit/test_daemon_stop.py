"""The daemon's exit when closing a role hangs (an SDK stuck in its close)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from satellite import daemon as daemon_module
from satellite.config import load_config
from satellite.daemon import Daemon
from tests.e2e.daemon import free_port, port_open


async def test_a_role_that_hangs_while_closing_does_not_keep_the_daemon_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    stopped: list[str] = []

    async def hang(role: daemon_module._Role) -> None:
        stopped.append(role.name)
        await asyncio.Event().wait()

    monkeypatch.setattr(daemon_module._SpeechRole, "stop", hang)
    monkeypatch.setattr(daemon_module, "ROLE_STOP_S", 0.5)
    port = free_port()
    path = tmp_path / "config.yaml"
    path.write_text(
        f"zeroconf: false\nspeech: {{uri: 'tcp://127.0.0.1:{port}', name: Test speech}}\n"
        "providers: {isolation: inline, dashscope: {warm_connections: 0}}\n"
    )
    daemon = Daemon(load_config(path), path)
    running = asyncio.create_task(daemon.run())
    for _ in range(100):
        if port_open(port):
            break
        await asyncio.sleep(0.05)
    daemon.request_stop()
    await asyncio.wait_for(running, 10)
    assert stopped == ["Test speech"]
    assert "Test speech: still closing after 0.5 s; exiting anyway" in caplog.text
