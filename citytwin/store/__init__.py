"""Persistence: the Store protocol and its backends."""

from __future__ import annotations

from citytwin.store.base import Change, MutateFn, Store


def open_store(url: str) -> Store:
    """A store for a URL or path: sqlite:///path, or a bare file path (the embedded default)."""
    from citytwin.store.sqlite import SqliteStore

    path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
    return SqliteStore(path)


__all__ = ["Change", "MutateFn", "Store", "open_store"]
