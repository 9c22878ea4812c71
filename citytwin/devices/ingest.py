"""Measurements into the twin: a bounded queue drained in batches, one transaction a batch.

Each reading waits in the queue until the batch holding it is committed; only then is it
acknowledged (`done`: the MQTT PUBACK of a QoS 1 message, the HTTP response), so an
acknowledged reading is never lost. While one batch commits the next one gathers, which is
what lets the gateway absorb thousands of readings a second with history on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from citytwin.broker import Broker
from citytwin.model.entity import Entity

log = logging.getLogger("citytwin.devices")
BATCH = 2000  # readings a transaction at most


class CommitFailed(Exception):
    """The store could not commit the batch: the reading was not written (send it again)."""


@dataclass(slots=True)
class Reading:
    tenant: str
    entity_id: str
    attrs: dict[str, list[Any]]  # parsed attributes (stored form)
    blank: Entity | None  # the twin to create if it is missing
    done: Callable[[Exception | None], None] | None = None


class Ingest:
    def __init__(self, broker: Broker, metrics: Counter[str], limit: int) -> None:
        self.broker = broker
        self.metrics = metrics
        self.limit = limit
        self.queue: deque[Reading] = deque()
        self.wake = asyncio.Event()
        self.full_listeners: list[Callable[[bool], None]] = []  # told when the queue fills/drains
        self.full = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            await self.flush()
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def offer(self, reading: Reading, bounded: bool = True) -> bool:
        """Queue a reading; False (and nothing queued) when the queue is full, unless not
        `bounded`: a reader that stops reading once told the queue is full (MQTT) may still
        hand over what it had already read."""
        if bounded and len(self.queue) >= self.limit:
            self.metrics["dropped.queue-full"] += 1
            return False
        self.queue.append(reading)
        self.wake.set()
        if len(self.queue) >= self.limit and not self.full:
            self._tell(True)
        return True

    def _tell(self, full: bool) -> None:
        self.full = full
        for listener in self.full_listeners:
            listener(full)

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        while self.queue:
            await asyncio.sleep(0.01)

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                n = min(len(self.queue), BATCH)
                batch = [self.queue.popleft() for _ in range(n)]
                if self.full and len(self.queue) < self.limit // 2:
                    self._tell(False)
                await self._apply(batch)

    async def _apply(self, batch: list[Reading]) -> None:
        by_tenant: dict[str, list[Reading]] = {}
        for reading in batch:
            by_tenant.setdefault(reading.tenant, []).append(reading)
        for tenant, readings in by_tenant.items():
            items = [(r.entity_id, r.attrs, r.blank) for r in readings]
            try:
                results: list[Any] = await self.broker.measure(tenant, items)
            except Exception as exc:  # the commit failed: nothing of the batch was written
                log.exception("a batch of %d readings failed", len(readings))
                self.metrics["failed"] += len(readings)
                for reading in readings:
                    _tell(reading, CommitFailed(str(exc)))
                continue
            for reading, result in zip(readings, results, strict=True):
                error = result if isinstance(result, Exception) else None
                self.metrics["applied" if error is None else "dropped.rejected"] += 1
                _tell(reading, error)


def _tell(reading: Reading, error: Exception | None) -> None:
    """Call a reading's `done`; its failure must not stop the gateway."""
    if reading.done is not None:
        try:
            reading.done(error)
        except Exception:
            log.exception("acknowledging a reading failed")
