"""The cloud daemons the fault tests share (see clouds.py)."""

from tests.faults.clouds import CLOUDS, cloud_fixture

dashscope, qwen, azure = (cloud_fixture(name) for name in CLOUDS)
