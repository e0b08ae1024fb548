"""The check of tests/conftest.py: a test that leaks a test key fails, one that does not
passes. Runs a small pytest session of its own, so the leaks stay inside it."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import SECRETS, leaks
from tests.e2e.daemon import REPO, TEST_KEYS

INNER_TESTS = f"""
import logging

KEY = {TEST_KEYS["DASHSCOPE_API_KEY"]!r}


def test_logs_a_key():
    logging.getLogger("inner").warning("connecting with %s", KEY)


def test_prints_a_key():
    print("key:", KEY)


def test_daemon_log_has_a_key(tmp_path):
    (tmp_path / "daemon.log").write_text("api_key=" + KEY)


def test_keeps_its_keys():
    logging.getLogger("inner").warning("connecting with ***")
    print("key: ***")
"""


def test_every_secret_is_found_wherever_it_is() -> None:
    texts = [(f"text {n}", f"before {secret} after") for n, secret in enumerate(SECRETS)]
    assert leaks([*texts, ("clean", "key=*** rejected")]) == [where for where, _ in texts]


def test_a_test_that_leaks_a_key_fails(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "conftest.py").write_text("from tests.conftest import pytest_runtest_makereport\n")
    (inner / "test_inner.py").write_text(INNER_TESTS)
    results = tmp_path / "results.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={results}"],
        cwd=inner,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    failed = {
        case.get("name")
        for case in ET.parse(results).iter("testcase")
        if case.find("error") is not None or case.find("failure") is not None
    }
    assert failed == {"test_logs_a_key", "test_prints_a_key", "test_daemon_log_has_a_key"}
