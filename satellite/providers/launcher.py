"""The daemon's side of a provider's worker launcher (``fork_server.py``): it starts the
launcher on first use (and again should it die), asks it for workers, and learns from it
how each one ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import sys
from collections import deque
from pathlib import Path

from .. import logs
from .worker_ipc import MAX_LAUNCHER_MESSAGE_BYTES

_LOGGER = logging.getLogger(__name__)

CLOSE_S = 4.0  # a launcher whose socket is closed gets this long to exit, then it is killed
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the launcher runs this same code


class ForkedProcess:
    """A worker forked by the launcher: its pid, and its exit status once reaped."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited = asyncio.Event()

    def ended(self, returncode: int) -> None:
        if self.returncode is None:
            self.returncode = returncode
            self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode


def exit_reason(returncode: int) -> str:
    """A process's end as the log says it: "SIGSEGV", "exit status 3"."""
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-returncode).name
        return f"signal {-returncode}"
    return f"exit status {returncode}"


def _pythonpath() -> str:
    existing = os.environ.get("PYTHONPATH")
    return f"{_PACKAGE_ROOT}{os.pathsep}{existing}" if existing else _PACKAGE_ROOT


class Launcher:
    """One provider's launcher process, started when the first worker is asked for."""

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._process: asyncio.subprocess.Process | None = None
        self._control: socket.socket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._spawned: deque[asyncio.Future[ForkedProcess]] = deque()  # answered in order
        self._children: dict[int, ForkedProcess] = {}
        self._lock = asyncio.Lock()

    async def spawn(self) -> tuple[ForkedProcess, socket.socket]:
        """A new worker, and the daemon's end of its socket (OSError if none can start)."""
        async with self._lock:
            if self._reader is None or self._reader.done():
                await self._start()
            assert self._control is not None
            parent, child = socket.socketpair()
            answer = asyncio.get_running_loop().create_future()
            try:
                socket.send_fds(self._control, [pickle.dumps(("spawn",))], [child.fileno()])
                self._spawned.append(answer)
                return await answer, parent
            except BaseException:
                parent.close()  # a worker forked all the same reads its end and exits
                raise
            finally:
                child.close()

    async def _start(self) -> None:
        control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        level, fmt = logs.current()
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "satellite.providers.fork_server",
                str(theirs.fileno()),
                self._provider,  # names it in ps; nothing secret
                level,
                fmt,
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C is for the daemon
                env={**os.environ, "PYTHONPATH": _pythonpath()},
            )
        except BaseException:
            control.close()
            raise
        finally:
            theirs.close()
        control.setblocking(False)
        self._control = control
        self._reader = asyncio.create_task(
            self._read(control, self._process), name=f"{self._provider} launcher"
        )

    async def _read(self, control: socket.socket, process: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        try:
            while message := await loop.sock_recv(control, MAX_LAUNCHER_MESSAGE_BYTES):
                answer = pickle.loads(message)
                if answer[0] == "spawned":
                    # Known before any await: its end may be the very next message.
                    self._children[answer[1]] = child = ForkedProcess(answer[1])
                    self._answer_next(child)
                elif answer[0] == "failed":
                    self._answer_next(OSError(answer[1]))
                elif answer[0] == "exited" and (child := self._children.pop(answer[1], None)):
                    child.ended(answer[2])
        except OSError:
            pass
        finally:
            control.close()
            await self._lost(process)

    def _answer_next(self, answer: ForkedProcess | OSError) -> None:
        """Answer the oldest spawn waiting for the launcher (one given up on is skipped)."""
        if not self._spawned or (waiting := self._spawned.popleft()).done():
            return
        if isinstance(answer, OSError):
            waiting.set_exception(answer)
        else:
            waiting.set_result(answer)

    async def _lost(self, process: asyncio.subprocess.Process) -> None:
        """The launcher has gone: so have its workers (the kernel kills them with it)."""
        try:
            async with asyncio.timeout(CLOSE_S):
                returncode = await process.wait()
        except TimeoutError:  # its socket failed, yet it lives on: end it
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            returncode = await process.wait()
        ended = exit_reason(returncode)
        if self._children:
            _LOGGER.error(
                "%s worker launcher ended (%s) and its worker with it; the next worker "
                "starts a new one",
                self._provider,
                ended,
            )
        while self._spawned:
            self._answer_next(OSError(f"its launcher ended ({ended})"))
        for child in self._children.values():
            child.ended(-signal.SIGKILL)
        self._children.clear()

    async def close(self) -> None:
        """End the launcher (and any worker it still has): it exits when its socket ends."""
        if self._reader is None:
            return
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.shutdown(socket.SHUT_WR)
        await asyncio.gather(self._reader, return_exceptions=True)
