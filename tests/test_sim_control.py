"""The control channel of `picharge run --sim`: every request line gets an answer line on a
connection that stays open, and the channel listens on loopback only unless allowed.

Driven through the real command line: a `picharge run --sim` process, and a raw TCP
connection writing what `picharge sim` never would.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hw_sim.control import MAX_LINE_BYTES
from tests.support.wait import until_sync

PICHARGE = [sys.executable, "-m", "controller.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(state_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*PICHARGE, "run", "--sim", "--state-dir", str(state_dir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def connect(port: int) -> socket.socket | None:
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        return None


@pytest.fixture(scope="module")
def control_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    process = start(tmp_path_factory.mktemp("state"), "--sim-control", f"127.0.0.1:{port}")
    try:

        def listening() -> bool:
            assert process.poll() is None, process.communicate()[1]
            sock = connect(port)
            if sock is None:
                return False
            sock.close()
            return True

        until_sync(listening, 45, what="the --sim controller to open its control port")
        yield port
    finally:
        stop(process)


class Channel:
    """One connection to the control port; ``ask`` writes raw bytes, reads one answer line."""

    def __init__(self, port: int) -> None:
        sock = connect(port)
        assert sock is not None
        self.sock = sock
        self.lines = sock.makefile("rb")

    def ask(self, raw: bytes) -> dict[str, Any]:
        self.sock.sendall(raw)
        line = self.lines.readline()
        assert line, "the control channel closed the connection"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        self.lines.close()
        self.sock.close()


MALFORMED = [
    pytest.param(b"not json\n", "not JSON", id="not-json"),
    pytest.param(b"\xff\xfe{}\n", "not JSON", id="not-utf8"),
    pytest.param(b"[1, 2]\n", "action", id="not-an-object"),
    pytest.param(b'{"action": "plug", "connector": [1]}\n', "bad request", id="list-connector"),
    pytest.param(b'{"action": "plug", "connector": 1e400}\n', "bad request", id="overflow"),
    pytest.param(b'{"action": "plug", "connector": NaN}\n', "bad request", id="nan"),
    pytest.param(b'{"action": "plug", "connector": 9}\n', "", id="no-such-connector"),
    pytest.param(b'{"action": "warp"}\n', "warp", id="unknown-action"),
    pytest.param(b"x" * (MAX_LINE_BYTES + 10) + b"\n", "longer than", id="too-long"),
    pytest.param(b"y" * (3 * MAX_LINE_BYTES) + b"\n", "longer than", id="far-too-long"),
]


@pytest.mark.parametrize(("raw", "error"), MALFORMED)
def test_a_malformed_request_gets_an_error_and_the_connection_stays(
    control_port: int, raw: bytes, error: str
) -> None:
    channel = Channel(control_port)
    try:
        answer = channel.ask(raw)
        assert answer["ok"] is False
        assert error in answer["error"]
        status = channel.ask(b'{"action": "status"}\n')  # the same connection, in step
        assert status["ok"] is True
        assert status["connectors"][0]["cp_state"] == "A"
    finally:
        channel.close()


def test_a_control_address_beyond_loopback_is_refused(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [
            *PICHARGE,
            "run",
            "--sim",
            "--state-dir",
            str(tmp_path),
            "--sim-control",
            f"0.0.0.0:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "--sim-control: 0.0.0.0" in result.stderr
    assert "--sim-control-allow-remote" in result.stderr
    assert "Traceback" not in result.stderr


def test_beyond_loopback_when_explicitly_allowed(tmp_path: Path) -> None:
    port = free_port()
    process = start(tmp_path, "--sim-control", f"0.0.0.0:{port}", "--sim-control-allow-remote")
    try:

        def answering() -> bool:
            assert process.poll() is None, process.communicate()[1]
            sock = connect(port)
            if sock is None:
                return False
            sock.close()
            return True

        until_sync(answering, 20, what="the control port on every address")
        channel = Channel(port)
        try:
            assert channel.ask(b'{"action": "status"}\n')["ok"] is True
        finally:
            channel.close()
    finally:
        stop(process)
