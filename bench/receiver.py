"""A notification receiver for benchmarks: counts notifications and their change-to-receipt
latency (receipt time minus the changed attribute's modifiedAt). GET /stats reports."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import orjson

latencies: list[float] = []
per_entity: dict[str, int] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["method"] == "POST":
        _count(orjson.loads(body), time.time())
        answer = b""
    else:
        answer = orjson.dumps({"latencies_ms": latencies, "per_entity": per_entity})
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": answer})


def _count(notification: dict[str, Any], received: float) -> None:
    for entity in notification.get("data", []):
        per_entity[entity["id"]] = per_entity.get(entity["id"], 0) + 1
        changed = entity.get("ts", {}).get("modifiedAt")
        if changed:
            at = datetime.fromisoformat(changed.replace("Z", "+00:00")).timestamp()
            latencies.append((received - at) * 1000)
