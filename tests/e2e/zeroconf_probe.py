"""Run inside a private network namespace: starts the daemon, then browses for it.

Arguments: CONFIG EXPECTED_COUNT INTERFACE_ADDRESS SECONDS. Prints one line per service
found: ``FOUND <name> <address>:<port>``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from zeroconf import ServiceBrowser, ServiceListener, Zeroconf

from tests.e2e.daemon import REPO

SERVICE_TYPE = "_wyoming._tcp.local."


class Collector(ServiceListener):
    def __init__(self) -> None:
        self.found: dict[str, str] = {}

    def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        info = zc.get_service_info(type_, name, timeout=2000)
        if info is not None:
            address = socket.inet_ntoa(info.addresses[0])
            self.found[name] = f"{address}:{info.port}"

    update_service = add_service

    def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        pass


def main() -> int:
    config, expected, seconds = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[4])
    daemon = subprocess.Popen(
        [sys.executable, "-m", "satellite", "run", "--config", str(config)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        zc = Zeroconf(interfaces=[sys.argv[3]])
        collector = Collector()
        ServiceBrowser(zc, SERVICE_TYPE, collector)
        deadline = time.monotonic() + seconds
        while len(collector.found) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        zc.close()
        for name, where in sorted(collector.found.items()):
            print(f"FOUND {name} {where}", flush=True)
    finally:
        daemon.terminate()
        daemon.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
