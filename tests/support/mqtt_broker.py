"""A real MQTT broker for tests: Debian's ``mosquitto`` on an ephemeral loopback port, with
a generated configuration (no system service), and a watcher client that records what the
charger publishes.

The broker keeps nothing on disk (``persistence false``): a restart loses every retained
message, as a broker that lost its database does, so a test can see the charger publish
its discovery and retained state again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.support.wait import until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """One mosquitto process; ``users`` (name: password) turns anonymous access off."""

    def __init__(
        self,
        directory: Path,
        users: dict[str, str] | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """``tls``: (certificate, key) PEM files: the listener speaks TLS only."""
        self.directory = directory
        self.tls = tls
        self.port = free_port()
        self.users = users or {}
        self.log_path = directory / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def url(self, user: str | None = None) -> str:
        if user is None:
            return f"mqtt://127.0.0.1:{self.port}"
        return f"mqtt://{user}:{self.users[user]}@127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        lines = [f"listener {self.port} 127.0.0.1", "persistence false"]
        if self.tls is not None:
            lines += [f"certfile {self.tls[0]}", f"keyfile {self.tls[1]}"]
        if os.geteuid() == 0:
            lines.append("user root")  # as root mosquitto would switch to 'mosquitto'
        if self.users:
            passwords = self.directory / "passwords"
            passwords.unlink(missing_ok=True)
            for name, password in self.users.items():
                subprocess.run(
                    [
                        "mosquitto_passwd",
                        "-b",
                        *([] if passwords.exists() else ["-c"]),
                        str(passwords),
                        name,
                        password,
                    ],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        config = self.directory / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self) -> None:
        config = self._write_config()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["mosquitto", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            assert self.process.poll() is None, self.log_path.read_text()
            assert time.monotonic() < deadline, "mosquitto did not open its port"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed: run deploy/system-packages.sh (make setup)")
    broker = Broker(tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


class Watcher:
    """A client of the broker that records every message under ``#``: ``last`` holds
    each topic's latest payload (retained or not), ``messages`` all of them in order."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.last: dict[str, str] = {}
        self.retained: dict[str, bool] = {}
        self.messages: list[tuple[str, str]] = []

    async def _receive(self) -> None:
        async for message in self.client.messages:
            payload = message.payload
            text = payload.decode(errors="replace") if isinstance(payload, bytes) else str(payload)
            topic = str(message.topic)
            self.last[topic] = text
            self.retained[topic] = message.retain
            self.messages.append((topic, text))

    def json(self, topic: str) -> Any:
        return json.loads(self.last[topic])

    async def value(self, topic: str, timeout_s: float = 10.0) -> str:
        await until(lambda: topic in self.last, timeout_s, what=f"a message on {topic}")
        return self.last[topic]

    async def becomes(self, topic: str, payload: str, timeout_s: float = 10.0) -> None:
        await until(
            lambda: self.last.get(topic) == payload,
            timeout_s,
            what=f"{topic} = {payload!r} (last {self.last.get(topic)!r})",
        )

    def clear(self) -> None:
        self.last.clear()
        self.retained.clear()
        self.messages.clear()


@contextlib.asynccontextmanager
async def watching(
    broker: Broker, topic: str = "#", user: str | None = None
) -> AsyncIterator[Watcher]:
    """A :class:`Watcher` subscribed to ``topic`` for the duration of the block."""
    password = None if user is None else broker.users[user]
    async with aiomqtt.Client("127.0.0.1", broker.port, username=user, password=password) as client:
        watcher = Watcher(client)
        await client.subscribe(topic)
        task = asyncio.create_task(watcher._receive())
        try:
            yield watcher
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task
