"""A throwaway PostgreSQL cluster with PostGIS (Debian's postgresql-15 and postgresql-15-postgis-3)
on a free loopback port, for tests and benchmarks: initdb in a temporary folder, pg_ctl start,
and everything removed afterwards. As root it runs as the `postgres` user (initdb refuses root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.harness import free_port

BIN = Path(os.environ.get("CITYTWIN_PG_BIN", "/usr/lib/postgresql/15/bin"))
POSTGIS = Path("/usr/share/postgresql/15/extension/postgis.control")


def installed() -> bool:
    return (BIN / "initdb").exists() and POSTGIS.exists()


@dataclass
class Cluster:
    """A running cluster: its data folder, port and server options; it can be stopped and
    started again (same data, same port), and can make a streaming-replication standby."""

    folder: Path
    port: int
    options: str
    as_user: list[str]

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def url(self) -> str:
        return f"postgresql://citytwin@127.0.0.1:{self.port}/citytwin"

    def start(self) -> None:
        _run([*self.as_user, BIN / "pg_ctl", "-D", self.data, "-l", self.folder / "log", "-w",
              "-o", f"-p {self.port} -k {self.folder} {self.options}", "start"])  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        _run([*self.as_user, BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop"])

    @contextlib.contextmanager
    def standby(self) -> Iterator[Cluster]:
        """A hot standby of this cluster (pg_basebackup, then streaming replication); its
        database `citytwin` answers reads only."""
        with _folder() as tmp:
            replica = Cluster(tmp, free_port(), self.options, _as_postgres(tmp))
            _run([*replica.as_user, BIN / "pg_basebackup", "-h", "127.0.0.1", "-p",
                  str(self.port), "-U", "citytwin", "-D", replica.data, "-R", "-c", "fast", "-X",
                  "stream"])  # fmt: skip
            replica.start()
            try:
                yield replica
            finally:
                replica.stop("immediate")


@contextlib.contextmanager
def cluster(durable: bool = False) -> Iterator[Cluster]:
    """Start a cluster (database `citytwin`, user `citytwin`, trusted on loopback, replication
    allowed). `durable=False` turns fsync off: tests need speed, not crash safety."""
    if not installed():
        raise RuntimeError(
            "PostgreSQL 15 with PostGIS is not installed"
            " (apt-get install postgresql-15 postgresql-15-postgis-3; ./run test does it)"
        )
    with _folder() as tmp:
        options = "-c listen_addresses=127.0.0.1"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        made = Cluster(tmp, free_port(), options, _as_postgres(tmp))
        _run([*made.as_user, BIN / "initdb", "-D", made.data, "-A", "trust", "-U", "citytwin",
              "-E", "UTF8", "--no-sync", "--no-instructions"])  # fmt: skip
        made.start()
        try:
            _run([*made.as_user, BIN / "createdb", "-h", "127.0.0.1", "-p", str(made.port), "-U",
                  "citytwin", "citytwin"])  # fmt: skip
            yield made
        finally:
            made.stop("immediate")


@contextlib.contextmanager
def postgres(durable: bool = False) -> Iterator[str]:
    """Start a cluster and yield its URL (see `cluster`)."""
    with cluster(durable) as made:
        yield made.url


@contextlib.contextmanager
def _folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="citytwin-pg-") as tmp:
        yield Path(tmp)


def _as_postgres(folder: Path) -> list[str]:
    if os.geteuid() != 0:
        return []
    user = pwd.getpwnam("postgres")
    os.chown(folder, user.pw_uid, user.pw_gid)
    return ["runuser", "-u", "postgres", "--"]


def _run(args: list[str | Path]) -> None:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if done.returncode != 0:
        program = next(Path(a).name for a in args if isinstance(a, Path))
        raise RuntimeError(f"{program} failed: {done.stderr.strip() or done.stdout.strip()}")
