"""One frozen Settings, built from CLI flags and CITYTWIN_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

from citytwin.store import is_postgres


@dataclass(frozen=True)
class Settings:
    database: str = "citytwin.db"
    read_replica: str = ""  # a PostgreSQL standby the API's reads go to (postgresql://...)
    host: str = "127.0.0.1"
    port: int = 1026
    workers: int = 1
    public_url: str = ""
    max_body_bytes: int = 1024 * 1024
    max_json_depth: int = 32
    context_timeout: float = 2.0
    max_limit: int = 1000
    default_limit: int = 20
    temporal_limit: int = 10_000  # instances a series in one temporal response (6.3.10)
    history_days: float = 0.0  # drop history older than this many days; 0 keeps it all
    mqtt: str = "embedded"  # the device gateway's MQTT broker: embedded, off, or mqtt://host:port
    mqtt_host: str = "127.0.0.1"  # where the embedded broker listens
    mqtt_port: int = 1883
    command_timeout: float = 30.0  # seconds a device has to answer a command (then EXPIRED)
    gateway_queue: int = 20_000  # readings waiting to be committed before devices are held back
    assets: str = ""  # the map's npm packages (default: web/node_modules of the checkout)

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then CITYTWIN_<FIELD> variables, then explicit overrides (flags)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        defaults = cls()
        for f in fields(cls):
            name = f"CITYTWIN_{f.name.upper()}"
            raw = env.get(name)
            if raw is not None:
                kind = type(getattr(defaults, f.name))
                try:
                    values[f.name] = kind(raw)
                except ValueError:
                    raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = replace(cls(), **values)
        if settings.read_replica and not (
            is_postgres(settings.database) and is_postgres(settings.read_replica)
        ):
            raise ValueError("a read replica needs a PostgreSQL database and a postgresql:// URL")
        if settings.mqtt not in ("embedded", "off") and not settings.mqtt.startswith("mqtt://"):
            raise ValueError(f"mqtt={settings.mqtt!r}: give mqtt://host:port, embedded or off")
        return settings
