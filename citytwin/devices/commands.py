"""Commands out (the FIWARE IoT Agent command flow, on the twin itself).

A write of a command attribute of a device's twin, through any API and any worker, is found in
the change log; the gateway sets `<command>_status` to PENDING, sends `{"<command>": value}` to
the device (MQTT `/{apikey}/{device_id}/cmd`, an HTTP push to the device's endpoint, or the
device's next poll), and records the answer as OK or ERROR with `<command>_info`; a command not
answered within the timeout becomes EXPIRED. The status lives in the twin, so a restart, or
another worker answering a poll, knows what is pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from citytwin.broker import Broker, now
from citytwin.devices.measure import command_attrs
from citytwin.devices.provision import Profile
from citytwin.devices.registry import Registry
from citytwin.model.context import Context
from citytwin.model.entity import expand_name, parse_attributes
from citytwin.model.times import to_micros
from citytwin.store.base import ChangeRecord

log = logging.getLogger("citytwin.devices")
CURSOR = "commands"
SAVE_EVERY = 1.0  # seconds between cursor saves when no command was issued
POLL = 0.01  # seconds between looks at the change log (commits by other workers wake no one)
PENDING, DELIVERED, OK, ERROR, EXPIRED = "PENDING", "DELIVERED", "OK", "ERROR", "EXPIRED"
Key = tuple[str, str, str]  # tenant, entity id, command
Send = Callable[[Profile, str, Any], Awaitable[None]]


def outcome(result: Any) -> str:
    """A device's answer is an ERROR if it says so: {"error": ...} or a text starting ERROR."""
    if isinstance(result, dict) and "error" in result:
        return ERROR
    if isinstance(result, str) and result.upper().startswith("ERROR"):
        return ERROR
    return OK


class Commands:
    def __init__(
        self,
        broker: Broker,
        registry: Registry,
        ctx: Context,
        metrics: Counter[str],
        send: Send,
        timeout: float,
    ) -> None:
        self.broker = broker
        self.registry = registry
        self.ctx = ctx
        self.metrics = metrics
        self.send = send
        self.timeout = timeout
        self.pending: dict[Key, float] = {}  # -> deadline (time.time())
        self.seq = 0
        self.saved_at = 0.0  # time.monotonic() of the last cursor save
        self.needles: tuple[int, list[str]] = (-2, [])  # (registry version, names)
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        store = self.broker.store
        saved = await store.cursor(CURSOR)
        self.seq = saved if saved is not None else await store.last_change()
        await self._recover()
        self.tasks = [asyncio.create_task(self._tail()), asyncio.create_task(self._expire())]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.aclose()
            self.http = None  # a worker that leads again makes a new client

    # -- finding commands in the change log ------------------------------------------------------

    async def _tail(self) -> None:
        store = self.broker.store
        loop = asyncio.get_running_loop()
        while True:
            timer = loop.call_later(POLL, self.wake.set)  # other workers' commits wake no one
            await self.wake.wait()
            timer.cancel()
            self.wake.clear()
            try:
                await self._pass(store)
            except Exception:
                log.exception("reading commands from the change log failed")
                await asyncio.sleep(1)

    async def _pass(self, store: Any) -> None:
        """Commands written since the cursor. The cursor is saved at once after a command was
        issued, else at most every SAVE_EVERY seconds (measurements move it on every commit,
        and a write per commit for it would double the transactions)."""
        last = await store.last_change()
        if last <= self.seq:
            return
        await self.registry.refresh()  # devices provisioned by other workers
        issued = False
        needles = self._needles()
        if needles:
            for change in await store.changes_touching(self.seq, last, needles):
                issued |= await self._seen(change)
        self.seq = last
        moment = time.monotonic()
        if issued or moment - self.saved_at >= SAVE_EVERY:
            self.saved_at = moment
            await store.set_cursor(CURSOR, last)

    def _needles(self) -> list[str]:
        """The written-attribute names that can be commands (recomputed when the provisioning
        changes, not on every pass)."""
        if self.needles[0] != self.registry.version:
            names = {n for p in self.registry.commanded() for n in p.commands}
            iris = [f'"{expand_name(n, self.ctx)}"' for n in sorted(names)]
            self.needles = (self.registry.version, iris)
        return self.needles[1]

    async def _seen(self, change: ChangeRecord) -> bool:
        device = self.registry.by_entity(change.tenant, change.entity_id)
        if device is None or change.before is None or change.after is None:
            return False  # not a device, or its twin was just created
        issued = False
        for name in device.commands:
            written = _written(change, expand_name(name, self.ctx))
            if written is not None:
                await self.issue(device, name, written.get("value"), change.at)
                issued = True
        return issued

    # -- the command's life ----------------------------------------------------------------------

    async def issue(self, device: Profile, name: str, value: Any, at: str) -> None:
        self.metrics["commands.issued"] += 1
        key = (device.tenant, device.entity_id, name)
        deadline = to_micros(at) / 1e6 + self.timeout
        if deadline <= time.time():
            await self._status(device, name, EXPIRED, "not sent: older than the command timeout")
            return
        self.pending[key] = deadline
        await self._status(device, name, PENDING, None)
        if device.transport == "HTTP":
            if device.endpoint:
                asyncio.create_task(self._push(device, name, value))
            return  # otherwise the device polls for it
        try:
            await self.send(device, name, value)
        except (ConnectionError, OSError) as exc:
            self.pending.pop(key, None)
            await self._status(device, name, ERROR, f"not sent: {exc}")

    async def answered(self, device: Profile, results: dict[str, Any]) -> None:
        """The device's answer: {"<command>": result, ...} (MQTT cmdexe or HTTP)."""
        for name, result in results.items():
            if name not in device.commands:
                self.metrics["dropped.unknown-command"] += 1
                continue
            self.pending.pop((device.tenant, device.entity_id, name), None)
            status = outcome(result)
            self.metrics[f"commands.{status.lower()}"] += 1
            await self._status(device, name, status, "" if result is None else result)

    async def polled(self, device: Profile) -> dict[str, Any]:
        """The pending commands of a polling HTTP device; they become DELIVERED."""
        entity = await self.broker.store.get(device.tenant, device.entity_id)
        if entity is None:
            return {}
        out: dict[str, Any] = {}
        for name in device.commands:
            status = _value(entity, expand_name(f"{name}_status", self.ctx))
            if status == PENDING:
                out[name] = _value(entity, expand_name(name, self.ctx))
                await self._status(device, name, DELIVERED, None, after=(PENDING,))
        return out

    async def _push(self, device: Profile, name: str, value: Any) -> None:
        """An HTTP device with an endpoint: the command is POSTed, its answer is the response."""
        if self.http is None:
            self.http = httpx.AsyncClient(timeout=self.timeout)
        assert device.endpoint is not None
        try:
            response = await self.http.post(device.endpoint, json={name: value})
            response.raise_for_status()
            body = response.json() if response.content else {}
        except (httpx.HTTPError, ValueError) as exc:
            self.pending.pop((device.tenant, device.entity_id, name), None)
            await self._status(device, name, ERROR, f"push to {device.endpoint} failed: {exc}")
            return
        answer = body if isinstance(body, dict) and name in body else {name: body}
        await self.answered(device, answer)

    async def _status(
        self, device: Profile, name: str, status: str, info: Any, after: tuple[str, ...] = ()
    ) -> None:
        """Write a command's status (and info); with `after`, only if the status is still one
        of those (in the write's transaction: an answer taken meanwhile by another worker is
        not overwritten)."""
        iri = expand_name(f"{name}_status", self.ctx)
        when = (lambda e: _value(e, iri) in after) if after else None
        body = command_attrs(name, None, status, info)
        if info is None:
            del body[f"{name}_info"]
        attrs = parse_attributes(body, self.ctx, now())
        stamp = now()
        for instances in attrs.values():
            for inst in instances:
                inst["observedAt"] = stamp
        items = [(device.entity_id, attrs, None)]
        (result,) = await self.broker.measure(device.tenant, items, when)
        if isinstance(result, Exception):
            log.warning("status of %s of %s not written: %s", name, device.entity_id, result)

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            moment = time.time()
            for key, deadline in list(self.pending.items()):
                if deadline <= moment and self.pending.pop(key, None) is not None:
                    with contextlib.suppress(Exception):
                        await self._expired(*key)

    async def _expired(self, tenant: str, entity_id: str, name: str) -> None:
        """Expire a command unless it was answered meanwhile (another worker may have taken
        the answer)."""
        device = self.registry.by_entity(tenant, entity_id)
        if device is not None:
            self.metrics["commands.expired"] += 1
            await self._status(device, name, EXPIRED, None, after=(PENDING, DELIVERED))

    async def _recover(self) -> None:
        """Commands PENDING or DELIVERED when the gateway stopped expire on time after a
        restart too."""
        for device in self.registry.commanded():
            entity = await self.broker.store.get(device.tenant, device.entity_id)
            if entity is None:
                continue
            for name in device.commands:
                inst = _instance(entity, expand_name(f"{name}_status", self.ctx))
                if inst is not None and inst.get("value") in (PENDING, DELIVERED):
                    since = to_micros(inst["modifiedAt"]) / 1e6
                    self.pending[(device.tenant, device.entity_id, name)] = since + self.timeout


def _instance(entity: dict[str, Any], iri: str) -> dict[str, Any] | None:
    for inst in entity["attrs"].get(iri, ()):
        if "datasetId" not in inst:
            return inst
    return None


def _value(entity: dict[str, Any], iri: str) -> Any:
    inst = _instance(entity, iri)
    return inst.get("value") if inst is not None else None


def _written(change: ChangeRecord, iri: str) -> dict[str, Any] | None:
    """The command attribute's new instance if this change wrote it (an attribute that did not
    exist before is being created, not commanded)."""
    assert change.before is not None and change.after is not None
    after = _instance(change.after, iri)
    before = _instance(change.before, iri)
    if after is None or (change.attrs is not None and iri not in change.attrs):
        return None
    if before is None:
        return None
    if change.attrs is None and before.get("modifiedAt") == after.get("modifiedAt"):
        return None
    return after
