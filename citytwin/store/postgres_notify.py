"""Commits seen by every process, and leases (issue 8): to be written."""

from __future__ import annotations

from collections.abc import Callable


class NotifyMixin:
    """watch, try_lease; `_listen` and `_unlisten` run from the store's open and close."""

    _watchers: list[Callable[[], None]]

    def watch(self, callback: Callable[[], None]) -> None:
        """Call back after each commit of this process."""
        self._watchers.append(callback)

    async def _listen(self) -> None:
        return None

    async def _unlisten(self) -> None:
        return None

    def _committed(self) -> None:
        for callback in self._watchers:
            callback()
