"""Running servers and load for benchmarks: subprocesses on loopback, wrk for HTTP load."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


def pct(values: list[float], p: int) -> float:
    """The p-th percentile."""
    return statistics.quantiles(values, n=100)[p - 1] if len(values) > 1 else values[0]


Latencies = list[float]  # milliseconds
LatencyRow = tuple[str, Latencies, Latencies, Latencies | None, str]  # name, HTTP, SQL, raw, target


def latency_table(title: str, rows: list[LatencyRow], width: int) -> None:
    """p50/p99 over HTTP beside the same read done directly (citytwin's SQL) and written by hand
    (`raw`, where measured); each ratio is the direct read's p50 over the HTTP p50."""
    head = ("HTTP p50", "HTTP p99", "SQL p50", "SQL p99", "ratio", "raw p50", "raw p99", "ratio")
    print(f"{title:<{width}}" + "".join(f"{h:>9}" for h in head) + "  target")
    for name, http, sql, raw, target in rows:
        cells = [pct(http, 50), pct(http, 99), pct(sql, 50), pct(sql, 99)]
        line = "".join(f"{f:>9.1f}" for f in cells) + f"{pct(sql, 50) / pct(http, 50):>9.2f}"
        if raw is None:
            line += f"{'-':>9}" * 3
        else:
            line += f"{pct(raw, 50):>9.1f}{pct(raw, 99):>9.1f}{pct(raw, 50) / pct(http, 50):>9.2f}"
        print(f"{name:<{width}}{line}  {target}")


def latency_legend(direct: str, raw: str | None) -> None:
    """What a latency table's columns mean: `direct` is what 'SQL' runs, `raw` what the raw
    column does (None: the table has none)."""
    print(f"(milliseconds; 'SQL' runs {direct} directly on the same store;"
          " ratio: its p50 over\n the HTTP p50)")  # fmt: skip
    if raw is not None:
        print(f"('raw' {raw} in one hand-written statement with asyncpg)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def process(args: list[str], ready_url: str, env: dict[str, str] | None = None) -> Iterator[int]:
    """Start a server process, wait until ready_url answers, stop it afterwards."""
    proc = subprocess.Popen(
        args, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(ready_url, timeout=1)
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{args[:4]} did not start")
        yield proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@contextlib.contextmanager
def citytwin(
    db: str, workers: int, env: dict[str, str] | None = None, cpus: set[int] | None = None
) -> Iterator[tuple[str, int]]:
    """A citytwin server on a free port (`cpus`: the cores it may run on, all if None)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    pin = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
    args = [*pin, sys.executable, "-m", "citytwin", "serve", db, "--port", str(port)]
    env = {"CITYTWIN_MAX_BODY_BYTES": str(16 * 1024 * 1024), "CITYTWIN_MQTT": "off", **(env or {})}
    with process(
        [*args, "--workers", str(workers)], url + "/ngsi-ld/v1/jsonldContexts", env
    ) as pid:
        yield url, pid


@contextlib.contextmanager
def bare(workers: int) -> Iterator[str]:
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "bench.bare:app", "--port", str(port),
            "--workers", str(workers), "--log-level", "warning", "--no-access-log"]  # fmt: skip
    with process(args, f"http://127.0.0.1:{port}/"):
        yield f"http://127.0.0.1:{port}"


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return total / 1024


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found += [int(child), *descendants(int(child))]
    return found


@dataclass
class Load:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0


def wrk(url: str, lua: str, connections: int, seconds: int) -> Load:
    """Closed-loop load with wrk (one thread: the other core is the server's)."""
    if shutil.which("wrk") is None:
        raise SystemExit("bench needs wrk (apt-get install wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", f.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(f.name)
    return Load(
        rate=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_latency(out, "50%"),
        p99_ms=_latency(out, "99%"),
        errors=_errors(out),
        requests=int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
    )


def _latency(out: str, pct: str) -> float:
    match = re.search(rf"{pct}\s+([\d.]+)(us|ms|s)", out)
    if match is None:
        return float("nan")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
    return float(match.group(1)) * scale


def _errors(out: str) -> int:
    codes = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    total = int(codes.group(1)) if codes else 0
    if socket_errors:
        total += sum(int(g) for g in socket_errors.groups())
    return total


@contextlib.contextmanager
def mosquitto() -> Iterator[int]:
    """A mosquitto on a free loopback port, set up to lose nothing for a slow subscriber:
    its defaults drop QoS 1 messages beyond 1000 queued for a client and hold at most 20 in
    flight to it (which caps a subscriber that acknowledges after its commit); and without
    TCP_NODELAY a small message can wait ~40 ms for the peer's delayed acknowledgement."""
    executable = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "mosquitto.conf"
        config.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 10000000\nmax_inflight_messages 10000\nset_tcp_nodelay true\n"
        )
        proc = subprocess.Popen([executable, "-c", str(config)], stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.05)
            else:
                raise RuntimeError("mosquitto did not start")
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=10)
