"""Several simulated meters on one RS-485 bus: one pseudo-terminal, one unit id each.

A charger's own meter and the grid meter at the house connection often hang on the same two
wires, each with its own unit id. :class:`SimMeterBus` serves any number of
:class:`~hw_sim.meter_server.SimMeter` (of any models) through one pymodbus RTU server on one
:class:`~hw_sim.meter_server.PtyLink`: a master addressing unit 2 gets unit 2's registers,
a unit nobody has gets no reply (as on a real bus), and each meter's fault touches its own
replies only (``"offline"``: its requests go unanswered; ``"garbage"``: its replies fail
their CRC; ``"exception"``: it answers exception 04), so one unit can fall silent while the
other keeps answering.

Threading: as :class:`SimMeter`, on one asyncio loop; only the pty link has threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer

from hw_sim.meter_server import PtyLink, SimMeter, flip_one_bit

Spoil = Literal["drop", "garble"]


class SimMeterBus:
    """Meters with distinct unit ids behind one simulated RS-485 adapter."""

    def __init__(self, meters: Sequence[SimMeter]) -> None:
        ids = [m.unit_id for m in meters]
        if not meters or len(set(ids)) != len(ids):
            raise ValueError(f"a bus needs meters with distinct unit ids, got {ids}")
        self.meters = list(meters)
        self._by_id = {m.unit_id: m for m in meters}
        self._spoil: Spoil | None = None
        self._server: ModbusSerialServer | None = None
        self._link: PtyLink | None = None

    @property
    def link(self) -> PtyLink | None:
        """The pty link while the bus is served."""
        return self._link

    async def start_rtu(self, baudrate: int | None = None) -> str:
        """Serve every meter on one pty link; returns the port path the drivers open.

        ``baudrate`` turns on line-rate emulation (8N1), as :meth:`SimMeter.start_rtu`.
        """
        if self._server is not None:
            raise RuntimeError("the bus is already served")
        link = PtyLink(baudrate=baudrate)
        first = self.meters[0].register_map.link
        try:
            server = ModbusSerialServer(
                [m.device(m.unit_id) for m in self.meters],
                port=link.device_path,
                baudrate=baudrate or first.baudrate,
                parity="N",  # Linux refuses parity on a pty (see SimMeter.start_rtu)
                stopbits=first.stopbits,
                ignore_missing_devices=True,  # an absent unit stays silent, as on a bus
                trace_pdu=self._trace_pdu,
                trace_packet=self._trace_packet,
            )
            await server.serve_forever(background=True)
        except BaseException:
            link.close()
            raise
        self._server, self._link = server, link
        return link.driver_path

    async def stop(self) -> None:
        """Stop the server and the link; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()
        link, self._link = self._link, None
        if link is not None:
            link.close()
        await asyncio.sleep(0)  # let pymodbus' close callbacks run before we return

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        """pymodbus server hook (loop thread): count each unit's requests, spoil its replies."""
        meter = self._by_id.get(pdu.dev_id)
        if meter is None:
            return pdu
        if not sending:
            meter.note_request(pdu)
        elif meter.fault == "offline":
            self._spoil = "drop"
        elif meter.fault == "garbage":
            self._spoil = "garble"
        return pdu

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """pymodbus server hook, right after _trace_pdu for the same reply."""
        spoil, self._spoil = self._spoil, None
        if not sending or spoil is None or not data:
            return data
        return b"" if spoil == "drop" else flip_one_bit("to_driver", data)
