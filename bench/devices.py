"""Device gateway benchmark: simulated FIWARE JSON devices publishing over MQTT to mosquitto.

    python -m bench.devices [--devices 1000] [--messages 100000] [--commands 200]

One citytwin server (1 worker, history on) is linked to a local mosquitto; the devices are
provisioned through /iot/devices and then publish measurements ({"t", "h", "b"}: three
readings a message) as fast as they can, at QoS 0 and at QoS 1. Printed beside the gateway's
rate, measured in the same run: the same burst through the same mosquitto to a subscriber that
only counts (the MQTT ceiling), and the same rows written by raw SQLite executemany (the store
ceiling). Then command round trips: PATCH of a command attribute until `<command>_status` is OK,
the simulated device answering at once.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.harness import citytwin, mosquitto, pct
from citytwin.mqtt.client import Ack, Endpoint, MqttClient
from citytwin.mqtt.codec import Message

APIKEY = "bench-key"
NGSI = "/ngsi-ld/v1"


def device_id(n: int) -> str:
    return f"sensor-{n:05d}"


def entity_id(n: int) -> str:
    return f"urn:ngsi-ld:Device:{device_id(n)}"


async def provision(url: str, devices: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        group = {"services": [{"apikey": APIKEY, "entity_type": "Device"}]}
        assert (await http.post("/iot/services", json=group)).status_code == 201
        attrs = [
            {"object_id": "t", "name": "temperature", "type": "Number"},
            {"object_id": "h", "name": "humidity", "type": "Number"},
            {"object_id": "b", "name": "battery", "type": "Integer"},
        ]
        for first in range(0, devices, 100):
            body = {
                "devices": [
                    {"device_id": device_id(n), "attributes": attrs, "commands": [{"name": "ping"}]}
                    for n in range(first, min(first + 100, devices))
                ]
            }
            got = await http.post("/iot/devices", json=body)
            assert got.status_code == 201, got.text


class Fleet:
    """Simulated devices: one MQTT connection each; they answer commands at once."""

    def __init__(self, port: int, devices: int) -> None:
        self.port = port
        self.clients = [self._client(n) for n in range(devices)]

    def _client(self, n: int) -> MqttClient:
        topic = f"/{APIKEY}/{device_id(n)}/cmd"
        client = MqttClient(
            Endpoint("127.0.0.1", self.port), device_id(n), subscriptions=[(topic, 1)]
        )
        client.on_message = lambda msg, ack: self._command(client, n, msg, ack)
        return client

    def _command(self, client: MqttClient, n: int, msg: Message, ack: Ack) -> None:
        ack()
        answer = orjson.loads(msg.payload)  # the device echoes each command's value
        client.publish_nowait(f"/{APIKEY}/{device_id(n)}/cmdexe", orjson.dumps(answer))

    async def start(self) -> None:
        for client in self.clients:
            await client.start()
        await asyncio.gather(*(c.connected.wait() for c in self.clients))

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.clients))

    async def burst(self, messages: int, qos: int) -> float:
        """Publish `messages` measurements round-robin; the seconds it took to send them."""
        start = time.perf_counter()
        pending: list[Any] = []
        n = len(self.clients)
        for i in range(messages):
            client = self.clients[i % n]
            topic = f"/{APIKEY}/{device_id(i % n)}/attrs"
            payload = orjson.dumps({"t": 20 + i % 100 / 10, "h": 40 + i % 30, "b": 100 - i % 90})
            if qos == 0:
                client.publish_nowait(topic, payload)
            else:
                pending.append(client.publish(topic, payload, qos=1))
            if i % 1000 == 999:
                if pending:
                    await asyncio.gather(*pending)
                    pending = []
                await asyncio.sleep(0)
        await asyncio.gather(*pending)
        return time.perf_counter() - start


def stored(db: str) -> int:
    """History instances in the file: what every worker committed (the metrics endpoint
    counts one worker's)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM history").fetchone()[0])


async def absorbed(db: str, target: int, stall: float = 15.0) -> float:
    """Wait until the history holds `target` instances (or no progress for `stall` seconds);
    returns the moment it got there."""
    last, since = -1, time.perf_counter()
    while True:
        done = await asyncio.to_thread(stored, db)
        if done >= target:
            return time.perf_counter()
        if done != last:
            last, since = done, time.perf_counter()
        elif time.perf_counter() - since > stall:
            return time.perf_counter()
        await asyncio.sleep(0.05)


async def gateway_run(url: str, db: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fleet = Fleet(port, args.devices)
    await fleet.start()
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for qos in (0, 1):
            base = stored(db)
            start = time.perf_counter()
            sent = await fleet.burst(args.messages, qos)
            end = await absorbed(db, base + 3 * args.messages)
            got = (stored(db) - base) // 3
            out[f"qos{qos}"] = (got / (end - start), args.messages - got, sent)
            print(f"  QoS {qos}: {got:,} of {args.messages:,} applied in {end - start:.1f} s",
                  flush=True)  # fmt: skip
        out["rtt"] = await round_trips(http, args.commands, args.devices)
    await fleet.stop()
    return out


async def round_trips(http: httpx.AsyncClient, count: int, devices: int) -> list[float]:
    """PATCH `ping` = i; done when ping_status is OK and ping_info echoes i."""
    times = []
    params = {"attrs": "ping_status,ping_info", "options": "keyValues"}
    for i in range(count):
        target = f"{NGSI}/entities/{entity_id(i % devices)}"
        start = time.perf_counter()
        got = await http.patch(f"{target}/attrs/ping", json={"type": "Property", "value": i})
        assert got.status_code == 204, got.text
        while True:
            state = (await http.get(target, params=params)).json()
            if state["ping_status"] == "OK" and state["ping_info"] == i:
                break
            await asyncio.sleep(0.001)
        times.append((time.perf_counter() - start) * 1000)
    return times


def _count(port: int, messages: int, ready: Any, result: Any) -> None:
    """The MQTT ceiling's subscriber, in a process of its own as the gateway is."""

    async def run() -> None:
        seen = 0
        done = asyncio.Event()

        def got(msg: Message, ack: Ack) -> None:
            nonlocal seen
            seen += 1
            if seen >= messages:
                done.set()

        topics = [("/+/+/attrs", 0)]
        client = MqttClient(Endpoint("127.0.0.1", port), "counter", got, subscriptions=topics)
        await client.start(wait=10)
        await asyncio.sleep(0.2)
        ready.set()
        first = None
        while first is None:
            await asyncio.sleep(0.001)
            first = time.perf_counter() if seen else None
        try:
            await asyncio.wait_for(done.wait(), 120)
        except TimeoutError:
            pass
        result.put((seen, time.perf_counter()))
        await client.stop()

    asyncio.run(run())


async def mqtt_ceiling(port: int, args: argparse.Namespace) -> float:
    ctx = multiprocessing.get_context("spawn")
    ready, result = ctx.Event(), ctx.Queue()
    counter = ctx.Process(target=_count, args=(port, args.messages, ready, result))
    counter.start()
    await asyncio.to_thread(ready.wait, 30)
    fleet = Fleet(port, args.devices)
    await fleet.start()
    start = time.perf_counter()
    await fleet.burst(args.messages, 0)
    seen, end = await asyncio.to_thread(result.get, True, 180)
    await fleet.stop()
    counter.join(10)
    return seen / (end - start)


def sqlite_ceiling(messages: int, devices: int) -> float:
    """Raw executemany of what the gateway writes per message: the entity document rewritten
    and three history rows, batches of 2,000 messages a transaction, on the same schema."""
    from citytwin.store.sqlite_index import migrate

    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(str(Path(tmp) / "raw.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn)
        doc = orjson.dumps({"id": "x", "attrs": {f"a{i}": [{"value": i}] for i in range(12)}})
        conn.executemany(
            "INSERT INTO entities (tenant, id, types, doc, created_at, modified_at)"
            " VALUES ('', ?, '[]', ?, '', '')",
            [(entity_id(n), doc.decode()) for n in range(devices)],
        )
        body = '{"type":"Property","value":21.5,"observedAt":"2026-01-01T00:00:00Z"}'
        start = time.perf_counter()
        for first in range(0, messages, 2000):
            rng = range(first, min(first + 2000, messages))
            conn.execute("BEGIN")
            conn.executemany(
                "UPDATE entities SET doc = ?, modified_at = ? WHERE tenant = '' AND id = ?",
                [(doc.decode(), str(i), entity_id(i % devices)) for i in rng],
            )
            conn.executemany(
                "INSERT INTO history (sid, observed, created, modified, num, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(i % devices * 3 + k, i, i, i, 21.5, body) for i in rng for k in range(3)],
            )
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
    return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, mosquitto() as port:
        print(f"measuring the MQTT ceiling ({args.messages:,} messages to a counting"
              " subscriber)...", flush=True)  # fmt: skip
        relay = asyncio.run(mqtt_ceiling(port, args))
        print("measuring the raw SQLite ceiling...", flush=True)
        raw = sqlite_ceiling(args.messages, args.devices)
        db = str(Path(tmp) / "devices.db")
        env = {"CITYTWIN_MQTT": f"mqtt://127.0.0.1:{port}"}
        with citytwin(db, args.workers, env) as (url, _):
            print(f"provisioning {args.devices:,} devices...", flush=True)
            asyncio.run(provision(url, args.devices))
            print("publishing...", flush=True)
            result = asyncio.run(gateway_run(url, db, port, args))
        history = sqlite3.connect(db).execute("SELECT count(*) FROM history").fetchone()[0]
    print(f"\ncitytwin device gateway benchmark: {args.devices:,} devices, {args.messages:,}"
          f" messages of 3 readings, history on, {args.workers} worker(s)")  # fmt: skip
    print(f"{'':<34}{'messages/s':>12}{'vs MQTT':>9}{'vs SQLite':>11}{'lost':>7}")
    for name, key in (("gateway, QoS 0", "qos0"), ("gateway, QoS 1", "qos1")):
        rate, lost, sent = result[key]
        print(f"{name:<34}{rate:>12,.0f}{rate / relay:>9.2f}{rate / raw:>11.2f}{lost:>7,}"
              f"   (published in {sent:.1f} s)")  # fmt: skip
    print(f"{'MQTT ceiling (counting subscriber)':<34}{relay:>12,.0f}")
    print(f"{'SQLite ceiling (raw executemany)':<34}{raw:>12,.0f}")
    print(f"history instances stored: {history:,} (3 a message, plus command statuses)")
    rtt = result["rtt"]
    print(f"command round trip (PATCH -> <command>_status OK), {len(rtt)} commands:"
          f" p50 {pct(rtt, 50):.1f} ms, p99 {pct(rtt, 99):.1f} ms")  # fmt: skip
    print("target: >= 10,000 messages/s at QoS 0, nothing lost at QoS 1")


if __name__ == "__main__":
    sys.exit(main())
