"""What a history read asks for and gets back (shared by the temporal model and the stores)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TIME_PROPERTIES = ("observedAt", "createdAt", "modifiedAt", "deletedAt")


@dataclass(frozen=True)
class TimeWindow:
    """Which instances a temporal query looks at: `prop` in [start, end) (microseconds)."""

    prop: str = "observedAt"
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class HistoryQuery:
    """Instances of some entities' attributes (IRIs; None: all) in a window, oldest first.
    (Also what the other history reads select: entities, bounds, aggregates.)

    last_n keeps the newest n per series (attribute and datasetId); limit caps the instances
    read per series (one more is read to tell whether the cap cut anything).
    """

    window: TimeWindow = TimeWindow()
    attrs: frozenset[str] | None = None
    last_n: int | None = None
    limit: int | None = None
    datasets: frozenset[str | None] | None = None  # datasetIds (None: the default instance)


@dataclass
class HistoryRow:
    entity: str
    attr: str
    dataset: str | None
    iid: int
    observed: int | None
    created: int
    modified: int
    deleted: int | None
    body: dict[str, Any]
