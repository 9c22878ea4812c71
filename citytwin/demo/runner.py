"""`citytwin simulate`: wait for the twin, load the demo city, run the simulated devices."""

from __future__ import annotations

import asyncio
import os

import httpx

from citytwin.demo.simulator import Simulator, load
from citytwin.devices.link import endpoint

READY_WAIT = 60.0  # seconds to wait for the twin to answer


async def simulate(url: str, mqtt: str | None, speed: float = 1.0) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as http:
        await _ready(http)
        await load(http, lambda line: print(f"citytwin demo: {line}", flush=True))
    if mqtt is None:
        return
    simulator = Simulator(endpoint(mqtt), speed=1.2 * speed)
    await simulator.start()
    print(f"citytwin demo: {len(simulator.clients)} simulated devices connected to {mqtt}",
          flush=True)  # fmt: skip
    running = asyncio.create_task(simulator.run())
    try:
        await _orphaned()  # `citytwin demo` is gone (however it ended): so are its devices
    finally:
        running.cancel()
        await simulator.stop()


async def _orphaned() -> None:
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(0.5)


async def _ready(http: httpx.AsyncClient) -> None:
    deadline = asyncio.get_running_loop().time() + READY_WAIT
    while True:
        try:
            if (await http.get("/ngsi-ld/v1/jsonldContexts")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise SystemExit(f"citytwin demo: the twin at {http.base_url} does not answer")
        await asyncio.sleep(0.2)
