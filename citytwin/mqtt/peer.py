"""One end of an MQTT connection: framing of what arrives, writing and closing (shared by the
client's link to a broker and the embedded broker's connections)."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from citytwin.mqtt.codec import MAX_PACKET, Framer, ProtocolError

log = logging.getLogger("citytwin.mqtt")


class Peer(asyncio.Protocol):
    def __init__(self, limit: int = MAX_PACKET) -> None:
        self.framer = Framer(limit)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        try:
            for kind, flags, body in self.framer.feed(data):
                self.packet(kind, flags, body)
        except ProtocolError as exc:
            log.info("MQTT peer %s broke the protocol: %s", self.name(), exc)
            self.close()

    def packet(self, kind: int, flags: int, body: bytes) -> None:
        raise NotImplementedError

    def name(self) -> str:
        return "(peer)"

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
