"""The citytwin command: `serve` (the default) and a single-request smoke mode (`--get PATH`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import click
import httpx
import orjson

from citytwin.settings import Settings
from citytwin.store import is_postgres


class _DefaultServe(click.Group):
    """`citytwin [ARGS]` means `citytwin serve [ARGS]` unless ARGS names a command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["serve", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultServe, invoke_without_command=True)
@click.option("--get", "get_path", metavar="PATH", help="Answer one GET in-process and print it.")
@click.option(
    "--db",
    "database",
    default=None,
    help="SQLite file (default citytwin.db) or postgresql://user@host:port/database.",
)
@click.pass_context
def main(ctx: click.Context, get_path: str | None, database: str | None) -> None:
    """citytwin: a digital twin of a city behind an NGSI-LD API."""
    if get_path is not None:
        settings = _settings(database=database)
        sys.exit(asyncio.run(_get(settings, get_path)))
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve, db_path=database)


def _settings(**overrides: object) -> Settings:
    """Settings from the environment and flags; any mistake is one clear line, not a traceback."""
    try:
        settings = Settings.from_env(**overrides)
    except (TypeError, ValueError) as exc:
        raise click.ClickException(f"invalid setting: {exc}") from exc
    _check_database(settings.database)
    return settings


async def _get(settings: Settings, path: str) -> int:
    from citytwin.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://citytwin") as client:
            response = await client.get(path)
    body = response.content
    try:
        body = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)
    except orjson.JSONDecodeError:
        pass
    click.echo(f"{response.status_code} {response.headers.get('content-type', '')}")
    click.echo(body.decode())
    return 0 if response.status_code < 400 else 1


def _serve_options(fn: Callable[..., None]) -> Callable[..., None]:
    """The options of `serve`, which `demo` takes too."""
    options = [
        click.argument("db_path", required=False),
        click.option("--host", default=None, help="Address to listen on (default 127.0.0.1)."),
        click.option("--port", type=int, default=None, help="Port (default 1026)."),
        click.option("--workers", type=int, default=None, help="Worker processes (default 1)."),
        click.option(
            "--read-replica",
            default=None,
            metavar="URL",
            help="A PostgreSQL standby (postgresql://...) the API's reads go to; writes go to"
            " DB_PATH, the primary.",
        ),
        click.option(
            "--mqtt",
            default=None,
            metavar="URL",
            help="MQTT broker of the device gateway: mqtt://host:port, 'embedded' (the default:"
            " one is started on --mqtt-port) or 'off'.",
        ),
        click.option("--mqtt-port", type=int, default=None, help="Port of the embedded broker."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@main.command()
@_serve_options
def serve(db_path: str | None = None, **options: Any) -> None:
    """Run the broker on DB_PATH: a SQLite file (created if missing; default citytwin.db), or
    a PostgreSQL database with PostGIS, postgresql://user@host:port/database (migrated at
    start; several servers on several machines may share one)."""
    _run(_settings(database=db_path, **options))


@main.command()
@_serve_options
@click.option("--no-devices", is_flag=True, help="Load the city without its simulated devices.")
@click.option("--robot-speed", type=float, default=1.0, help="Robots walk this many times faster.")
def demo(
    db_path: str | None = None, no_devices: bool = False, robot_speed: float = 1.0, **options: Any
) -> None:
    """Serve a demo twin of Shanghai: science sites, air-quality stations and guide robots,
    whose simulated devices run in a process of their own and talk MQTT to the gateway."""
    settings = _settings(database=db_path, **options)
    if settings.mqtt == "off" and not no_devices:
        raise click.ClickException("the simulated devices need MQTT: drop --mqtt off")
    args = [sys.executable, "-m", "citytwin", "simulate", "--url", _local(settings)]
    args += ["--mqtt", _broker_url(settings)] if not no_devices else ["--load-only"]
    args += ["--speed", str(robot_speed)]
    simulator = subprocess.Popen(args)
    try:
        _run(settings)
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)


@main.command()
@click.option("--url", default="http://127.0.0.1:1026", help="The twin to load and drive.")
@click.option("--mqtt", "mqtt_url", default="mqtt://127.0.0.1:1883", help="Its MQTT broker.")
@click.option("--load-only", is_flag=True, help="Load the demo city, run no devices.")
@click.option("--speed", type=float, default=1.0, help="Robots walk this many times faster.")
def simulate(url: str, mqtt_url: str, load_only: bool, speed: float) -> None:
    """Load the demo city into a running twin and run its simulated devices."""
    from citytwin.demo.runner import simulate as run

    try:
        asyncio.run(run(url, None if load_only else mqtt_url, speed))
    except KeyboardInterrupt:
        pass


def _run(settings: Settings) -> None:
    import uvicorn

    for name, value in asdict(settings).items():
        os.environ[f"CITYTWIN_{name.upper()}"] = str(value)
    shown = _without_password(settings.database)
    click.echo(f"citytwin: NGSI-LD broker on {settings.base_url}/ngsi-ld/v1 ({shown})")
    click.echo(f"citytwin: device gateway on {settings.base_url}/iot, MQTT {_mqtt(settings)}")
    uvicorn.run(
        "citytwin.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="warning",
        access_log=False,
    )


def _without_password(url: str) -> str:
    """A database URL fit for a log: its password, if any, hidden."""
    parts = urllib.parse.urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _local(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
    return f"http://{host}:{settings.port}"


def _broker_url(settings: Settings) -> str:
    if settings.mqtt == "embedded":
        host = "127.0.0.1" if settings.mqtt_host in ("0.0.0.0", "") else settings.mqtt_host
        return f"mqtt://{host}:{settings.mqtt_port}"
    return settings.mqtt


def _mqtt(settings: Settings) -> str:
    if settings.mqtt == "embedded":
        return f"embedded broker on mqtt://{settings.mqtt_host}:{settings.mqtt_port}"
    return settings.mqtt


def _check_database(path: str) -> None:
    if is_postgres(path):
        return  # the store says what is wrong with it when it connects
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise click.ClickException(f"folder {folder} does not exist")
    if not os.path.exists(path):
        return
    if not os.path.isfile(path):
        raise click.ClickException(f"{path} is not a file")
    if not os.access(path, os.R_OK | os.W_OK):
        raise click.ClickException(f"{path} is not readable and writable")
    with open(path, "rb") as f:
        header = f.read(16)
    if header and header != b"SQLite format 3\x00":
        raise click.ClickException(f"{path} is not a SQLite database")
