"""`citytwin demo` as a newcomer runs it: a server and its device simulator, two processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.demo.test_demo import free_port
from tests.test_durability import ROOT

NGSI = "/ngsi-ld/v1"


def start_demo(folder: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    """`python -m citytwin demo` on free ports, its output in folder/demo.log."""
    port, mqtt_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYTWIN_")}
    env["PYTHONPATH"] = str(ROOT)
    log = folder / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "citytwin", "demo", str(folder / "demo.db"),
             "--port", str(port), "--mqtt-port", str(mqtt_port), *extra],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder, start_new_session=True,
        )  # fmt: skip
    return proc, port, log


async def test_demo_serves_a_living_city(tmp_path: Path) -> None:
    proc, port, log = start_demo(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as web:
            robot = await reported(web, log, options="keyValues")
        assert robot["state"] in ("idle", "moving", "greeting", "charging")
        assert robot["location"]["type"] == "Point"
        places = (await _get(port, "PointOfInterest")).json()
        assert len(places) == 10
    finally:
        proc.send_signal(signal.SIGTERM)  # the simulator goes with the server
        proc.wait(timeout=20)
    assert proc.returncode in (0, -signal.SIGTERM), log.read_text()
    assert "simulated devices connected" in log.read_text()
    for _ in range(50):
        leftover = subprocess.run(["pgrep", "-f", f"simulate --url http://127.0.0.1:{port}"],
                                  capture_output=True, text=True).stdout  # fmt: skip
        if not leftover:
            break
        await asyncio.sleep(0.1)
    assert leftover == ""


async def reported(web: httpx.AsyncClient, log: Path, **params: str) -> dict:
    """The first guide robot, once its simulated device has reported its location."""
    for _ in range(300):
        try:
            got = await web.get(f"{NGSI}/entities/urn:ngsi-ld:Robot:sstm-guide-1", params=params)
            if got.status_code == 200 and "location" in got.json():
                return got.json()
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"no robot reported:\n{log.read_text()}")


async def _get(port: int, kind: str) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False) as web:
        return await web.get(f"http://127.0.0.1:{port}{NGSI}/entities", params={"type": kind})
