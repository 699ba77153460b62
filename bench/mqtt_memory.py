"""Memory MQTT adds to a running controller: ``picharge run --sim`` (standalone) without and
with ``[mqtt]``, against a mosquitto started here on loopback, during a simulated session.

Each run: start the process, wait for the sim control channel, plug, tap, charge, then read
VmRSS from /proc every second for ``--seconds`` and report the median and the peak (VmHWM).
With MQTT, the broker gets discovery and a state update about every second, as a Home
Assistant installation would. Needs Debian's ``mosquitto`` (deploy/system-packages.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CARD = "04A1B2C3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def sim(control: str, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", "sim", "--control", control, *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def measure(work: Path, mqtt_url: str | None, seconds: int) -> tuple[float, float]:
    """(median RSS, peak RSS) in MiB of one controller run."""
    work.mkdir(parents=True)
    config = work / "config.toml"
    text = f'[authorization]\ncards = ["{CARD}"]\n'
    if mqtt_url:
        text += f'[mqtt]\nurl = "{mqtt_url}"\n'
    config.write_text(text)
    control = f"127.0.0.1:{free_port()}"
    with (work / "controller.log").open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "controller.cli",
                "run",
                "--sim",
                "--config",
                str(config),
                "--state-dir",
                str(work / "state"),
                "--sim-control",
                control,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                sim(control, "status")
                break
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        sim(control, "plug")
        sim(control, "tap", CARD)
        sim(control, "charge")
        time.sleep(5)
        charging = json.loads(sim(control, "status"))["connectors"][0]["contactor_closed"]
        samples = []
        for _ in range(seconds):
            samples.append(status_kib(process.pid, "VmRSS") / 1024)
            time.sleep(1)
        peak = status_kib(process.pid, "VmHWM") / 1024
        print(
            f"  mqtt={'on ' if mqtt_url else 'off'} charging={charging} "
            f"RSS median {statistics.median(samples):.1f} MiB, peak {peak:.1f} MiB"
        )
        return statistics.median(samples), peak
    finally:
        process.terminate()
        process.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="sampling window per run")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each kind, alternated")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="picharge-mqtt-bench-") as tmp:
        root = Path(tmp)
        port = free_port()
        conf = root / "mosquitto.conf"
        lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            off, on = [], []
            for i in range(args.rounds):
                off.append(measure(root / f"off{i}", None, args.seconds))
                on.append(measure(root / f"on{i}", f"mqtt://127.0.0.1:{port}", args.seconds))
        finally:
            broker.terminate()
            broker.wait()
    median_off = statistics.median(m for m, _ in off)
    median_on = statistics.median(m for m, _ in on)
    print(
        f"RSS without MQTT {median_off:.1f} MiB, with MQTT {median_on:.1f} MiB: "
        f"MQTT adds {median_on - median_off:+.1f} MiB "
        f"(peaks {max(p for _, p in off):.1f} / {max(p for _, p in on):.1f} MiB)"
    )


if __name__ == "__main__":
    main()
