"""The writer's cache of series ids: only what a committed transaction holds is trusted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from citytwin.store import sqlite_history as history
from citytwin.store.sqlite import connect
from citytwin.store.sqlite_index import migrate


def writer(path: Path) -> history.WriterConnection:
    conn = connect(str(path), factory=history.WriterConnection)
    migrate(conn)
    assert isinstance(conn, history.WriterConnection)
    return conn


def series_rows(conn: sqlite3.Connection) -> dict[str, int]:
    return {key: sid for sid, key in conn.execute("SELECT sid, key FROM series")}


def test_rolled_back_series_are_not_remembered(tmp_path: Path) -> None:
    conn = writer(tmp_path / "twin.db")
    key = ("", "urn:ngsi-ld:S:1", "pm25", "")
    conn.execute("BEGIN IMMEDIATE")
    history.sids(conn, {key: True})
    conn.execute("ROLLBACK")
    conn.series.rolled_back()
    conn.execute("BEGIN IMMEDIATE")
    other = ("", "urn:ngsi-ld:S:2", "pm25", "")
    sid = history.sids(conn, {other: True, key: True})
    conn.execute("COMMIT")
    conn.series.committed()
    assert series_rows(conn) == {history._key(*k): v for k, v in sid.items()}  # made again
    conn.execute("BEGIN IMMEDIATE")
    assert history.sids(conn, {key: True}) == {key: sid[key]}
    conn.execute("COMMIT")


def test_cached_series_still_lose_their_numeric_flag(tmp_path: Path) -> None:
    """A series another writer made (or this one cached) gets a text value: it is looked up
    and marked not numeric, so aggregations stop reading its roll-ups."""
    path = tmp_path / "twin.db"
    first, second = writer(path), writer(path)
    key = ("", "urn:ngsi-ld:S:1", "state", "")
    for conn in (first, second):
        conn.execute("BEGIN IMMEDIATE")
        history.sids(conn, {key: True})
        conn.execute("COMMIT")
        conn.series.committed()
    assert first.execute("SELECT numeric FROM series").fetchall() == [(1,)]
    second.execute("BEGIN IMMEDIATE")
    history.sids(second, {key: False})
    second.execute("COMMIT")
    assert first.execute("SELECT numeric FROM series").fetchall() == [(0,)]
    assert len(series_rows(first)) == 1
