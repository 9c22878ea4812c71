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
from pathlib import Path

from bench.harness import free_port

BIN = Path(os.environ.get("CITYTWIN_PG_BIN", "/usr/lib/postgresql/15/bin"))
POSTGIS = Path("/usr/share/postgresql/15/extension/postgis.control")


def installed() -> bool:
    return (BIN / "initdb").exists() and POSTGIS.exists()


@contextlib.contextmanager
def postgres(durable: bool = False) -> Iterator[str]:
    """Start a cluster and yield its URL (database `citytwin`, user `citytwin`, trusted on
    loopback). `durable=False` turns fsync off: tests need speed, not crash safety."""
    if not installed():
        raise RuntimeError(
            "PostgreSQL 15 with PostGIS is not installed"
            " (apt-get install postgresql-15 postgresql-15-postgis-3; ./run test does it)"
        )
    with tempfile.TemporaryDirectory(prefix="citytwin-pg-") as tmp:
        as_user = _as_postgres(Path(tmp))
        data, port = Path(tmp) / "data", free_port()
        _run([*as_user, BIN / "initdb", "-D", data, "-A", "trust", "-U", "citytwin", "-E", "UTF8",
              "--no-sync", "--no-instructions"])  # fmt: skip
        options = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        _run([*as_user, BIN / "pg_ctl", "-D", data, "-l", Path(tmp) / "log", "-w", "-o", options,
              "start"])  # fmt: skip
        try:
            _run([*as_user, BIN / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U",
                  "citytwin", "citytwin"])  # fmt: skip
            yield f"postgresql://citytwin@127.0.0.1:{port}/citytwin"
        finally:
            _run([*as_user, BIN / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"])


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
