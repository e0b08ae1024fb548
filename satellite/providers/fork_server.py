"""A provider's worker launcher (``python -m satellite.providers.fork_server FD PROVIDER
LEVEL FORMAT``):
a process that has imported the provider's SDK once and forks each of its workers.

Importing an SDK is most of a worker's start (the DashScope SDK alone takes over a second
on a fast machine, several on a Pi), so a worker that dies is replaced by a fork of this
process in milliseconds, and the pages of the imported code stay shared between the
launcher and its worker. The launcher starts no thread and no event loop: a fork is safe.

Over the socket ``FD`` (SOCK_SEQPACKET, one pickled tuple per message) the daemon sends
``("spawn",)`` with the new worker's socket attached; the launcher answers ``("spawned",
pid)`` (or ``("failed", reason)``), and ``("exited", pid, returncode)`` when it has reaped
a worker. It exits when the daemon closes the socket; its workers are killed by the kernel
when it dies.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import pickle
import selectors
import signal
import socket
import sys

from setproctitle import setproctitle

from .. import logs
from ..provider_table import PROVIDERS
from . import worker
from .worker_ipc import MAX_LAUNCHER_MESSAGE_BYTES, process_title

_LOGGER = logging.getLogger("satellite.providers.fork_server")  # __name__ is __main__ when run


def _preload(provider: str) -> None:
    """Import what the provider's workers will run, so that no worker imports it again."""
    for module in PROVIDERS[provider].preload:
        try:
            importlib.import_module(module)
        except Exception:  # the worker meets it again, and reports it to the daemon
            _LOGGER.exception("%s worker launcher: cannot import %s", provider, module)
    gc.freeze()  # the collector never touches these objects: their pages stay shared


class _Launcher:
    def __init__(self, control: socket.socket, provider: str) -> None:
        self._control = control
        self._provider = provider
        self._wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        self._wake_write = wake_write
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # reaped in the loop, woken by the fd
        self._selector = selectors.DefaultSelector()

    def serve(self) -> None:
        with self._selector as selector:
            selector.register(self._control, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is self._control:
                        if not self._request():
                            return
                    else:
                        os.read(self._wake_read, 512)
                        self._reap()

    def _send(self, *message: object) -> None:
        with contextlib.suppress(OSError):  # the daemon is gone: the next read ends the loop
            self._control.send(pickle.dumps(message))

    def _request(self) -> bool:
        """Fork a worker for the daemon; False once the daemon has closed the socket."""
        message, fds, _, _ = socket.recv_fds(self._control, MAX_LAUNCHER_MESSAGE_BYTES, 1)
        if not message:
            return False
        if not fds:
            return True
        try:
            pid = os.fork()
        except OSError as exc:  # out of memory or processes: this worker only
            os.close(fds[0])
            self._send("failed", f"cannot fork: {exc.strerror}")
            return True
        if pid == 0:
            self._become_worker(fds[0])
        os.close(fds[0])
        self._send("spawned", pid)
        return True

    def _become_worker(self, fd: int) -> None:
        """In the child: drop the launcher's parts and serve as a worker; never returns."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self._selector.close()
            self._control.close()
            os.close(self._wake_read)
            os.close(self._wake_write)
            setproctitle(process_title(self._provider, "worker"))
            worker.run(fd)
            code = 0
        except BaseException:
            _LOGGER.exception("%s worker failed", self._provider)
        finally:
            os._exit(code)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._send("exited", pid, os.waitstatus_to_exitcode(status))


def main(argv: list[str]) -> None:
    fd, provider, level, fmt = argv
    control = socket.socket(fileno=int(fd))
    worker.prepare_process()
    setproctitle(process_title(provider, "launcher"))
    logs.setup(level, "json" if fmt == "json" else "text")
    _preload(provider)
    _Launcher(control, provider).serve()
    logging.shutdown()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
