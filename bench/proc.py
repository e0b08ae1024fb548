"""What /proc says about a running process: its CPU time, threads and memory."""

from __future__ import annotations

import os
from pathlib import Path

from tests.e2e.daemon import launchers_of, workers_of


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the whole process, every thread included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks  # utime, stime


def thread_count(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[17])


def status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pss_mb(pid: int) -> float:
    """The proportional set size: resident memory, each page shared with other processes
    (a worker and its launcher) counted in part, so that the sum over processes is what
    they take together."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds_with_children(pid: int) -> float:
    """User and system CPU seconds of the process and of the children it has waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def family(pid: int) -> list[int]:
    """The daemon ``pid``, its workers' launchers and its provider worker processes."""
    return [pid, *launchers_of(pid).values(), *workers_of(pid).values()]


def family_cpu_seconds(pid: int) -> float:
    """CPU seconds of the daemon and its workers, children they have waited for included
    (a worker that died moves into the daemon's own figure when it is reaped)."""
    return sum(cpu_seconds_with_children(member) for member in family(pid))


def family_pss_mb(pid: int) -> float:
    """``pss_mb`` summed over the daemon, its launchers and its workers."""
    return sum(pss_mb(member) for member in family(pid))


def family_mb(pid: int, key: str) -> float:
    """``status_mb`` summed over the daemon and its workers (for VmHWM: the sum of peaks)."""
    return sum(status_mb(member, key) for member in family(pid))
