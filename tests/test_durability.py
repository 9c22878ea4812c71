"""End to end against a real server process: what the broker acknowledged survives a SIGKILL.

Writers keep requests in flight while the server is killed with SIGKILL, so the test sees the
store at an arbitrary point of its group commit. After a restart on the same file every write
that was answered 201/204 must be there; a write that was in flight may or may not be.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
BASE = "/ngsi-ld/v1"
WRITERS = 16
LOAD_SECONDS = 1.5
MAX_WRITES = 2000
READY_SECONDS = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Servers:
    """`python -m citytwin serve` processes on one database (a SQLite file or a PostgreSQL
    URL), each in its own process group."""

    db: str
    logs: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    async def start(self, *extra: str) -> str:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITYTWIN_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        log = self.logs / f"server-{len(self.started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "citytwin", "serve", self.db, "--port", str(port)]
                + list(extra),
                cwd=self.logs,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append(proc)
        url = f"http://127.0.0.1:{port}{BASE}"
        await _wait_ready(proc, url, log)
        return url

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)

    def kill_all(self) -> None:
        for proc in self.started:
            self.kill(proc)


async def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    async with httpx.AsyncClient(trust_env=False, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if (await client.get(url + "/jsonldContexts")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    pytest.fail(f"server not ready after {READY_SECONDS} s:\n{log.read_text()}")


@pytest.fixture
async def servers(database_url: str, tmp_path: Path) -> AsyncIterator[Servers]:
    servers = Servers(database_url, tmp_path)
    try:
        yield servers
    finally:
        servers.kill_all()


@dataclass
class Load:
    """What the writers saw, by entity id: the last value acknowledged, the value in flight."""

    acked: dict[str, Any] = field(default_factory=dict)
    in_flight: dict[str, Any] = field(default_factory=dict)
    in_flight_at_kill: int = 0
    unexpected: list[tuple[str, int, str]] = field(default_factory=list)


Send = Callable[[httpx.AsyncClient, str, Any], Awaitable[httpx.Response]]
Work = Callable[[int], Iterator[tuple[str, Any]]]


async def write_until_killed(servers: Servers, url: str, work: Work, send: Send, ok: int) -> Load:
    """WRITERS tasks send (entity id, value) items until the server is SIGKILLed under them.

    Writer k sends work(k) one request at a time; work(k) for different k share no entity, so
    each entity's writes are ordered. The kill comes after LOAD_SECONDS or MAX_WRITES
    acknowledgements, whichever is first.
    """
    load = Load()
    proc = servers.started[-1]
    killed = asyncio.Event()
    acknowledged = 0

    async def writer(client: httpx.AsyncClient, items: Iterator[tuple[str, Any]]) -> None:
        nonlocal acknowledged
        for entity_id, value in items:
            if killed.is_set():
                return
            load.in_flight[entity_id] = value
            try:
                response = await send(client, entity_id, value)
            except httpx.TransportError:
                return
            del load.in_flight[entity_id]
            if response.status_code == ok:
                load.acked[entity_id] = value
                acknowledged += 1
            else:
                load.unexpected.append((entity_id, response.status_code, response.text))

    limits = httpx.Limits(max_connections=WRITERS)
    async with httpx.AsyncClient(base_url=url, trust_env=False, limits=limits) as client:
        tasks = [asyncio.create_task(writer(client, work(k))) for k in range(WRITERS)]
        deadline = time.monotonic() + LOAD_SECONDS
        while time.monotonic() < deadline and acknowledged < MAX_WRITES:
            await asyncio.sleep(0.01)
        load.in_flight_at_kill = len(load.in_flight)
        servers.kill(proc)
        killed.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
    return load


async def read_all(url: str, ids: list[str], attr: str) -> dict[str, Any]:
    """id -> the attribute's value, or the status code when the GET is not a 200."""
    found: dict[str, Any] = {}
    pending = iter(ids)

    async def reader(client: httpx.AsyncClient) -> None:
        for entity_id in pending:
            response = await client.get(f"/entities/{entity_id}")
            ok = response.status_code == 200
            found[entity_id] = response.json()[attr]["value"] if ok else response.status_code

    async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
        await asyncio.gather(*(reader(client) for _ in range(WRITERS)))
    return found


async def create(client: httpx.AsyncClient, entity_id: str, value: Any) -> httpx.Response:
    body = {"id": entity_id, "type": "Sensor", "reading": {"type": "Property", "value": value}}
    return await client.post("/entities", json=body)


async def patch(client: httpx.AsyncClient, entity_id: str, value: Any) -> httpx.Response:
    return await client.patch(f"/entities/{entity_id}/attrs/reading", json={"value": value})


def assert_load_was_real(load: Load) -> None:
    assert not load.unexpected, load.unexpected[:5]
    assert load.acked, "no write was acknowledged before the kill"
    assert load.in_flight_at_kill > 0, "the kill came when no write was in flight"


async def test_acknowledged_writes_survive_sigkill(servers: Servers) -> None:
    def sensors(k: int) -> Iterator[tuple[str, Any]]:
        for n in itertools.count(k, WRITERS):
            yield f"urn:ngsi-ld:Sensor:{n}", n

    url = await servers.start()
    created = await write_until_killed(servers, url, sensors, create, ok=201)
    assert_load_was_real(created)

    url = await servers.start()
    ids = list(created.acked)
    after = await read_all(url, ids + list(created.in_flight), "reading")
    lost = [i for i in ids if after[i] != created.acked[i]]
    assert not lost, f"{len(lost)} of {len(ids)} acknowledged creates lost, e.g. {lost[:5]}"
    torn = {i: after[i] for i, v in created.in_flight.items() if after[i] not in (404, v)}
    assert not torn, f"in-flight creates came back wrong: {torn}"

    # Partial updates (5.6.4): writer k patches its share of the entities over and over with
    # patch-1, patch-2, ...; after the restart each holds its last acknowledged value, or the
    # one that was in flight when the server died.
    def patches(k: int) -> Iterator[tuple[str, Any]]:
        share = ids[k::WRITERS]
        for r in itertools.count(1) if share else ():
            for entity_id in share:
                yield entity_id, f"patch-{r}"

    patched = await write_until_killed(servers, url, patches, patch, ok=204)
    assert_load_was_real(patched)

    url = await servers.start()
    allowed = {i: {patched.acked.get(i, v)} for i, v in created.acked.items()}
    for entity_id, value in patched.in_flight.items():
        allowed[entity_id].add(value)
    after = await read_all(url, ids, "reading")
    wrong = {i: (after[i], allowed[i]) for i in ids if after[i] not in allowed[i]}
    assert not wrong, f"{len(wrong)} acknowledged patches lost, e.g. {list(wrong.items())[:5]}"
