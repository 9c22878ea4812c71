"""Persistence: the Store protocol and its backends."""

from __future__ import annotations

from citytwin.store.base import Change, MutateFn, Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(url: str) -> bool:
    return url.startswith(POSTGRES_SCHEMES)


def open_store(url: str) -> Store:
    """A store for a URL or path: postgresql://... (the production store), sqlite:///path, or
    a bare file path (the embedded default)."""
    if is_postgres(url):
        from citytwin.store.postgres import PostgresStore

        return PostgresStore(url)
    from citytwin.store.sqlite import SqliteStore

    path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
    return SqliteStore(path)


__all__ = ["Change", "MutateFn", "Store", "is_postgres", "open_store"]
