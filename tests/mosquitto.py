"""A real mosquitto broker on a free loopback port, for the tests that need MQTT."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

EXECUTABLE = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def mosquitto(folder: Path) -> Iterator[int]:
    """Start mosquitto (installed by .ci/run) and yield its port."""
    if not Path(EXECUTABLE).exists():
        pytest.fail("mosquitto is not installed (apt-get install mosquitto; .ci/run does it)")
    port = _free_port()
    config = folder / "mosquitto.conf"
    # mosquitto drops QoS 1 messages beyond 1000 queued for a client that reads slowly (the
    # gateway holds back when its queue is full): a broker that must lose nothing needs more
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 1000000\n"
    )
    proc = subprocess.Popen(
        [EXECUTABLE, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("mosquitto did not start")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=5)
