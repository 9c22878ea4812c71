"""The live stream: changes as server-sent events, filtered like an entity query (citytwin API).

Each event carries an NGSI-LD Notification body (the entities of one or more changes) and the
sequence number of its last change as its id, so a client that reconnects with Last-Event-ID gets
every change it missed, as long as the change log still holds it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson

from citytwin.model.context import Context
from citytwin.model.entity import Entity
from citytwin.model.query import All, Node, Term
from citytwin.model.render import View, render_entity
from citytwin.model.subscription import now
from citytwin.notify.match import geo_matches
from citytwin.store.base import ChangeRecord, Query, Store

HEARTBEAT = 15.0  # seconds between comments that keep proxies from closing an idle stream
CHUNK = 500  # changes read from the log at a time
POLL = 0.2  # seconds between looks for changes committed by other worker processes


class Feed:
    """Wakes every stream when the store commits (the notifier's watch calls `notify`): this
    process's commits at once; other workers' too where the store's watch hears them
    (PostgreSQL), else within POLL."""

    def __init__(self) -> None:
        self.listeners: set[asyncio.Event] = set()

    def notify(self) -> None:
        for event in self.listeners:
            event.set()

    async def poll(self, store: Store) -> None:
        if store.watches_every_process:
            return
        last = await store.last_change()
        while True:
            await asyncio.sleep(POLL)
            if self.listeners:
                newest = await store.last_change()
                if newest != last:
                    last = newest
                    self.notify()


async def events(
    store: Store,
    feed: Feed,
    tenant: str,
    query: Query,
    ctx: Context,
    view: View,
    after: int | None,
) -> AsyncIterator[bytes]:
    """The stream of one client: changes after `after` (or from now) that match the query.

    The matching changes of each read of the log (up to CHUNK) go out as one Notification, its
    id the sequence number of the last: a busy twin sends a few large events a second rather
    than thousands of small ones, and a resumed stream loses nothing.
    """
    seq = after if after is not None else await store.last_change()
    stream_id = f"urn:ngsi-ld:Subscription:stream:{uuid.uuid4()}"
    wake = asyncio.Event()
    feed.listeners.add(wake)
    try:
        yield b": citytwin live stream\n\n"
        while True:
            changes = await store.changes_since(seq, CHUNK, before=False)
            data, last = [], seq
            for change in changes:
                entity = _matching(store, tenant, query, change)
                if entity is not None:
                    data.append(_data(change, entity, ctx, view))
                    last = change.seq
            if changes:
                seq = changes[-1].seq
            if data:
                yield _event(last, data, stream_id)
            if len(changes) == CHUNK:  # more are waiting: read on, letting others run between
                await asyncio.sleep(0)
                continue
            try:
                await asyncio.wait_for(wake.wait(), HEARTBEAT)
            except TimeoutError:
                yield b": keep-alive\n\n"
            wake.clear()
    finally:
        feed.listeners.discard(wake)


def _matching(store: Store, tenant: str, query: Query, change: ChangeRecord) -> Entity | None:
    entity = change.after or change.before
    if change.tenant != tenant or entity is None:
        return None
    if query.ids is not None and entity["id"] not in query.ids:
        return None
    if query.attrs is not None and not query.attrs & set(entity.get("attrs", {})):
        return None
    if query.geo is not None and not geo_matches(query.geo, entity):
        return None
    if query.types is not None and not _has_types(query.types, set(entity["type"])):
        return None
    if query.id_pattern is not None and not store.entity_matches(tenant, entity, query):
        return None
    if query.q is not None or query.scope_q is not None:
        if change.after is None or not store.entity_matches(tenant, entity, query):
            return None
    return entity


def _has_types(node: Node, types: set[str]) -> bool:
    """A type expression (, | ; and brackets) against an entity's types."""
    if isinstance(node, Term):
        return node.value in types
    results = (_has_types(part, types) for part in node.parts)
    return all(results) if isinstance(node, All) else any(results)


def _data(change: ChangeRecord, entity: Entity, ctx: Context, view: View) -> dict[str, Any]:
    if change.after is None:
        types = [ctx.compact(t) for t in entity["type"]]
        return {"id": entity["id"], "type": types, "deletedAt": change.at}
    return render_entity(entity, ctx, view)


def _event(seq: int, data: list[dict[str, Any]], stream_id: str) -> bytes:
    body = {
        "id": f"urn:ngsi-ld:Notification:{seq}",
        "type": "Notification",
        "subscriptionId": stream_id,
        "notifiedAt": now(),
        "data": data,
    }
    return b"id: %d\nevent: notification\ndata: %s\n\n" % (seq, orjson.dumps(body))
