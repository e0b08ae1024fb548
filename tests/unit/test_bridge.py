"""The thread pool that blocking SDK and device calls run in, and the process exit that
does not wait for calls stuck in an SDK."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest

from satellite.bridge import calls_still_running, run_blocking, run_blocking_detached
from tests.e2e.daemon import REPO


async def test_a_blocking_call_returns_its_result_or_raises_its_error():
    assert await run_blocking(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        await run_blocking(lambda: 1 / 0)


async def test_calls_run_side_by_side_when_earlier_ones_are_still_blocked():
    barrier = threading.Barrier(4, timeout=5)  # passes only once all four calls are in it
    await asyncio.gather(*(run_blocking(barrier.wait) for _ in range(4)))


def test_calls_still_running_counts_the_calls_that_have_not_returned():
    release = threading.Event()
    run_blocking_detached(release.wait)
    assert calls_still_running(0.1) == 1
    release.set()
    assert calls_still_running(5) == 0


async def test_a_call_given_up_on_is_still_counted_until_it_returns():
    release = threading.Event()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run_blocking(release.wait), 0.1)
    assert calls_still_running(0.1) == 1
    release.set()
    assert calls_still_running(5) == 0


def test_the_command_exits_without_waiting_for_a_call_stuck_in_an_sdk():
    """Python joins pool threads at exit: without the bounded wait, this never exits."""
    script = """
import threading
from satellite import bridge, cli

def main():
    bridge.run_blocking_detached(threading.Event().wait)  # never returns
    print("done", flush=True)
    return 3

cli.main = main
cli.entry()
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert (done.returncode, done.stdout) == (3, "done\n"), done.stderr
