"""The demo's device simulator: air-quality stations and guide robots that talk to the twin only
as real FIWARE JSON devices would (MQTT measurements in, commands out, answers back), and the
loading of the demo city through the public APIs (provisioning and NGSI-LD batch upsert).

The air-quality model is deliberately simple and visible: a daily cycle (traffic peaks for PM
and NO2, an afternoon peak for ozone) plus Gaussian noise; the Air Quality Index follows
China's HJ 633-2012 breakpoints for PM2.5.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import orjson

from citytwin.demo import city
from citytwin.mqtt.client import Ack, Endpoint, MqttClient
from citytwin.mqtt.codec import Message

SHANGHAI = timezone(timedelta(hours=8))  # the daily cycles follow the city's clock
SPEED = 1.2  # metres a second a robot walks
METRES_PER_DEGREE = 111_320.0
# HJ 633-2012 (PM2.5, 24-hour): concentration breakpoints (µg/m³) and index values
PM25_BREAKS = [0, 35, 75, 115, 150, 250, 350, 500]
AQI_BREAKS = [0, 50, 100, 150, 200, 300, 400, 500]
LEVELS = [(50, "excellent"), (100, "good"), (150, "lightly polluted"),
          (200, "moderately polluted"), (300, "heavily polluted")]  # fmt: skip


def aqi(pm25: float) -> int:
    for n in range(1, len(PM25_BREAKS)):
        if pm25 <= PM25_BREAKS[n]:
            lo, hi = PM25_BREAKS[n - 1], PM25_BREAKS[n]
            share = (pm25 - lo) / (hi - lo)
            return round(AQI_BREAKS[n - 1] + (AQI_BREAKS[n] - AQI_BREAKS[n - 1]) * share)
    return 500


def level(index: int) -> str:
    """The HJ 633-2012 category of an index."""
    return next((name for top, name in LEVELS if index <= top), "severely polluted")


def air_reading(key: str, moment: datetime, rng: random.Random) -> dict[str, Any]:
    """One station's measurements at a moment: daily cycles plus noise."""
    hour = moment.hour + moment.minute / 60
    base = 28 + 6 * (zlib.crc32(key.encode()) % 5)  # each station its own level
    traffic = math.cos(2 * math.pi * (hour - 8.5) / 24)
    pm25 = max(2.0, base * (1 + 0.35 * traffic) + rng.gauss(0, 3))
    o3 = max(5.0, 70 + 45 * math.cos(2 * math.pi * (hour - 14.5) / 24) + rng.gauss(0, 5))
    index = aqi(pm25)
    return {
        "pm25": round(pm25, 1),
        "pm10": round(pm25 * 1.6 + rng.gauss(0, 4), 1),
        "no2": round(max(3.0, 32 + 16 * traffic + rng.gauss(0, 3)), 1),
        "o3": round(o3, 1),
        "aqi": index,
        "level": level(index),
        "temp": round(9 + 4 * math.cos(2 * math.pi * (hour - 15) / 24) + rng.gauss(0, 0.3), 1),
    }


@dataclass
class Robot:
    """A guide robot: walks to exhibits, greets, docks to charge."""

    key: str
    lat: float
    lon: float
    battery: float = 90.0
    state: str = "idle"
    task: str = "waiting for visitors"
    target: tuple[float, float] | None = None
    near: str = "entrance"
    busy_until: float = 0.0
    speed: float = SPEED

    def command(self, name: str, value: Any) -> tuple[bool, str]:
        """Accept a command (True and what it will do) or refuse it (False and why)."""
        if name == "greet":
            self.state, self.task = "greeting", f"greeting: {value or 'ni hao'}"
            self.busy_until = time.monotonic() + 3
            return True, "greeting visitors"
        if name == "dock":
            self._go(city.EXHIBITS["dock"], "dock", "going to the dock")
            return True, "going to the dock"
        if name == "goTo":
            return self._go_to(value)
        return False, f"ERROR: unknown command {name}"

    def _go_to(self, value: Any) -> tuple[bool, str]:
        if self.battery < 5:
            return False, "ERROR: battery too low; dock first"
        if isinstance(value, str) and value in city.EXHIBITS:
            self._go(city.EXHIBITS[value], value, f"guiding visitors to {value}")
            return True, f"walking to {value}"
        spot = _position(value)
        if spot is None:
            names = ", ".join(sorted(city.EXHIBITS))
            return False, f"ERROR: {value!r} is neither an exhibit ({names}) nor 'lat,lon'"
        self._go(spot, "", f"walking to {spot[0]:.5f},{spot[1]:.5f}")
        return True, f"walking to {spot[0]:.5f},{spot[1]:.5f}"

    def _go(self, spot: tuple[float, float], name: str, task: str) -> None:
        self.target, self.near, self.state, self.task = spot, name, "moving", task

    def tick(self, seconds: float) -> None:
        if self.state == "greeting" and time.monotonic() >= self.busy_until:
            self.state, self.task = "idle", "waiting for visitors"
        if self.state == "moving" and self.target is not None:
            self._walk(seconds)
        if self.state == "charging":
            self.battery = min(100.0, self.battery + 0.5 * seconds)
        else:
            use = 0.05 if self.state == "moving" else 0.01  # percent a second
            self.battery = max(0.0, self.battery - use * seconds)

    def _walk(self, seconds: float) -> None:
        assert self.target is not None
        dy = (self.target[0] - self.lat) * METRES_PER_DEGREE
        dx = (self.target[1] - self.lon) * METRES_PER_DEGREE * math.cos(math.radians(self.lat))
        distance = math.hypot(dx, dy)
        step = self.speed * seconds
        if distance <= step:
            self.lat, self.lon = self.target
            self.target = None
            docked = self.near == "dock"
            self.state = "charging" if docked else "idle"
            self.task = "charging" if docked else f"at {self.near or 'destination'}"
            return
        self.lat += (dy / distance) * step / METRES_PER_DEGREE
        self.lon += (dx / distance) * step / (METRES_PER_DEGREE * math.cos(math.radians(self.lat)))

    def reading(self) -> dict[str, Any]:
        return {
            "pos": f"{self.lat:.6f},{self.lon:.6f}",
            "bat": round(self.battery, 1),
            "state": self.state,
            "task": self.task,
            "at": self.near or "",
        }


def _position(value: Any) -> tuple[float, float] | None:
    """'lat,lon', [lon, lat] or a GeoJSON Point, near the museum."""
    try:
        if isinstance(value, str):
            lat, lon = (float(v) for v in value.split(","))
        elif isinstance(value, dict) and value.get("type") == "Point":
            lon, lat = (float(v) for v in value["coordinates"])
        elif isinstance(value, list) and len(value) == 2:
            lon, lat = (float(v) for v in value)
        else:
            return None
    except (TypeError, ValueError, KeyError):
        return None
    centre = city.EXHIBITS["entrance"]
    if abs(lat - centre[0]) > 0.01 or abs(lon - centre[1]) > 0.01:
        return None  # a guide robot stays in (and around) its museum
    return lat, lon


async def load(http: httpx.AsyncClient, progress: Any = print) -> None:
    """Load the demo city through the public APIs (again: what exists is kept)."""
    for group, devices in (
        (city.station_group(), city.station_devices()),
        (city.robot_group(), city.robot_devices()),
    ):
        got = await http.post("/iot/services", json={"services": [group]})
        if got.status_code not in (201, 409):
            raise RuntimeError(f"provisioning {group['apikey']}: {got.status_code} {got.text}")
        for device in devices:
            device = {**device, "apikey": group["apikey"]}
            got = await http.post("/iot/devices", json={"devices": [device]})
            if got.status_code not in (201, 409):
                raise RuntimeError(f"provisioning {device['device_id']}: {got.text}")
    got = await http.post("/ngsi-ld/v1/entityOperations/upsert", json=city.places())
    if got.status_code not in (201, 204):
        raise RuntimeError(f"loading the places: {got.status_code} {got.text}")
    progress(f"demo city loaded: {len(city.PLACES)} places, {len(city.STATIONS)} air-quality"
             f" stations, {len(city.ROBOTS)} guide robots")  # fmt: skip


@dataclass
class Simulator:
    """Every simulated device, one MQTT connection each, in one process."""

    mqtt: Endpoint
    period: float = 1.0  # seconds between robot readings
    air_period: float = 10.0  # seconds between air-quality readings
    speed: float = SPEED
    robots: dict[str, Robot] = field(default_factory=dict)
    clients: dict[str, MqttClient] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(20261130))

    async def start(self) -> None:
        start = city.EXHIBITS["entrance"]
        for n, key in enumerate(city.ROBOTS):
            lat, lon = start[0] + 0.00012 * n, start[1] - 0.00015 * n
            self.robots[key] = Robot(key, lat, lon, battery=92.0 - 7 * n, speed=self.speed)
            topic = f"/{city.APIKEY_ROBOTS}/{key}/cmd"
            self.clients[key] = self._client(key, [(topic, 1)])
        for key in city.STATIONS:
            self.clients[f"air-{key}"] = self._client(f"air-{key}", [])
        for client in self.clients.values():
            await client.start()
        await asyncio.gather(*(c.connected.wait() for c in self.clients.values()))

    def _client(self, device_id: str, topics: list[tuple[str, int]]) -> MqttClient:
        return MqttClient(
            self.mqtt,
            f"demo-{device_id}",
            lambda msg, ack: self._command(device_id, msg, ack),
            subscriptions=topics,
        )

    def _command(self, key: str, msg: Message, ack: Ack) -> None:
        ack()
        robot = self.robots.get(key)
        try:
            commands = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            return
        if robot is None or not isinstance(commands, dict):
            return
        answers = {}
        for name, value in commands.items():
            _, info = robot.command(name, value)
            answers[name] = info
        topic = f"/{city.APIKEY_ROBOTS}/{key}/cmdexe"
        self.clients[key].publish_nowait(topic, orjson.dumps(answers))
        self._report(key)

    def _report(self, key: str) -> None:
        topic = f"/{city.APIKEY_ROBOTS}/{key}/attrs"
        self.clients[key].publish_nowait(topic, orjson.dumps(self.robots[key].reading()))

    async def run(self) -> None:
        last_air = 0.0
        while True:
            started = time.monotonic()
            for key, robot in self.robots.items():
                robot.tick(self.period)
                self._report(key)
            if started - last_air >= self.air_period:
                last_air = started
                moment = datetime.now(SHANGHAI)
                for key in city.STATIONS:
                    topic = f"/{city.APIKEY_AIR}/air-{key}/attrs"
                    body = orjson.dumps(air_reading(key, moment, self.rng))
                    self.clients[f"air-{key}"].publish_nowait(topic, body)
            await asyncio.sleep(max(0.0, self.period - (time.monotonic() - started)))

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.clients.values()))
