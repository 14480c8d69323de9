"""docs/deploy.md as written: its units' and cron line's commands run on a tiny run. The server
unit's command serves it; events are posted; the refresh command publishes (or refuses, exit 1)
and then has nothing to do; the cron line runs the same refresh."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from hstu_blair.run.versions import current_version

DOC = Path(__file__).resolve().parents[1] / "docs" / "deploy.md"
BINARY = "/srv/hstu-blair/venv/bin/hstu-blair"
RUN_DIR = "/srv/hstu-blair/run"
TOKEN = "deploy-test-token"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)


def _exec_starts() -> list[str]:
    return [m for block in _blocks("ini") for m in re.findall(r"^ExecStart=(.+)$", block, re.M)]


def _command(line: str, run: Path, port: int) -> list[str]:
    """A documented command with the run directory, the port and the binary of this test."""
    line = line.replace(RUN_DIR, str(run)).replace("--port 8000", f"--port {port}")
    words = shlex.split(line)
    assert words[0] == BINARY, f"{DOC}: expected commands to start with {BINARY}, got {line!r}"
    return [sys.executable, "-m", "hstu_blair.cli", *words[1:]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _call(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=10) as answer:
        return json.loads(answer.read())


def _wait_healthy(url: str, server: subprocess.Popen, seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "the documented serve command exited"
        try:
            return _call(f"{url}/healthz")
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no answer from {url}/healthz in {seconds} s")


def test_the_documented_units_and_cron_line(id_run, copy_run, tmp_path):
    serve_line, update_line = _exec_starts()
    cron = [line for block in _blocks("cron") for line in block.splitlines() if line.strip()]
    assert len(cron) == 1 and update_line in cron[0]  # the cron line runs the unit's refresh
    timer = [m for block in _blocks("ini") for m in re.findall(r"^OnCalendar=(.+)$", block, re.M)]
    if shutil.which("systemd-analyze"):
        check = subprocess.run(["systemd-analyze", "calendar", timer[0]], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    run, port = copy_run(id_run), _free_port()
    env = {**os.environ, "HSTU_BLAIR_API_KEY": TOKEN, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    server = subprocess.Popen(_command(serve_line, run, port), env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        assert _wait_healthy(url, server)["version"] == 0
        events = [
            {"user_id": "newcomer", "item_id": f"i{n}", "timestamp": 2_000_000_000 + n} for n in range(5)
        ]
        assert _call(f"{url}/events", {"events": events}) == {"stored": 5, "duplicates": 0}
        first = subprocess.run(_command(update_line, run, port), env=env, capture_output=True, text=True)
        cron_update = _command(cron[0].split(" ", 5)[5].split(" >>")[0], run, port)
        if first.returncode == 1:  # refused: one line, the served version unchanged, and again
            assert first.stderr.strip().splitlines()[-1].startswith("hstu-blair update: refused:")
            assert current_version(run) == 0
            assert subprocess.run(cron_update, env=env, capture_output=True).returncode == 1
            return
        assert first.returncode == 0, first.stderr
        assert current_version(run) == 1
        deadline = time.monotonic() + 60
        while _call(f"{url}/healthz")["version"] != 1:  # the server switched, no restart
            assert time.monotonic() < deadline, "the server did not switch to version 1"
            time.sleep(0.5)
        again = subprocess.run(cron_update, env=env, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == f"{run}: no new events or items since version 1: nothing to do"
    finally:
        server.terminate()
        server.wait(timeout=30)
