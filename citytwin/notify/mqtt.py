"""Notifications over MQTT (GS CIM 009 5.8.6): mqtt://[user[:password]@]host[:port]/topic.

QoS and protocol version come from the endpoint's notifierInfo (MQTT-QoS 0/1/2, MQTT-Version
mqtt3.1.1 or mqtt5.0). The message is {"metadata": headers, "body": notification}.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    topic: str
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def parse(cls, uri: str) -> Target:
        parts = urlsplit(uri)
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or (8883 if tls else 1883),
            topic=unquote(parts.path.lstrip("/")) or "notifications",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )


class MqttLink:
    """One connection per endpoint, opened on first use and again after a failure."""

    def __init__(self, uri: str, info: dict[str, str]) -> None:
        self.target = Target.parse(uri)
        self.qos = int(info.get("MQTT-QoS", "0")) if info.get("MQTT-QoS", "0") in "012" else 0
        self.v5 = info.get("MQTT-Version") == "mqtt5.0"
        self.client: Any = None  # an aiomqtt.Client once connected
        self.lock = asyncio.Lock()  # several delivery workers share one link

    async def publish(self, payload: dict[str, Any], headers: dict[str, str]) -> tuple[bool, str]:
        import aiomqtt  # only twins with MQTT endpoints load it

        message = orjson.dumps({"metadata": headers, "body": payload})
        try:
            client = await self._connected()
            await client.publish(self.target.topic, message, qos=self.qos)
        except (aiomqtt.MqttError, OSError) as exc:
            await self.close()
            return False, f"MQTT: {exc}"
        return True, ""

    async def _connected(self) -> Any:
        async with self.lock:
            return await self._connect()

    async def _connect(self) -> Any:
        import aiomqtt

        if self.client is None:
            target = self.target
            version = aiomqtt.ProtocolVersion
            client = aiomqtt.Client(
                target.host,
                target.port,
                username=target.username,
                password=target.password,
                protocol=version.V5 if self.v5 else version.V311,
                tls_context=ssl.create_default_context() if target.tls else None,
                timeout=5,
            )
            await client.__aenter__()
            self.client = client
        return self.client

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            import aiomqtt

            try:
                await client.__aexit__(None, None, None)
            except (aiomqtt.MqttError, OSError):
                pass
