"""The ceiling of the HTTP layer: a bare ASGI app answering every request with fixed JSON bytes."""

from __future__ import annotations

import os
from typing import Any

_SIZE = int(os.environ.get("BARE_BODY_BYTES", "1200"))
_BODY = b'{"id":"urn:x","pad":"' + b"x" * max(0, _SIZE - 22) + b'"}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # drain the request body, as a real handler must
        message = await receive()
        more = message.get("more_body", False)
    status = 204 if scope["method"] == "PATCH" else 200
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if status == 204 else _BODY})
