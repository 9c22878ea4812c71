"""The demo city: loaded through the public APIs, its simulated devices driven over MQTT."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from citytwin.app import create_app
from citytwin.demo import city
from citytwin.demo.simulator import Robot, Simulator, aqi, level, load
from citytwin.mqtt.client import Endpoint
from citytwin.settings import Settings

NGSI = "/ngsi-ld/v1"
ROBOT = city.robot_id("guide-1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    settings = Settings(database=str(tmp_path / "demo.db"), mqtt_port=port, command_timeout=5)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as http:
            await load(http, lambda line: None)
            sim = Simulator(Endpoint("127.0.0.1", port), period=0.1, air_period=0.1, speed=200)
            await sim.start()
            task = asyncio.create_task(sim.run())
            try:
                yield http
            finally:
                task.cancel()
                await sim.stop()


async def entity(http: httpx.AsyncClient, entity_id: str) -> dict[str, Any]:
    got = await http.get(f"{NGSI}/entities/{entity_id}")
    assert got.status_code == 200, got.text
    return got.json()


async def until(http: httpx.AsyncClient, entity_id: str, attr: str, value: Any) -> dict:
    for _ in range(200):
        body = await entity(http, entity_id)
        if body.get(attr, {}).get("value") == value:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{attr} of {entity_id} is {body.get(attr)}, not {value!r}")


async def test_the_city_is_loaded_with_real_places(demo: httpx.AsyncClient) -> None:
    got = await demo.get(f"{NGSI}/entities", params={"type": "PointOfInterest", "limit": 100})
    names = {e["name"]["value"] for e in got.json()}
    assert "Shanghai Science and Technology Museum" in names
    assert "Fudan University (Handan campus)" in names
    assert len(names) == len(city.PLACES)
    near = await demo.get(f"{NGSI}/entities", params={
        "type": "PointOfInterest", "georel": "near;maxDistance==2000", "geometry": "Point",
        "coordinates": "[121.5447,31.2196]"})  # fmt: skip
    assert {e["id"] for e in near.json()} == {city.place_id("sstm")}


async def test_air_quality_stations_report(demo: httpx.AsyncClient) -> None:
    body = await until_present(demo, city.station_id("fudan"), "pm25")
    assert body["pm25"]["unitCode"] == "GQ" and "observedAt" in body["pm25"]
    assert body["dataProvider"]["value"] == city.PROVIDER
    assert body["airQualityLevel"]["value"] == level(body["airQualityIndex"]["value"])
    assert body["refPointOfInterest"]["object"] == city.place_id("fudan")


async def until_present(http: httpx.AsyncClient, entity_id: str, attr: str) -> dict:
    for _ in range(200):
        body = await entity(http, entity_id)
        if attr in body:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{entity_id} has no {attr}")


async def go_to(demo: httpx.AsyncClient, where: str, status: str) -> dict[str, Any]:
    """Command the first robot to go somewhere; its twin once the command reached `status`."""
    command = {"type": "Property", "value": where}
    got = await demo.patch(f"{NGSI}/entities/{ROBOT}/attrs/goTo", json=command)
    assert got.status_code == 204
    return await until(demo, ROBOT, "goTo_status", status)


async def test_a_robot_obeys_go_to(demo: httpx.AsyncClient) -> None:
    body = await go_to(demo, "Robot World", "OK")
    assert body["goTo_info"]["value"] == "walking to Robot World"
    await until(demo, ROBOT, "nearExhibit", "Robot World")
    await until(demo, ROBOT, "state", "idle")
    lat, lon = city.EXHIBITS["Robot World"]
    body = await entity(demo, ROBOT)
    assert body["location"]["value"]["coordinates"] == pytest.approx([lon, lat], abs=1e-6)


async def test_a_robot_refuses_what_it_cannot_do(demo: httpx.AsyncClient) -> None:
    body = await go_to(demo, "the Moon", "ERROR")
    assert "neither an exhibit" in body["goTo_info"]["value"]


@pytest.mark.parametrize(
    ("pm25", "index", "name"),
    [(0, 0, "excellent"), (35, 50, "excellent"), (55, 75, "good"), (75, 100, "good"),
     (115, 150, "lightly polluted"), (250, 300, "heavily polluted"),
     (900, 500, "severely polluted")],
)  # fmt: skip
def test_air_quality_index_follows_hj_633(pm25: float, index: int, name: str) -> None:
    assert aqi(pm25) == index
    assert level(index) == name


def test_a_robot_walks_at_its_speed_and_charges_at_the_dock() -> None:
    start = city.EXHIBITS["entrance"]
    robot = Robot("r", *start, battery=50)
    assert robot.command("dock", "") == (True, "going to the dock")
    steps = 0
    while robot.state == "moving":
        robot.tick(1.0)
        steps += 1
    assert 30 <= steps <= 60  # ~44 m at 1.2 m/s
    assert robot.state == "charging"
    charged = robot.battery
    robot.tick(10)
    assert robot.battery == pytest.approx(charged + 5)
