"""A real mosquitto broker on a free loopback port, for the tests that need MQTT."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.harness import mosquitto as started

EXECUTABLE = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@contextmanager
def mosquitto(folder: Path | None = None) -> Iterator[int]:
    """Start mosquitto (installed by .ci/run) and yield its port."""
    if not Path(EXECUTABLE).exists():
        pytest.fail("mosquitto is not installed (apt-get install mosquitto; .ci/run does it)")
    with started() as port:
        yield port
