"""The notifier: tails the change log from a persisted cursor, matches subscriptions, delivers.

Woken by the store after every commit. The cursor only moves past a change once every
notification it caused has been delivered or has used up its retries, so a restart between a
write and its delivery delivers it then (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from citytwin.contexts import ContextResolver
from citytwin.model.subscription import now
from citytwin.notify.deliver import BACKOFF, Deliverer, Delivery, http_request
from citytwin.notify.match import Compiled, compile_subscription, fired, reasons
from citytwin.notify.payload import entity_data, notification
from citytwin.store.base import ChangeRecord, Store

log = logging.getLogger("citytwin.notify")
CURSOR = "notifier"
STATUS_FLUSH = 0.5  # seconds between writes of subscription status fields


class Notifier:
    def __init__(self, store: Store, contexts: ContextResolver) -> None:
        self.store = store
        self.contexts = contexts
        self.subs: dict[tuple[str, str], Compiled] = {}
        self.deliverer = Deliverer(self._report)
        self.wake = asyncio.Event()
        self.seq = 0
        self.pending: dict[int, int] = {}  # change seq -> deliveries not finished
        self.saved = 0
        self.dirty: dict[tuple[str, str], dict[str, Any]] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        saved = await self.store.cursor(CURSOR)
        self.seq = self.saved = saved if saved is not None else await self.store.last_change()
        await self.reload()
        loop = asyncio.get_running_loop()
        self.store.watch(lambda: loop.call_soon_threadsafe(self.wake.set))
        self.tasks = [asyncio.create_task(self._run()), asyncio.create_task(self._flush_loop())]
        self.wake.set()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.deliverer.close()
        await self._flush()

    async def reload(self) -> None:
        """Read every subscription anew (after any subscription write)."""
        subs = {}
        for tenant, doc in await self.store.subscriptions():
            ctx = await self._context(doc)
            subs[(tenant, doc["id"])] = compile_subscription(tenant, doc, ctx)
        self.subs = subs

    async def _context(self, doc: dict[str, Any]) -> Any:
        try:
            return await self.contexts.resolve(doc.get("jsonldContext"))
        except Exception:  # an unreachable context must not stop all notifications
            return self.contexts.core

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            try:
                await self._drain()
            except Exception:
                log.exception("notifier pass failed")
                await asyncio.sleep(1)

    async def _drain(self) -> None:
        while True:
            changes = await self.store.changes_since(self.seq, 500)
            if not changes:
                return
            for change in changes:
                self._dispatch(change)
                self.seq = change.seq

    def _dispatch(self, change: ChangeRecord) -> None:
        why = reasons(change)
        if not why:
            return
        at = now()
        for (tenant, _), sub in self.subs.items():
            reason = fired(sub, change, why, at) if tenant == change.tenant else None
            if reason is None:
                continue
            entity = change.after or change.before
            if not self.store.entity_matches(tenant, entity, sub.query()):  # type: ignore[arg-type]
                continue
            if not self._throttled(sub, at):
                self._send(sub, change, reason, at)

    def _throttled(self, sub: Compiled, at: str) -> bool:
        throttling = sub.doc.get("throttling")
        last = self.dirty.get((sub.tenant, sub.id), {}).get("lastNotification") or sub.doc[
            "notification"].get("lastNotification")  # fmt: skip
        if not throttling or not last:
            return False
        gap = datetime.fromisoformat(at) - datetime.fromisoformat(last)
        return gap.total_seconds() < throttling

    def _send(self, sub: Compiled, change: ChangeRecord, reason: str, at: str) -> None:
        before = change.before if change.attrs is None else _full_before(change)
        data = entity_data(sub, before, change.after, change.at)
        payload = notification(sub, [data], reason)
        params = sub.doc["notification"]
        body, headers = http_request(payload, params, sub.doc.get("jsonldContext"), sub.tenant)
        self.pending[change.seq] = self.pending.get(change.seq, 0) + 1
        self._status(sub, lastNotification=at)
        self.deliverer.submit(
            Delivery(params["endpoint"]["uri"], body, headers, change.seq, (sub.tenant, sub.id))
        )

    def _report(self, delivery: Delivery, ok: bool, why: str) -> None:
        sub = self.subs.get(delivery.key)
        at = now()
        if sub is not None:
            status = self.dirty.setdefault(delivery.key, {})
            if ok:
                status["timesSent"] = status.get("timesSent", 0) + 1
                status["lastSuccess"] = at
            else:
                status["timesFailed"] = status.get("timesFailed", 0) + 1
                status["lastFailure"] = at
        if ok or delivery.attempts > len(BACKOFF):
            self._finished(delivery.seq)

    def _finished(self, seq: int) -> None:
        left = self.pending.get(seq, 0) - 1
        if left > 0:
            self.pending[seq] = left
        else:
            self.pending.pop(seq, None)

    def _status(self, sub: Compiled, **fields: Any) -> None:
        self.dirty.setdefault((sub.tenant, sub.id), {}).update(fields)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_FLUSH)
            with contextlib.suppress(Exception):
                await self._flush()

    async def _flush(self) -> None:
        """Persist status fields and the cursor (below any change still being delivered)."""
        dirty, self.dirty = self.dirty, {}
        for key, fields in dirty.items():
            doc = await self.store.get_subscription(*key)
            if doc is None:
                continue
            params = doc["notification"]
            for name in ("timesSent", "timesFailed"):
                if name in fields:
                    params[name] = params.get(name, 0) + fields.pop(name)
            params.update(fields)
            await self.store.put_subscription(key[0], key[1], doc, create=False)
            if key in self.subs:
                self.subs[key].doc = doc
        safe = min(self.pending, default=self.seq + 1) - 1
        if safe > self.saved:
            await self.store.set_cursor(CURSOR, safe)
            self.saved = safe


def _full_before(change: ChangeRecord) -> dict[str, Any] | None:
    """A single-attribute change records only that attribute before: the rest is as after."""
    if change.before is None or change.after is None:
        return change.before
    attrs = {**change.after["attrs"], **change.before["attrs"]}
    for name in change.attrs or []:
        if name not in change.before["attrs"]:
            attrs.pop(name, None)
    return {**change.after, "attrs": attrs}
