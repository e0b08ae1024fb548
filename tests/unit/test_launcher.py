"""A provider's worker launcher: it forks workers on request and reports how each ended."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from satellite.providers.launcher import Launcher

WAIT_S = 10.0


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def title_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def assert_titled(pid: int, title: str) -> None:
    """The process is titled ``title`` within WAIT_S (a new fork renames itself just after
    the launcher has answered)."""
    deadline = time.monotonic() + WAIT_S
    while (seen := title_of(pid)) != title and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert seen == title


async def until_gone(pid: int) -> None:
    async with asyncio.timeout(WAIT_S):
        while alive(pid):
            await asyncio.sleep(0.02)


async def test_a_forked_worker_is_named_and_its_crash_reported_with_its_signal():
    launcher = Launcher("espeak")  # no SDK to import: a quick start
    try:
        worker, sock = await launcher.spawn()
        await assert_titled(worker.pid, "voice-satellite espeak worker")
        launcher_pid = parent_of(worker.pid)
        assert title_of(launcher_pid) == "voice-satellite espeak launcher"
        os.kill(worker.pid, signal.SIGSEGV)
        async with asyncio.timeout(WAIT_S):
            assert await worker.wait() == -signal.SIGSEGV
        sock.close()
        second, sock = await launcher.spawn()  # the same launcher forks the next one
        assert parent_of(second.pid) == launcher_pid
        sock.close()  # the daemon's end closed: the worker exits
        async with asyncio.timeout(WAIT_S):
            assert await second.wait() == 0
    finally:
        await launcher.close()


async def test_closing_the_launcher_ends_it_and_any_worker_left():
    launcher = Launcher("espeak")
    worker, sock = await launcher.spawn()
    launcher_pid = parent_of(worker.pid)
    try:
        await launcher.close()
        await until_gone(launcher_pid)
        await until_gone(worker.pid)  # the kernel ends a worker whose launcher has gone
    finally:
        sock.close()


async def test_a_killed_launcher_ends_its_workers_and_the_next_spawn_starts_another():
    launcher = Launcher("espeak")
    try:
        worker, sock = await launcher.spawn()
        launcher_pid = parent_of(worker.pid)
        os.kill(launcher_pid, signal.SIGKILL)
        async with asyncio.timeout(WAIT_S):
            assert await worker.wait() == -signal.SIGKILL
        await until_gone(worker.pid)
        sock.close()
        second, sock = await launcher.spawn()
        assert parent_of(second.pid) not in (launcher_pid, os.getpid())
        sock.close()
        async with asyncio.timeout(WAIT_S):
            assert await second.wait() == 0
    finally:
        await launcher.close()
