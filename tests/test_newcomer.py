"""The README's first command, the way a newcomer runs it: a fresh clone, `./run demo`, and the
map answers (its page, MapLibre, the basemap) while the demo's robots report."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import httpx

from tests.demo.test_demo import free_port
from tests.test_durability import ROOT

SETUP_WAIT = 900.0  # seconds for a fresh venv, pip and npm installs


async def test_run_demo_from_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "citytwin"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    port, mqtt_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CITYTWIN_", "VIRTUAL_ENV"))}
    log = tmp_path / "run-demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["./run", "demo", "--port", str(port), "--mqtt-port", str(mqtt_port)],
            cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as web:
            page = await _answering(web, proc, log)
            assert "citytwin" in page.text and "/map/app.js" in page.text
            module = await web.get("/assets/maplibre-gl/dist/maplibre-gl.mjs")
            assert module.status_code == 200
            assert (await web.get("/citytwin/v1/basemap")).json()["features"]
            await _robots_report(web, log)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


async def _answering(
    web: httpx.AsyncClient, proc: subprocess.Popen[bytes], log: Path
) -> httpx.Response:
    deadline = asyncio.get_running_loop().time() + SETUP_WAIT
    while asyncio.get_running_loop().time() < deadline:
        assert proc.poll() is None, f"./run demo exited:\n{log.read_text()}"
        try:
            got = await web.get("/")
            if got.status_code == 200:
                return got
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.5)
    raise AssertionError(f"the map did not answer:\n{log.read_text()}")


async def _robots_report(web: httpx.AsyncClient, log: Path) -> None:
    for _ in range(300):
        got = await web.get("/ngsi-ld/v1/entities", params={"type": "Robot", "attrs": "state"})
        if got.status_code == 200 and any("state" in e for e in got.json()):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no robot reported:\n{log.read_text()}")
