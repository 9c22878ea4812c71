"""Persistence: the Store protocol and its backends."""

from __future__ import annotations

import errno
import socket

from citytwin.store.base import Change, MutateFn, Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(url: str) -> bool:
    return url.startswith(POSTGRES_SCHEMES)


def outages() -> tuple[type[BaseException], ...]:
    """What the stores raise when their database cannot be reached for now (see `is_outage`)."""
    import asyncpg

    return (
        asyncpg.PostgresConnectionError,
        asyncpg.OperatorInterventionError,  # shutting down, starting up, crashed
        asyncpg.TooManyConnectionsError,
        asyncpg.InterfaceError,  # some: a connection closed under a request
        asyncpg.InternalClientError,  # a connection left half-way by its server's exit
        OSError,  # some: refused, unreachable, unknown host, timed out
    )


_UNREACHABLE = {errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH, errno.ENETUNREACH,
                errno.ETIMEDOUT, errno.ECONNABORTED, errno.EPIPE}  # fmt: skip


def is_outage(exc: BaseException) -> bool:
    import asyncpg

    if isinstance(exc, asyncpg.InterfaceError):
        return "closed" in str(exc)  # the others are mistakes in the code
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    if isinstance(exc, OSError):  # asyncio's "Multiple exceptions" of a name with two addresses
        return type(exc) is OSError and (
            exc.errno in _UNREACHABLE or str(exc).startswith("Multiple exceptions")
        )
    return isinstance(exc, outages())


def open_store(url: str, read_replica: str = "") -> Store:
    """A store for a URL or path: postgresql://... (the production store; its reads may go to
    a standby), sqlite:///path, or a bare file path (the embedded default)."""
    if is_postgres(url):
        from citytwin.store.postgres import PostgresStore

        return PostgresStore(url, read_replica=read_replica)
    from citytwin.store.sqlite import SqliteStore

    path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
    return SqliteStore(path)


__all__ = ["Change", "MutateFn", "Store", "is_outage", "is_postgres", "open_store", "outages"]
