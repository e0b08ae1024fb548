"""Every test also checks that no test key leaked into what it logged or printed.

After each test (its teardown included), the captured log records, stdout and stderr of
all its phases, and every ``*.log`` file under its ``tmp_path`` (the daemon under test writes
``daemon.log`` there) are searched for the keys the tests hand out; a key found fails the
test, which is reported as an error at teardown. pytest's capture sections are read rather
than ``capsys``, which would take each test's output away from its failure report.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from tests.e2e.daemon import TEST_KEYS

# ``running``: a satellite served to a test client that plays HA.
pytest_plugins = ["tests.unit.satellite_harness"]

# The keys of the e2e daemon and of the provider tests (right and deliberately wrong ones).
SECRETS = (*TEST_KEYS.values(), "wrong-secret-key", "wrong-secret")


def leaks(texts: Iterable[tuple[str, str]]) -> list[str]:
    """Where (the first of each pair) a secret appears in the text (the second)."""
    return [where for where, text in texts if any(secret in text for secret in SECRETS)]


def _log_files(tmp_path: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(tmp_path.rglob("*.log")):
        yield str(path), path.read_text(encoding="utf-8", errors="replace")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when != "teardown" or report.failed:
        return
    where = leaks(report.sections)
    tmp_path = (getattr(item, "funcargs", None) or {}).get("tmp_path")
    if isinstance(tmp_path, Path) and tmp_path.is_dir():
        where += leaks(_log_files(tmp_path))
    if where:  # the key itself is not repeated here
        report.outcome = "failed"
        report.longrepr = f"a test key leaked into: {', '.join(where)}"
