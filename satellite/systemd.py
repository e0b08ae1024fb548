"""Tells systemd how the daemon is doing (sd_notify): ready, alive, status, stopping.

Messages are datagrams to the socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` means the
abstract namespace). Without that variable (not run by systemd) no message is sent.
The watchdog is fed from the event loop, so a loop that is stuck stops feeding it and
systemd restarts the service. The status line is also kept in ``status`` in the runtime
directory (``$RUNTIME_DIRECTORY``: /run/voice-satellite under systemd), where ``doctor``
reads it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path

_LOGGER = logging.getLogger(__name__)
DEFAULT_RUNTIME_DIRECTORY = "/run/voice-satellite"  # the unit's RuntimeDirectory=


def status_file(environ: Mapping[str, str] | None = None) -> Path:
    """Where the running daemon keeps its status line."""
    env = os.environ if environ is None else environ
    directory = env.get("RUNTIME_DIRECTORY", "").split(":")[0] or DEFAULT_RUNTIME_DIRECTORY
    return Path(directory) / "status"


class Notifier:
    """The daemon's line to systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + path[1:] if path.startswith("@") else path
        self._watchdog_seconds = _watchdog_seconds(env)
        self._status_file = status_file(env) if env.get("RUNTIME_DIRECTORY") else None

    @property
    def watchdog_seconds(self) -> float | None:
        """The watchdog timeout systemd set for this process, if any."""
        return self._watchdog_seconds

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")
        self._keep(status)

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")
        self._keep(status)

    def reloading(self) -> None:
        """A reload has begun; ``ready()`` ends it."""
        self._send("RELOADING=1\nSTATUS=reloading the configuration")
        self._keep("reloading the configuration")

    def stopping(self) -> None:
        self._send("STOPPING=1\nSTATUS=stopping")
        if self._status_file is not None:
            self._status_file.unlink(missing_ok=True)

    async def feed_watchdog(self) -> None:
        """Send WATCHDOG=1 at half the watchdog timeout until cancelled (returns at once when
        systemd set no watchdog)."""
        if self._watchdog_seconds is None:
            return
        while True:
            self._send("WATCHDOG=1")
            await asyncio.sleep(self._watchdog_seconds / 2)

    def _keep(self, status: str) -> None:
        """Replace the status file's line (never a half-written one)."""
        if self._status_file is None:
            return
        partial = self._status_file.with_suffix(".new")
        try:
            partial.write_text(status + "\n", encoding="utf-8")
            partial.replace(self._status_file)
        except OSError as exc:
            _LOGGER.debug("cannot keep the status in %s: %s", self._status_file, exc)

    def _send(self, message: str) -> None:
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(message.encode())
        except OSError as exc:  # systemd went away: nothing to tell, keep serving
            _LOGGER.debug("cannot notify systemd: %s", exc)


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    """WATCHDOG_USEC as seconds, when it is meant for this process (WATCHDOG_PID)."""
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000
