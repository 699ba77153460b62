"""Meter poll cycle time over Modbus RTU at 9600 baud 8N1, against the wire-time minimum.

Runs the unchanged driver (drivers.meter.ModbusMeter, pymodbus' async serial client) against
the simulated SDM630 (a pymodbus RTU server) through the pty link with line-rate emulation:
bytes arrive as on a 9600 baud 8N1 line, and a frame starting on an idle line waits for the
3.5-character silence. Polls run back to back with the model's request gap set to 0 (the
gap is a courtesy to a real Eastron meter, not a property of the line).

The wire-time minimum of one poll is, for every request of the plan: request and response
bytes x 10 bits / 9600 baud, plus one 3.5-character silence before each frame. The ratio of
measured to minimum shows what the software stack adds. CPU time is time.process_time()
per poll for the whole process (driver, pymodbus client and server, the relay threads that
pace bytes one by one), and time.thread_time() of the loop thread alone.

Usage: .venv/bin/python bench/meter_poll.py [--polls N] [--baudrate B]
(the venv has picharge installed in editable mode, so drivers and hw_sim import from here).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time

from drivers.meter import from_config
from drivers.register_map import ReadBlock
from drivers.seams import HardwareSeams
from hw_sim.meter_server import BITS_PER_BYTE_8N1, RTU_FRAME_GAP_CHARS, SimMeter

MODEL = "sdm630"
RTU_REQUEST_BYTES = 8  # unit, function, address (2), count (2), CRC (2)
RTU_RESPONSE_OVERHEAD = 5  # unit, function, byte count, CRC (2); plus 2 bytes per register


def wire_minimum_s(plan: tuple[ReadBlock, ...], baudrate: int) -> float:
    """Seconds one poll needs on the wire: every frame's bytes and the silence before each."""
    char_s = BITS_PER_BYTE_8N1 / baudrate
    total = 0.0
    for block in plan:
        frame_bytes = RTU_REQUEST_BYTES + RTU_RESPONSE_OVERHEAD + 2 * block.count
        total += frame_bytes * char_s + 2 * RTU_FRAME_GAP_CHARS * char_s
    return total


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def run(polls: int, baudrate: int) -> None:
    sim = SimMeter(MODEL, energy_wh=1_000_000.0)
    sim.set_measurements((230.0, 231.0, 229.0), (16.0, 16.0, 16.0), (3680.0, 3696.0, 3664.0))
    path = await sim.start_rtu(baudrate=baudrate)
    meter = from_config(
        {
            "model": MODEL,
            "transport": "rtu",
            "serial_port": path,
            "baudrate": baudrate,
            "min_request_gap_s": 0.0,
            "timeout_s": 2.0,
        },
        HardwareSeams(),
    )
    try:
        await meter.read()  # connect and warm up outside the measurement
        requests_before = sim.request_count
        cycle_s: list[float] = []
        cpu_start = time.process_time()
        loop_cpu_start = time.thread_time()
        for _ in range(polls):
            start = time.perf_counter()
            await meter.read()
            cycle_s.append(time.perf_counter() - start)
            sim.add_energy_wh(1.0)
        loop_cpu_s = time.thread_time() - loop_cpu_start
        cpu_s = time.process_time() - cpu_start
        requests = sim.request_count - requests_before
    finally:
        await meter.close()
        await sim.stop()

    plan = meter.register_map.plan()
    minimum = wire_minimum_s(plan, baudrate)
    median = statistics.median(cycle_s)
    p99 = percentile(cycle_s, 0.99)
    frames = ", ".join(
        f"{RTU_REQUEST_BYTES}+{RTU_RESPONSE_OVERHEAD + 2 * b.count} bytes" for b in plan
    )
    print(f"model                 {meter.register_map.display_name}, RTU {baudrate} 8N1 (pty link)")
    print(f"polls                 {polls} ({requests} requests, {len(plan)} per poll: {frames})")
    print(f"wire minimum          {minimum * 1000:8.2f} ms per poll")
    print(f"median cycle          {median * 1000:8.2f} ms   ratio {median / minimum:.3f}")
    print(f"p99 cycle             {p99 * 1000:8.2f} ms   ratio {p99 / minimum:.3f}")
    print(f"min / max cycle       {min(cycle_s) * 1000:8.2f} / {max(cycle_s) * 1000:.2f} ms")
    print(f"CPU per poll          {cpu_s / polls * 1000:8.2f} ms whole process (incl. simulator)")
    print(
        f"  of which loop       {loop_cpu_s / polls * 1000:8.2f} ms "
        "(driver, pymodbus client and server; the rest is the pty relay threads)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=100, help="polls to time (default 100)")
    parser.add_argument("--baudrate", type=int, default=9600, help="line rate (default 9600)")
    args = parser.parse_args()
    if args.polls < 1 or args.baudrate < 300:
        parser.error("--polls must be >= 1 and --baudrate >= 300")
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(args.polls, args.baudrate))


if __name__ == "__main__":
    main()
