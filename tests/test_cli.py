"""The citytwin command as a user runs it: a real process, its exit status and its output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from citytwin.model.context import CORE_CONTEXT_URL

ROOT = Path(__file__).resolve().parent.parent
ERR = "https://uri.etsi.org/ngsi-ld/errors/"


def citytwin(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m citytwin ARGS` in cwd, with no CITYTWIN_* settings leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYTWIN_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "citytwin", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=15,
    )


def status_and_body(stdout: str) -> tuple[str, object]:
    """--get prints `STATUS CONTENT-TYPE` and then the (indented) JSON body."""
    first, _, rest = stdout.partition("\n")
    return first, orjson.loads(rest)


def test_get_lists_the_core_context(tmp_path: Path) -> None:
    run = citytwin(
        "--get", "/ngsi-ld/v1/jsonldContexts", "--db", str(tmp_path / "t.db"), cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    status, body = status_and_body(run.stdout)
    assert status.split()[0] == "200"
    assert isinstance(body, list)
    assert CORE_CONTEXT_URL in body


def test_get_of_an_unknown_entity_fails_with_problem_details(tmp_path: Path) -> None:
    entity = "urn:ngsi-ld:Sensor:nobody"
    run = citytwin(
        "--get", f"/ngsi-ld/v1/entities/{entity}", "--db", str(tmp_path / "t.db"), cwd=tmp_path
    )
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    status, body = status_and_body(run.stdout)
    assert status.split()[0] == "404"
    assert isinstance(body, dict)
    assert body["type"] == ERR + "ResourceNotFound"
    assert body["status"] == 404
    assert entity in body["detail"]


def test_serve_into_a_missing_folder_is_one_clean_error_line(tmp_path: Path) -> None:
    run = citytwin("serve", "/nonexistent-dir/x.db", cwd=tmp_path)
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert "/nonexistent-dir" in lines[0]
    assert not Path("/nonexistent-dir").exists()
