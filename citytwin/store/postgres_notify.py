"""Commits seen by every process, and leases, on PostgreSQL (issue 8).

Each store keeps one connection of its own, outside the pool: the link. It LISTENs on the
channel every write NOTIFYs after its commit (`_announce`), so the watchers run after the
commits of every process on the database, not only this one's. The NOTIFY goes in a transaction
of its own: in the write's, it would take PostgreSQL's lock that puts notifications in commit
order, held over the write's fsync, and writers would commit one at a time. A process has one
NOTIFY in flight at most; the commits made meanwhile share the next. And it holds the leases, as
session-level advisory locks: PostgreSQL releases them when the session ends, however the
process ends, as the kernel does SQLite's flocks.

When the link breaks (the database restarted, its backend was killed, or a ping fails), its
locks are gone with it, and another process may take a lease. The store then connects again by
itself, with backoff, takes back the leases it held, and calls the watchers once (commits may
have passed unheard). A lease it cannot take back, because another process holds it now, is
lost: it is dropped from the leases held, and a later `try_lease` competes for it afresh.

Holders learn of a loss by asking `holds(name)` from the loop they already run to wait for a
lease, every few seconds. A callback was the alternative; a check adds no entry point into the
holder's code at an arbitrary moment, costs a look at memory, and reads the same on SQLite,
where a flock is never lost. While the link is down a lease still counts as held, until the
link is back and finds it taken: a blip does not stop the holder's work (the gateway's would
stop its MQTT broker), and a holder cut off from the database can do none of that work anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

log = logging.getLogger("citytwin.store")
CHANNEL = "citytwin"  # every write NOTIFYs it after its commit
SEND = f"BEGIN; SET LOCAL synchronous_commit = off; NOTIFY {CHANNEL}; COMMIT"  # no fsync to wait
AGAIN = (0.025, 1.0)  # seconds before looking again at changes held behind a transaction still
# running: the first time, doubling up to the last while the same change stays held back
HELD_WARNING = 10.0  # seconds a change waits before the log says so
LEASES = 0x63746C65  # the advisory lock space of the leases: (LEASES, crc32 of the name)
TAKE = "SELECT pg_try_advisory_lock($1::int4, $2::int4)"
PING = 5.0  # seconds between checks that the link is alive (a half-open connection says nothing)
BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)  # seconds before each attempt to connect again
DOWN = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def lease_key(name: str) -> tuple[int, int]:
    """A lease's advisory lock, in the two-int4 form (apart from the one-int8 keys of the
    entities and the migrations)."""
    crc = zlib.crc32(name.encode())
    return LEASES, crc - (1 << 32) if crc >= 1 << 31 else crc


@dataclass
class _Held:
    first: int  # the first change held back
    since: float  # loop time
    looks: int = 0
    warned: bool = False


class NotifyMixin:
    """watch, try_lease, holds; `_listen` and `_unlisten` run from the store's open and close."""

    url: str
    pool: asyncpg.Pool
    _watchers: list[Callable[[], None]]
    _held: set[str]
    _busy: asyncio.Lock  # one statement at a time on the link
    _down: asyncio.Event  # the link reported its end
    _link: asyncpg.Connection | None = None  # None: closed, or connecting again
    _keeper: asyncio.Task[None] | None = None
    _sender: asyncio.Task[None] | None = None
    _unsent = False  # a commit since the NOTIFY in flight began
    _again: asyncio.TimerHandle | None = None
    _waiting: _Held | None = None  # the first change held back, while it is
    watches_every_process = True

    def watch(self, callback: Callable[[], None]) -> None:
        """Call back after each commit of any process on the database (and once after the link
        is back: commits may have passed unheard)."""
        self._watchers.append(callback)

    async def try_lease(self, name: str) -> bool:
        """Hold a named lease among the processes on this database until this store closes or
        its process exits (False: another holds it, or the link is down just now)."""
        async with self._busy:
            if name in self._held:
                return True
            if self._link is None:
                return False
            try:
                taken = bool(await self._link.fetchval(TAKE, *lease_key(name)))
            except DOWN:  # the keeper finds the link broken and connects again
                return False
            if taken:
                self._held.add(name)
            return taken

    async def holds(self, name: str) -> bool:
        """Whether this store still holds a lease it took (see the module's docstring)."""
        return name in self._held

    def _announce(self) -> None:
        """After a write's commit: wake the watchers of every store on the database."""
        self._unsent = True
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send())

    async def _send(self) -> None:
        while self._unsent:
            self._unsent = False
            try:
                await self.pool.execute(SEND)
            except Exception as exc:  # the readers' periodic look finds the change anyway
                log.debug("NOTIFY not sent: %s", exc)
                return

    def _held_back(self, seq: int | None) -> None:
        """Committed changes (the first: `seq`, None if not known) wait behind a transaction
        still running (postgres_log): look again shortly, as that transaction may end without
        a NOTIFY (a temporal edit, another database's write), less often the longer the same
        change waits; and say so in the log once it has waited HELD_WARNING."""
        now = asyncio.get_running_loop().time()
        held = self._waiting
        if seq is not None and (held is None or seq != held.first):
            held = self._waiting = _Held(seq, now)
        looks = 0
        if held is not None:
            looks = held.looks
            if not held.warned and now - held.since > HELD_WARNING:
                held.warned = True
                log.warning(
                    "change %d has waited %.0f s behind a transaction still running on the"
                    " database (see pg_stat_activity.backend_xid, pg_prepared_xacts):"
                    " notifications, streams and commands wait for it to end",
                    held.first,
                    now - held.since,
                )
        if self._again is None:
            delay = min(AGAIN[0] * 2 ** min(looks, 8), AGAIN[1])
            if held is not None:
                held.looks += 1
            self._again = asyncio.get_running_loop().call_later(delay, self._look_again)

    def _caught_up(self) -> None:
        """A read of the log found nothing held back."""
        self._waiting = None

    def _look_again(self) -> None:
        self._again = None
        self._committed()

    async def _listen(self) -> None:
        self._held, self._busy, self._down = set(), asyncio.Lock(), asyncio.Event()
        self._link = await self._connect()
        self._keeper = asyncio.create_task(self._keep())

    async def _unlisten(self) -> None:
        if self._again is not None:
            self._again.cancel()
            self._again = None
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await self._sender
            self._sender = None
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        link, self._link, self._held = self._link, None, set()
        if link is not None:
            try:
                await link.close(timeout=PING)  # its leases are free once this returns
            except DOWN:
                link.terminate()

    def _committed(self) -> None:
        for callback in self._watchers:
            callback()

    async def _connect(self) -> asyncpg.Connection:
        """A new link, listening, and holding again what the last one held (the leases it
        cannot take back are dropped)."""
        link = await asyncpg.connect(self.url)
        try:
            await link.add_listener(CHANNEL, self._heard)
            kept = {name for name in self._held if await link.fetchval(TAKE, *lease_key(name))}
        except BaseException:
            link.terminate()
            raise
        for name in sorted(self._held - kept):
            log.warning("lease %r lost: another process took it while the link was down", name)
        self._held = kept
        self._down.clear()
        link.add_termination_listener(self._ended)
        return link

    async def _keep(self) -> None:
        """Watch the link; when it breaks, connect again, with backoff, then wake the watchers."""
        while True:
            await self._until_down()
            async with self._busy:
                link, self._link = self._link, None
            if link is not None:
                link.terminate()
            log.warning("database link for leases and notifications broken: connecting again")
            self._link = await self._reconnect()
            self._committed()

    async def _until_down(self) -> None:
        """Return once the link is found broken: its end was reported, or a ping failed."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._down.wait(), PING)
                return
            try:
                async with self._busy:
                    assert self._link is not None
                    await self._link.fetchval("SELECT 1", timeout=PING)
            except DOWN:
                return

    async def _reconnect(self) -> asyncpg.Connection:
        attempt = 0
        while True:
            await asyncio.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
            try:
                return await self._connect()
            except DOWN as exc:
                attempt += 1
                log.debug("database link: attempt %d failed: %s", attempt, exc)

    def _ended(self, link: asyncpg.Connection) -> None:
        if link is self._link:
            self._down.set()

    def _heard(self, link: asyncpg.Connection, pid: int, channel: str, payload: object) -> None:
        self._committed()
