"""``picharge demo``: a complete charging session against a bundled local CSMS.

Everything runs in this process and on loopback: a small OCPP central system speaking 1.6J
or 2.0.1 (:mod:`controller.local_csms`), the real controller (supervisor, connector state machine,
OCPP adapter, drivers) on simulated hardware, and a script that plays the car and its
driver: plug in, tap a card, charge with accelerated time, a limit imposed by the CSMS,
unplug. Progress lines come from the controller's view and the simulated car; the summary
comes from what the CSMS received. Under 2.0.1 (``picharge demo --ocpp 2.0.1``) the session
is reported as TransactionEvents and the limit is a 2.0.1 TxProfile for the transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ocpp.v16 import call
from ocpp.v201 import call as call201

from controller.app import ChargePointApp, RunOptions
from controller.config import parse_config
from controller.local_csms import LocalCsms

DEMO_SPEED = 60.0  # one wall-clock second is one minute for the car and the meter
DEMO_CARD = "04A1B2C3"
CHARGE_POINT_ID = "picharge-demo"
DEMO_KEYS = "MeterValueSampleInterval = 2\nHeartbeatInterval = 60\n"
DEMO_VARIABLES = (
    "[SampledDataCtrlr]\nTxUpdatedInterval = 2\n[OCPPCommCtrlr]\nHeartbeatInterval = 60\n"
)


class _Session:
    def __init__(
        self,
        app: ChargePointApp,
        csms: LocalCsms,
        out: Callable[[str], None],
        version: str = "1.6",
    ):
        self.v201 = version == "2.0.1"
        self.app = app
        self.csms = csms
        self.out = out
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        self.out(f"[{time.monotonic() - self.started:5.1f}s] {text}")

    def hw(self) -> dict[str, Any]:
        status: dict[str, Any] = self.app.sim.status()["connectors"][0]
        return status

    def status(self) -> str:
        assert self.app.supervisor is not None
        return str(self.app.supervisor.view(1).status)

    async def until(self, what: str, predicate: Callable[[], bool], timeout_s: float = 10) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():  # noqa: ASYNC110 - watching a simulation
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise RuntimeError(f"demo stuck waiting for {what}") from None

    def progress(self) -> None:
        hw = self.hw()
        self.say(
            f"{self.status():13s} I {hw['ev_current_a']:5.1f} A  "
            f"P {hw['power_w'] / 1000:5.2f} kW  E {hw['energy_wh'] / 1000:6.3f} kWh  "
            f"car SoC {hw['soc_pct']:4.1f} % (simulated car)"
        )

    async def play(self, charge_s: float) -> None:
        await self.csms.wait_for("BootNotification", timeout_s=10)
        await self.until("status Available", lambda: self.status() == "Available")
        self.say("charge point booted at the CSMS; connector 1 Available")

        await self.app.sim.handle({"action": "plug", "connector": 1})
        await self.until("Preparing", lambda: self.status() == "Preparing")
        self.say("car plugged in: Preparing (waiting for a card)")

        await self.app.sim.handle({"action": "tap", "uid": DEMO_CARD})
        await self.csms.wait_for("Authorize", timeout_s=10)
        self.say(f"card {DEMO_CARD} tapped: the CSMS authorized it")
        if self.v201:
            start = await self.csms.wait_for(
                "TransactionEvent", lambda p: p["eventType"] == "Started", timeout_s=10
            )
            meter_start = start["meterValue"][0]["sampledValue"][0]["value"]
        else:
            start = await self.csms.wait_for("StartTransaction", timeout_s=10)
            meter_start = start["meterStart"]
        await self.until("Charging", lambda: self.status() == "Charging")
        self.say(f"transaction started at {meter_start} Wh: contactor closed, Charging")

        for second in range(int(charge_s)):
            if second == int(charge_s) // 2:
                await self._impose_limit(10)
            await asyncio.sleep(1.0)
            self.progress()

        await self.app.sim.handle({"action": "unplug", "connector": 1})
        if self.v201:
            stop = await self.csms.wait_for(
                "TransactionEvent", lambda p: p["eventType"] == "Ended", timeout_s=10
            )
            reason = stop["transactionInfo"].get("stoppedReason")
        else:
            stop = await self.csms.wait_for("StopTransaction", timeout_s=10)
            reason = stop.get("reason")
        await self.until("Available", lambda: self.status() == "Available")
        self.say(f"car unplugged: transaction stopped ({reason}), contactor open")

    async def _impose_limit(self, amps: int) -> None:
        if self.v201:
            await self._impose_limit_201(amps)
            return
        profile = {
            "chargingProfileId": 1,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": amps}],
            },
        }
        tx = self.app.supervisor.view(1).transaction if self.app.supervisor else None
        if tx is not None and tx.csms_id is not None:
            profile["transactionId"] = tx.csms_id
        result = await self.csms.call(
            CHARGE_POINT_ID,
            call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile),
        )
        self.say(f"the CSMS limits the session to {amps} A: {result.status}")

    async def _impose_limit_201(self, amps: int) -> None:
        """The same limit in 2.0.1's words: a TxProfile for the running transaction (its
        id is the charger's own) with one schedule in A."""
        tx = self.app.supervisor.view(1).transaction if self.app.supervisor else None
        profile: dict[str, Any] = {
            "id": 1,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": [
                {
                    "id": 1,
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": amps}],
                }
            ],
        }
        if tx is not None:
            profile["transactionId"] = tx.local_id
        result = await self.csms.call(
            CHARGE_POINT_ID, call201.SetChargingProfile(evse_id=1, charging_profile=profile)
        )
        self.say(f"the CSMS limits the session to {amps} A: {result.status}")

    def summary(self) -> None:
        if self.v201:
            self._summary_201()
            return
        [record] = list(self.csms.transactions.values())[-1:]
        self.out("")
        self.out("Session summary (as the CSMS recorded it)")
        self.out(f"  transaction      {record.transaction_id} on connector {record.connector_id}")
        self.out(f"  card             {record.id_tag}")
        self.out(f"  meter start/stop {record.meter_start_wh} / {record.meter_stop_wh} Wh")
        self.out(f"  energy           {(record.energy_wh or 0) / 1000:.3f} kWh")
        self.out(f"  duration         {record.duration_s or 0:.0f} s (wall clock)")
        self.out(f"  stop reason      {record.stop_reason}")
        self.out(f"  meter values     {len(record.meter_values)} readings sent during the session")
        self.out("")
        self.out("To follow a session on the web page: `picharge run --sim --state-dir DIR`")
        self.out("prints the page's URL (http://127.0.0.1:8080/); after `picharge sim plug`,")
        self.out("log in (`picharge web-password --state-dir DIR` sets the password) and Start.")

    def _summary_201(self) -> None:
        [((_, tx_id), sent)] = list(self.csms.transaction_events.items())[-1:]
        started, ended = sent[0], sent[-1]
        begin = started["meterValue"][0]["sampledValue"][0]["value"]
        end = ended["meterValue"][0]["sampledValue"][0]["value"]
        self.out("")
        self.out("Session summary (as the CSMS recorded it, OCPP 2.0.1)")
        self.out(f"  transaction      {tx_id} on EVSE {started['evse']['id']}")
        self.out(f"  card             {started['idToken']['idToken']}")
        self.out(f"  meter start/stop {begin} / {end} Wh")
        self.out(f"  energy           {(end - begin) / 1000:.3f} kWh")
        self.out(f"  stop reason      {ended['transactionInfo'].get('stoppedReason')}")
        self.out(f"  events           {len(sent)} TransactionEvents, seqNo 0-{ended['seqNo']}")


async def run_demo(
    out: Callable[[str], None] = print,
    charge_s: float = 8.0,
    state_dir: Path | None = None,
    version: str = "1.6",
) -> int:
    """Play the session with OCPP ``version``; returns 0 when it completed."""
    out(f"picharge demo: a charging session on simulated hardware, local CSMS, OCPP {version}")
    out("(car and meter time run x60; OCPP messages are real, over a loopback websocket)")
    csms = LocalCsms(authorized_tags={DEMO_CARD: "Accepted"})
    with contextlib.ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        keys = state_dir / "demo-keys.toml"
        state_dir.mkdir(parents=True, exist_ok=True)
        keys.write_text(DEMO_VARIABLES if version == "2.0.1" else DEMO_KEYS)
        url = await csms.start()
        config = parse_config(
            {"chargepoint": {"id": CHARGE_POINT_ID}, "ocpp": {"url": url, "version": version}}
        )
        app = ChargePointApp(
            dataclasses.replace(config, state_dir=state_dir / "state"),
            RunOptions(sim=True, sim_speed=DEMO_SPEED, ocpp_keys=keys),
        )
        stop = asyncio.Event()
        try:
            await app.start()
            runner = asyncio.create_task(app.run(stop))
            session = _Session(app, csms, out, version)
            try:
                await session.play(charge_s)
            finally:
                stop.set()
                await asyncio.wait_for(runner, 10)
            session.summary()
        finally:
            await app.close()
            await csms.stop()
    return 0
