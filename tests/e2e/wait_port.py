"""``python -m tests.e2e.wait_port PORT SECONDS``: exit 0 once 127.0.0.1:PORT accepts
connections, 1 if it does not within SECONDS."""

from __future__ import annotations

import sys
import time

from tests.e2e.daemon import port_open


def main() -> int:
    port, seconds = int(sys.argv[1]), float(sys.argv[2])
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_open(port):
            return 0
        time.sleep(0.05)
    return 1


if __name__ == "__main__":
    sys.exit(main())
