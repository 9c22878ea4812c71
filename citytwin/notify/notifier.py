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
from citytwin.model.join import fetch_links, flat_order, render_inline
from citytwin.model.render import View
from citytwin.model.subscription import STATUS, now, status
from citytwin.notify.deliver import BACKOFF, Deliverer, Delivery, headers_for
from citytwin.notify.match import Compiled, compile_subscription, fired, reasons, selection
from citytwin.notify.payload import notification, render_data, shown_entity, view_of
from citytwin.notify.stream import Feed
from citytwin.store.base import ChangeRecord, Query, Store

log = logging.getLogger("citytwin.notify")
CURSOR = "notifier"
STATUS_FLUSH = 0.5  # seconds between writes of subscription status fields
KEEP_CHANGES = 100_000  # the change log keeps this many delivered changes, for stream resumes
PRUNE_EVERY = 120  # flushes between prunes (about a minute)
LEASE_RETRY = 2.0  # seconds between attempts to take over the notifier lease
RELOAD_EVERY = 4  # flushes between looks for other workers' subscription writes
Key = tuple[str, str]


class Notifier:
    def __init__(self, store: Store, contexts: ContextResolver, feed: Feed | None = None) -> None:
        self.store = store
        self.contexts = contexts
        self.feed = feed or Feed()
        self.subs: dict[Key, Compiled] = {}
        self.by_type: dict[tuple[str, str], list[Compiled]] = {}  # (tenant, type IRI) -> subs
        self.by_id: dict[tuple[str, str], list[Compiled]] = {}  # (tenant, entity id) -> subs
        self.untyped: dict[str, list[Compiled]] = {}  # tenant -> subs without entities
        self.deliverer = Deliverer(self._report)
        self.wake = asyncio.Event()
        self.seq = 0
        self.pending: dict[int, int] = {}  # change seq -> deliveries not finished
        self.saved = 0
        self.status: dict[Key, dict[str, Any]] = {}  # delivery status, newer than the store's
        self.dirty: set[Key] = set()
        self.tasks: list[asyncio.Task[None]] = []  # the work, while this process holds the lease
        self.keeper: asyncio.Task[None] | None = None
        self.due: dict[Key, float] = {}  # next send of timeInterval subscriptions (loop time)
        self.version = -1  # of the subscriptions last read (store.subscriptions_version)

    async def start(self) -> None:
        """Run here if this process holds the notifier lease; else keep trying for it, so that
        with several workers exactly one notifies, and another takes over if it dies."""
        loop = asyncio.get_running_loop()
        self.store.watch(lambda: loop.call_soon_threadsafe(self._committed))
        if await self.store.try_lease(CURSOR):
            await self._begin()
        self.keeper = asyncio.create_task(self._keep_lease())

    async def _keep_lease(self) -> None:
        """Take the lease when its holder is gone; stop if it is lost (PostgreSQL: the store's
        connection broke and another process took the lease meanwhile)."""
        while True:
            await asyncio.sleep(LEASE_RETRY)
            try:
                await self._check_lease()
            except Exception:  # the database may be unreachable for a while
                log.exception("notifier lease check failed")

    async def _check_lease(self) -> None:
        if self.tasks and not await self.store.holds(CURSOR):
            log.warning("notifier lease lost: another process notifies now")
            await self._halt()
        if not self.tasks and await self.store.try_lease(CURSOR):
            await self._begin()

    async def _halt(self) -> None:
        """Stop the work, saving nothing more: the new holder goes on from what was saved."""
        tasks, self.tasks = self.tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.pending.clear()
        self.status.clear()
        self.dirty.clear()
        self.seq = self.saved

    async def _begin(self) -> None:
        saved = await self.store.cursor(CURSOR)
        if saved is None:  # first start: from now on, and remember it at once
            saved = await self.store.last_change()
            await self.store.set_cursor(CURSOR, saved)
        self.seq = self.saved = saved
        await self.reload()
        self.tasks += [
            asyncio.create_task(self._run()),
            asyncio.create_task(self._flush_loop()),
            asyncio.create_task(self._periodic_loop()),
        ]
        self.wake.set()

    async def stop(self) -> None:
        if self.keeper is not None:  # first: it may be starting or halting the work
            self.keeper.cancel()
            await asyncio.gather(self.keeper, return_exceptions=True)
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
        self.by_type, self.by_id, self.untyped = {}, {}, {}
        for (tenant, _), sub in subs.items():
            self._index(tenant, sub)
        self.status = {k: v for k, v in self.status.items() if k in subs}

    def _committed(self) -> None:
        self.wake.set()
        self.feed.notify()

    def delivery_status(self, tenant: str, sub_id: str) -> dict[str, Any]:
        """Status fields of deliveries not yet written to the store."""
        return dict(self.status.get((tenant, sub_id), {}))

    async def _context(self, doc: dict[str, Any]) -> Any:
        try:
            return await self.contexts.resolve(doc.get("_context"), hit=False)
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
            if not self.subs:  # nothing to match: no need to read the changes
                last = await self.store.last_change()
                if not await self._subscriptions_changed():
                    self.seq = max(self.seq, last)
                    return
                continue
            changes = await self.store.changes_since(self.seq, 500)
            await self._subscriptions_changed()
            if not changes:
                return
            for change in changes:
                await self._dispatch(change)
                self.seq = change.seq

    async def _subscriptions_changed(self) -> bool:
        """Read the subscriptions again if any process wrote one (True then). Asked after
        reading changes: a subscription committed before one of them is then seen."""
        version = await self.store.subscriptions_version()
        if version == self.version:
            return False
        self.version = version  # (first: a write meanwhile makes the next look read again)
        await self.reload()
        return True

    async def _dispatch(self, change: ChangeRecord) -> None:
        entity = change.after or change.before
        assert entity is not None
        candidates = list(self._candidates(change.tenant, entity))
        if not candidates:  # the commonest case: no subscription looks at this entity
            return
        why = reasons(change)
        if not why:
            return
        at = now()
        for sub in candidates:
            if "timeInterval" in sub.doc:
                continue  # periodic subscriptions notify on their clock, not on changes
            reason = fired(sub, change, why, at)
            if reason is None:
                continue
            needs_store = sub.q is not None or sub.scope_q is not None
            if needs_store and not self.store.entity_matches(change.tenant, entity, sub.query()):
                continue
            if not self._throttled(sub, at):
                await self._send(sub, change, reason)

    def _index(self, tenant: str, sub: Compiled) -> None:
        """Subscriptions are found by the entity id they name, else by the types they name."""
        selectors = sub.doc.get("entities") or []
        if not selectors:
            self.untyped.setdefault(tenant, []).append(sub)
        for selector in selectors:
            if "id" in selector:
                self.by_id.setdefault((tenant, selector["id"]), []).append(sub)
            else:
                for kind in selector["type"]:
                    self.by_type.setdefault((tenant, kind), []).append(sub)

    def _candidates(self, tenant: str, entity: dict[str, Any]) -> list[Compiled]:
        """The subscriptions a change of this entity may concern."""
        found = {id(s): s for s in self.by_id.get((tenant, entity["id"]), [])}
        for kind in entity.get("type", []):
            found.update((id(s), s) for s in self.by_type.get((tenant, kind), []))
        found.update((id(s), s) for s in self.untyped.get(tenant, []))
        return list(found.values())

    def _throttled(self, sub: Compiled, at: str) -> bool:
        throttling = sub.doc.get("throttling")
        last = self._current(sub).get("lastNotification")
        if not throttling or not last:
            return False
        gap = datetime.fromisoformat(at) - datetime.fromisoformat(last)
        return gap.total_seconds() < throttling

    async def _send(self, sub: Compiled, change: ChangeRecord, reason: str) -> None:
        before = change.before if change.attrs is None else _full_before(change)
        shown = shown_entity(sub, before, change.after, reason, change.at)
        view = view_of(sub)
        data = await self._data(sub, shown, before, view)
        self._deliver(sub, data, reason, change.seq)

    def _deliver(self, sub: Compiled, data: list[dict[str, Any]], reason: str, seq: int) -> None:
        params = sub.doc["notification"]
        context = sub.doc.get("_context")
        if params["endpoint"].get("accept") == "application/ld+json":
            data = [{**item, "@context": context} for item in data]
        headers = headers_for(params, context, sub.tenant)
        if seq:
            self.pending[seq] = self.pending.get(seq, 0) + 1
        key = (sub.tenant, sub.id)
        self._current(sub)["lastNotification"] = now()
        self.dirty.add(key)
        endpoint = params["endpoint"]
        info = {i["key"]: i["value"] for i in endpoint.get("notifierInfo", [])}
        payload = notification(sub, data, reason)
        self.deliverer.submit(Delivery(endpoint["uri"], payload, headers, seq, key, info))

    async def _periodic_loop(self) -> None:
        """5.8.6: a timeInterval subscription sends every matching entity, every interval."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.25)
            for key, sub in list(self.subs.items()):
                interval = sub.doc.get("timeInterval")
                if not interval or status(sub.doc) != "active":
                    self.due.pop(key, None)
                    continue
                due = self.due.setdefault(key, loop.time() + interval)
                if loop.time() >= due:
                    self.due[key] = loop.time() + interval
                    with contextlib.suppress(Exception):
                        await self._send_all(sub)

    async def _send_all(self, sub: Compiled) -> None:
        query = Query(types=selection(sub.doc), q=sub.q, scope_q=sub.scope_q, geo=sub.geo)
        entities = (await self.store.query(sub.tenant, query)).entities
        if not entities:
            return
        view = view_of(sub)
        data = [render_data(sub, e, None, view) for e in entities]
        self._deliver(sub, data, "timeInterval", seq=0)

    async def _data(
        self, sub: Compiled, shown: dict[str, Any], before: Any, view: View
    ) -> list[dict[str, Any]]:
        if view.join is None or "deletedAt" in shown:
            return [render_data(sub, shown, before, view)]

        async def fetch(ids: tuple[str, ...]) -> list[dict[str, Any]]:
            return (await self.store.query(sub.tenant, Query(ids=ids))).entities

        linked = await fetch_links(fetch, [shown], sub.ctx, view)
        if view.join == "inline":
            return [render_inline(shown, sub.ctx, view, linked, view.join_level)]
        order = flat_order([shown], sub.ctx, view, linked, view.join_level)
        return [render_data(sub, e, before if e is shown else None, v) for e, v in order]

    def _current(self, sub: Compiled) -> dict[str, Any]:
        """The subscription's delivery status as it stands now."""
        key = (sub.tenant, sub.id)
        if key not in self.status:
            stored = sub.doc["notification"]
            self.status[key] = {k: stored[k] for k in STATUS if k in stored}
        return self.status[key]

    def _report(self, delivery: Delivery, ok: bool, why: str) -> None:
        sub = self.subs.get(delivery.key)
        if sub is not None:
            status = self._current(sub)
            counter, stamp = ("timesSent", "lastSuccess") if ok else ("timesFailed", "lastFailure")
            status[counter] = status.get(counter, 0) + 1
            status[stamp] = now()
            self.dirty.add(delivery.key)
        if delivery.seq and (ok or delivery.attempts > len(BACKOFF)):
            left = self.pending.get(delivery.seq, 0) - 1
            if left > 0:
                self.pending[delivery.seq] = left
            else:
                self.pending.pop(delivery.seq, None)

    async def _flush_loop(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(STATUS_FLUSH)
            rounds += 1
            with contextlib.suppress(Exception):
                await self._flush()
                if rounds % RELOAD_EVERY == 0:  # subscriptions made through other workers,
                    await self._subscriptions_changed()  # when no change woke this one
                    self.wake.set()  # and a look at the log that no wake asked for: a commit
                    # whose announcement was lost (PostgreSQL NOTIFYs after the commit)
                if rounds % PRUNE_EVERY == 0:
                    await self.store.prune_changes(self.saved, KEEP_CHANGES)

    async def _flush(self) -> None:
        """Persist status fields (one write for all) and the cursor (below any change still
        being delivered)."""
        dirty, self.dirty = self.dirty, set()
        items = [(t, i, self.status[(t, i)]) for t, i in dirty if (t, i) in self.status]
        if items:
            await self.store.save_status(items)
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
