"""Starts ``voice-satellite run`` as a subprocess from a YAML config, as a user would."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from satellite.providers.worker_ipc import process_title

REPO = Path(__file__).resolve().parents[2]
TEST_KEYS = {
    "DASHSCOPE_API_KEY": "test-dashscope-key",
    "AZURE_SPEECH_KEY": "test-azure-key",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _processes() -> dict[int, tuple[int, list[str]]]:
    """Every process: pid -> (parent pid, its command line's words)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            words = (stat.parent / "cmdline").read_bytes().split(b"\0")[0].decode().split()
        except (OSError, ValueError, IndexError, UnicodeDecodeError):
            continue
        found[int(stat.parent.name)] = (parent, words)
    return found


def _titled(
    processes: dict[int, tuple[int, list[str]]], role: str, parents: set[int]
) -> dict[str, int]:
    """Those of ``processes`` titled as a provider's ``role`` whose parent is in ``parents``:
    provider -> pid."""
    return {
        words[1]: pid
        for pid, (parent, words) in processes.items()
        if parent in parents and len(words) > 1 and " ".join(words) == process_title(words[1], role)
    }


def launchers_of(pid: int) -> dict[str, int]:
    """The worker launchers of the daemon ``pid``: provider -> pid."""
    return _titled(_processes(), "launcher", {pid})


def workers_of(pid: int) -> dict[str, int]:
    """The worker processes of the daemon ``pid`` (forked by its launchers): provider -> pid."""
    processes = _processes()
    launchers = set(_titled(processes, "launcher", {pid}).values())
    return _titled(processes, "worker", launchers)


def openssl_in(pid: int) -> set[str]:
    """OpenSSL's libraries in process ``pid``'s memory: "libssl" (Python's ``ssl`` loads it)
    and "libcrypto" (``ssl`` and hashlib's fast path)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name for name in ("libssl", "libcrypto") if f"/{name}.so" in maps}


def status_file(workdir: Path) -> Path:
    """Where a daemon given ``RUNTIME_DIRECTORY=workdir/run`` writes its status line."""
    return workdir / "run" / "status"


def status_line(workdir: Path) -> str:
    return status_file(workdir).read_text(encoding="utf-8")


def worker_round_trip_ms(status: str, role: str) -> tuple[float, float] | None:
    """The p50 and p95 of a role's ("ASR", "TTS") worker round trip that a status line
    reports, if it does."""
    figures = re.search(r"worker round trip (.*?)(?:;|$)", status)
    if figures is None:
        return None
    found = re.search(rf"{role} p50 ([\d.]+) ms, p95 ([\d.]+) ms", figures.group(1))
    return (float(found.group(1)), float(found.group(2))) if found else None


class Daemon:
    """A running daemon process; ``stop()`` sends SIGTERM and returns the exit code."""

    def __init__(self, workdir: Path, config_text: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.config_path = workdir / "config.yaml"
        self.write_config(config_text)
        self.log_path = workdir / "daemon.log"
        environment = {
            **os.environ,
            **TEST_KEYS,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            **(env or {}),
        }
        environment = {k: v for k, v in environment.items() if v is not None}
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "satellite", "run", "--config", str(self.config_path)],
            cwd=REPO,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.started_at = time.monotonic()

    def wait_listening(self, timeout: float = 20.0) -> float:
        """Seconds from process start until the port accepts connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.process.returncode}:\n{self.logs()}")
            if port_open(self.port):
                return time.monotonic() - self.started_at
            time.sleep(0.005)
        raise TimeoutError(f"daemon not listening after {timeout} s:\n{self.logs()}")

    def write_config(self, config_text: str) -> None:
        """The config file; LISTEN_URI stands for this daemon's address."""
        if "zeroconf:" not in config_text:  # keep multicast off the machine's interfaces
            config_text = "zeroconf: false\n" + config_text
        self.config_path.write_text(
            config_text.replace("LISTEN_URI", f"tcp://127.0.0.1:{self.port}"), encoding="utf-8"
        )

    def reload(self, config_text: str, timeout: float = 10.0) -> str:
        """Write a new config, send SIGHUP and return the log lines of that reload."""
        self.write_config(config_text)
        before = len(self.logs())
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new_lines = self.logs()[before:]
            if "reload: " in new_lines and (
                "applied" in new_lines or "keeping the running configuration" in new_lines
            ):
                return new_lines
            time.sleep(0.02)
        raise TimeoutError(f"no reload after {timeout} s:\n{self.logs()}")

    def logs(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        return self.process.returncode
