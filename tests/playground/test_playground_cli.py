"""`mlpbp playground` as a command: its flags, its refusals, and a real server process."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import urllib.request

import pytest

from helpers import PYTHON, subprocess_env

pytest.importorskip("starlette")


def test_help_lists_the_flags(runner):
    from mlpbp.cli import app

    result = runner.invoke(app, ["playground", "--help"])
    assert result.exit_code == 0
    for flag in ("--port", "--host", "--open", "--max-sessions", "--idle-timeout"):
        assert flag in result.output


def test_a_port_in_use_is_one_line(runner):
    from mlpbp.cli import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["playground", "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(app, ["playground", "--port", "70000"])
    assert result.exit_code == 2 and "70000" in result.stderr


def start(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [PYTHON, "-m", "mlpbp", "playground", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    assert match, line
    return proc, match.group(1)


def test_serves_on_127_0_0_1_and_stops_on_ctrl_c():
    proc, port = start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:
            assert b"mlpbp playground" in r.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/app.js", timeout=30) as r:
            assert r.status == 200
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/session/x/config.yaml", timeout=30)
        assert e.value.code == 404 and "no session 'x'" in json.loads(e.value.read())["error"]
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    # 130: stopped by Ctrl-C, as every mlpbp command is (the server shuts down first)
    assert proc.returncode == 130 and "Traceback" not in stderr and "warning" not in stderr, stderr


def test_another_host_warns_that_the_network_can_use_it():
    proc, port = start("--host", "0.0.0.0")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert "warning: listening on 0.0.0.0: anyone who can reach this machine" in " ".join(stderr.split())
