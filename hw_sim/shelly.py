"""A simulated Shelly Pro 3EM: its local HTTP API (Gen2 RPC) serving the house's readings.

The Pro 3EM answers ``GET /rpc/EM.GetStatus?id=0`` with one JSON object per reading:
``a_current``, ``a_voltage``, ``a_act_power``, ``a_aprt_power``, ``a_pf`` and the same for
phases b and c, ``n_current`` (null without the neutral CT), ``total_current``,
``total_act_power`` and ``total_aprt_power``. Currents are magnitudes; active power is
signed, negative on a phase that returns energy to the grid (PV). ``EMData.GetStatus?id=0``
gives the energy counters in Wh: ``total_act`` (imported) and ``total_act_ret`` (returned).
Field names follow Shelly's Gen2 API documentation (EM and EMData components); an unknown
method answers 404 as the device does. Authentication (digest) is not simulated.

It has the same measuring surface as :class:`~hw_sim.meter_server.SimMeter`
(``set_measurements``, ``add_energy_wh``, ``add_export_wh``, ``set_fault``), so the simulated
house drives either. Faults: ``"offline"`` (connections accepted, never answered: the
poller's timeout), ``"garbage"`` (200 with a body that is not JSON), ``"exception"`` (500).

Written on asyncio streams, not aiohttp: the simulator plays hardware and keeps the web
server library out (an import contract). Threading: one asyncio loop (the simulator's).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hw_sim.meter_server import MeterFault

Triple = tuple[float | None, float | None, float | None]
PHASES = ("a", "b", "c")


class SimShellyPro3EM:
    """A Shelly Pro 3EM on 127.0.0.1, answering the EM and EMData status calls."""

    def __init__(self) -> None:
        self.voltage_v: Triple = (0.0, 0.0, 0.0)
        self.current_a: Triple = (0.0, 0.0, 0.0)
        self.power_w: Triple = (0.0, 0.0, 0.0)
        self.frequency_hz = 50.0
        self.energy_wh = 0.0
        self.export_wh = 0.0
        self.fault: MeterFault | None = None
        self.request_count = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------- measurements

    def set_measurements(
        self, voltage_v: Triple, current_a: Triple, power_w: Triple, frequency_hz: float = 50.0
    ) -> None:
        """What the device measures now (L1, L2, L3 as its phases a, b, c)."""
        self.voltage_v, self.current_a, self.power_w = voltage_v, current_a, power_w
        self.frequency_hz = frequency_hz

    def add_energy_wh(self, wh: float) -> None:
        """Count ``wh`` more imported energy (>= 0)."""
        self.energy_wh += _energy(wh)

    def add_export_wh(self, wh: float) -> None:
        """Count ``wh`` more returned energy (>= 0)."""
        self.export_wh += _energy(wh)

    def set_fault(self, fault: MeterFault | None) -> None:
        """Inject a fault (see the module docstring) or clear it with None."""
        if fault not in (None, "offline", "garbage", "exception"):
            raise ValueError(f"unknown meter fault {fault!r}")
        self.fault = fault

    def em_status(self, em_id: int = 0) -> dict[str, Any]:
        """The body of ``EM.GetStatus``."""
        status: dict[str, Any] = {"id": em_id}
        for i, phase in enumerate(PHASES):
            current, voltage, power = self.current_a[i], self.voltage_v[i], self.power_w[i]
            apparent = None if current is None or voltage is None else abs(current) * voltage
            status[f"{phase}_current"] = _round(current, 3)
            status[f"{phase}_voltage"] = _round(voltage, 1)
            status[f"{phase}_act_power"] = _round(power, 1)
            status[f"{phase}_aprt_power"] = _round(apparent, 1)
            status[f"{phase}_pf"] = (
                _round(abs(power) / apparent, 2) if power is not None and apparent else 0.0
            )
            status[f"{phase}_freq"] = self.frequency_hz
        status["n_current"] = None
        status["total_current"] = _round(math.fsum(abs(c or 0.0) for c in self.current_a), 3)
        status["total_act_power"] = _round(math.fsum(p or 0.0 for p in self.power_w), 3)
        status["total_aprt_power"] = _round(
            math.fsum(status[f"{p}_aprt_power"] or 0.0 for p in PHASES), 3
        )
        status["user_calibrated_phase"] = []
        return status

    def emdata_status(self, em_id: int = 0) -> dict[str, Any]:
        """The body of ``EMData.GetStatus`` (totals only)."""
        return {
            "id": em_id,
            "total_act": round(self.energy_wh, 2),
            "total_act_ret": round(self.export_wh, 2),
        }

    # ------------------------------------------------------------------ server

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen for HTTP; port 0 picks a free one. Returns (host, port) actually bound."""
        if self._server is not None:
            raise RuntimeError("the simulated Shelly is already running")
        self._server = await asyncio.start_server(self._serve, host, port)
        bound = self._server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    async def stop(self) -> None:
        """Close the listener and every open connection; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if server is not None:
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:  # HTTP/1.1 keep-alive: one request after the other
                request_line = await reader.readline()
                if not request_line:
                    return
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # headers: nothing here depends on them
                self.request_count += 1
                if self.fault == "offline":
                    await asyncio.Event().wait()  # never answer; the client times out
                status, body = self._answer(request_line.decode("latin-1"))
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode("latin-1")
                    + body
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._handlers.discard(task)
            writer.close()

    def _answer(self, request_line: str) -> tuple[str, bytes]:
        parts = request_line.split()
        if len(parts) < 2 or parts[0] != "GET":
            return "405 Method Not Allowed", b'{"code": 405}'
        url = urlsplit(parts[1])
        em_id = int((parse_qs(url.query).get("id") or ["0"])[0] or 0)
        if self.fault == "exception":
            return "500 Internal Server Error", b'{"code": -114, "message": "device failure"}'
        if self.fault == "garbage":
            return "200 OK", b"\x00\xff not json"
        if url.path == "/rpc/EM.GetStatus" and em_id == 0:
            return "200 OK", json.dumps(self.em_status(em_id)).encode()
        if url.path == "/rpc/EMData.GetStatus" and em_id == 0:
            return "200 OK", json.dumps(self.emdata_status(em_id)).encode()
        return "404 Not Found", b'{"code": 404, "message": "No handler for the method"}'


def _energy(wh: float) -> float:
    if not math.isfinite(wh) or wh < 0:
        raise ValueError(f"energy only counts up, got {wh} Wh")
    return wh


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
