"""Memory of the controller with the web page enabled versus disabled (issue 15).

Runs ``picharge run --sim`` twice in a fresh state directory: once with ``--web ""`` (no
page: aiohttp is never imported) and once with the page on a free loopback port, a live
client connected and the page, its script and the status fetched, as a phone showing the
page would. For each, the child's RSS (``/proc/PID/status`` VmRSS) is sampled once a second
for ``--seconds`` after it settled, and the median reported with the peak (VmHWM).

    .venv/bin/python bench/web_memory.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kib(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"{field}:\s+(\d+) kB", text)
    assert match is not None, field
    return int(match.group(1))


async def _browse(port: int, seconds: float, pid: int) -> list[int]:
    """A phone showing the page: the files, the status, the live stream open."""
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/static/app.js", "/static/style.css", "/api/v1/status"):
            async with http.get(base + path) as response:
                await response.read()
        async with http.ws_connect(base + "/api/v1/live") as ws:
            samples = []
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                with contextlib.suppress(TimeoutError):  # a quiet second: sample anyway
                    await asyncio.wait_for(ws.receive(), 1.0)
                samples.append(_kib(pid, "VmRSS"))
            return samples


def measure(web: bool, seconds: float) -> tuple[float, float]:
    """(median RSS, peak RSS) in MiB of a controller with or without its page."""
    port, control = _free_port(), _free_port()
    with tempfile.TemporaryDirectory(prefix="picharge-webmem-") as state:
        command = [
            sys.executable, "-m", "controller.cli", "run", "--sim", "--state-dir", state,
            "--sim-control", f"127.0.0.1:{control}", "--web", f"127.0.0.1:{port}" if web else "",
        ]  # fmt: skip
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            time.sleep(6.0)  # started and settled (the simulator's meter polled a few times)
            if web:
                samples = asyncio.run(_browse(port, seconds, child.pid))
            else:
                samples = []
                for _ in range(int(seconds)):
                    samples.append(_kib(child.pid, "VmRSS"))
                    time.sleep(1.0)
            peak = _kib(child.pid, "VmHWM")
        finally:
            child.terminate()
            child.communicate(timeout=20)
    return statistics.median(samples) / 1024, peak / 1024


PI_IMPORTS = """
import re, sys
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024
import controller.app, controller.cli, controller.runner, controller.ocpp16.factory
import drivers.registry
assert "aiohttp" not in sys.modules, "something else imports aiohttp"
before = rss()
import controller.web.server
print(before, rss())
"""


def pi_import_cost() -> tuple[float, float]:
    """(RSS of a Pi's controller modules, what importing the page adds) in MiB. On a Pi
    nothing else loads aiohttp; under --sim pymodbus's simulator already has (see docs)."""
    out = subprocess.run(
        [sys.executable, "-c", PI_IMPORTS], capture_output=True, text=True, check=True
    ).stdout.split()
    before, after = float(out[0]), float(out[1])
    return before, after - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="sampling window (s)")
    args = parser.parse_args()
    off, off_peak = measure(False, args.seconds)
    on, on_peak = measure(True, args.seconds)
    print(f"controller RSS, page disabled: {off:.1f} MiB (peak {off_peak:.1f})")
    print(f"controller RSS, page enabled and open: {on:.1f} MiB (peak {on_peak:.1f})")
    print(f"the page costs {on - off:+.1f} MiB under --sim (the simulator already loads aiohttp)")
    base, cost = pi_import_cost()
    print(f"a Pi's controller modules: {base:.1f} MiB; importing the page adds {cost:+.1f} MiB")


if __name__ == "__main__":
    main()
