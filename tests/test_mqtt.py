"""MQTT and Home Assistant discovery, against a real mosquitto the tests start, with the
whole controller on simulated hardware (standalone, cards from the configuration).

What a Home Assistant user relies on: one device with the right entities, state that
follows a session, commands that change the user's limit and the availability, and a
charger that keeps charging whatever the broker does (restarts, never answers, a flood of
commands, a bug in the bridge itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.connector_types import ConnectorStatus
from controller.mqtt import bridge as bridge_module
from controller.mqtt.bridge import BridgeTiming, MqttBridge
from tests.support.hazards import rcd_trip_to_coil_low_s
from tests.support.mqtt_broker import Broker, free_port, watching
from tests.support.pki import issue
from tests.support.standalone import Charger, running
from tests.support.wait import until

CP = "garage"
PREFIX = f"picharge/{CP}"
C1 = f"{PREFIX}/connector/1"
HA = "homeassistant"
#: IEC 61851-1 allows 100 ms for the coil and the contactor together; the contactor takes
#: up to 30 ms of that (the same bound as tests/test_event_broadcast.py).
COIL_LOW_WITHIN_S = 0.07


@contextlib.asynccontextmanager
async def charger_with_mqtt(tmp_path: Path, url: str, **mqtt: str) -> AsyncIterator[Charger]:
    async with running(
        tmp_path / "state", chargepoint={"id": CP}, mqtt={"url": url, **mqtt}
    ) as charger:
        yield charger


def bridge_of(charger: Charger) -> MqttBridge:
    bridge = charger.app.mqtt
    assert isinstance(bridge, MqttBridge)
    return bridge


def config_topic(component: str, key: str) -> str:
    return f"{HA}/{component}/{CP}/connector1_{key}/config"


async def test_discovery_describes_one_device_and_its_entities(
    tmp_path: Path, broker: Broker
) -> None:
    async with charger_with_mqtt(tmp_path, broker.url()) as charger:
        bridge = bridge_of(charger)
        await until(lambda: bridge.state == "connected")
        async with watching(broker) as first:
            await first.becomes(f"{C1}/status", "Available")
        # a subscriber that comes later (Home Assistant starting) gets it all, retained
        async with watching(broker) as watcher:
            await until(lambda: len([t for t in watcher.last if t.startswith(f"{HA}/")]) == 13)
            await watcher.becomes(f"{C1}/status", "Available")
        assert watcher.last[f"{PREFIX}/availability"] == "online"
        configs = sorted(t for t in watcher.last if t.startswith(f"{HA}/"))
        payloads = [watcher.json(t) for t in configs]
        # one device for the whole charger, every entity unavailable with it
        assert {p["device"]["identifiers"][0] for p in payloads} == {f"picharge_{CP}"}
        assert all(p["availability_topic"] == f"{PREFIX}/availability" for p in payloads)
        assert len({p["unique_id"] for p in payloads}) == len(payloads)
        assert all(watcher.retained[t] for t in configs)

        energy = watcher.json(config_topic("sensor", "energy_total_wh"))
        assert energy["device_class"] == "energy"
        assert energy["state_class"] == "total_increasing"
        assert energy["unit_of_measurement"] == "Wh"
        assert energy["state_topic"] == f"{C1}/energy_total_wh"
        power = watcher.json(config_topic("sensor", "power_w"))
        assert (power["device_class"], power["state_class"], power["unit_of_measurement"]) == (
            "power",
            "measurement",
            "W",
        )
        for phase in (1, 2, 3):
            current = watcher.json(config_topic("sensor", f"current_l{phase}_a"))
            assert (current["device_class"], current["unit_of_measurement"]) == ("current", "A")
        phases = watcher.json(config_topic("sensor", "phases"))
        assert phases["state_topic"] == f"{C1}/phases"
        await watcher.becomes(f"{C1}/phases", "3")  # a three-phase connector, no switch
        assert watcher.retained[f"{C1}/phases"]
        status = watcher.json(config_topic("sensor", "status"))
        assert status["device_class"] == "enum" and "Charging" in status["options"]

        limit = watcher.json(config_topic("number", "current_limit"))
        assert limit["command_topic"] == f"{C1}/set/current_limit"
        assert limit["state_topic"] == f"{C1}/user_limit_a"
        assert (limit["min"], limit["max"], limit["unit_of_measurement"]) == (0, 32.0, "A")
        enabled = watcher.json(config_topic("switch", "enabled"))
        assert enabled["command_topic"] == f"{C1}/set/enabled"
        assert enabled["state_topic"] == f"{C1}/enabled"
        assert (enabled["payload_on"], enabled["payload_off"]) == ("ON", "OFF")

        # the state an idle charger shows, retained for Home Assistant's next start
        assert watcher.retained[f"{C1}/status"]
        assert watcher.last[f"{C1}/enabled"] == "ON"
        assert watcher.last[f"{C1}/fault"] == "none"
        assert watcher.last[f"{C1}/user_limit_a"] == "32.0"  # no user limit: the maximum
        assert watcher.last[f"{PREFIX}/csms_link"] == "standalone"


async def test_state_follows_a_simulated_session(tmp_path: Path, broker: Broker) -> None:
    async with (
        watching(broker) as watcher,
        charger_with_mqtt(tmp_path, broker.url()) as charger,
    ):
        await watcher.becomes(f"{C1}/status", "Available")
        await charger.charging()
        await watcher.becomes(f"{C1}/status", "Charging")
        await until(lambda: float(watcher.last.get(f"{C1}/power_w", "0")) > 3000)
        for phase in (1, 2, 3):
            topic = f"{C1}/current_l{phase}_a"
            await until(lambda topic=topic: float(watcher.last.get(topic, "0")) > 6.0)
        # the session's energy grows while the car charges (the simulation runs x30)
        await until(lambda: float(watcher.last.get(f"{C1}/session_energy_wh", "0")) > 20)
        async with watching(broker) as late:  # what the broker keeps for a new subscriber
            await late.value(f"{C1}/energy_total_wh")
            await late.value(f"{C1}/session_energy_wh")
            assert f"{C1}/power_w" not in late.last  # goes stale each second: not retained
        await charger.act("unplug")
        await watcher.becomes(f"{C1}/status", "Available")
        await until(lambda: float(watcher.last.get(f"{C1}/power_w", "1")) == 0)
        # total_increasing: the register never went down nor showed a 0
        totals = [float(p) for t, p in watcher.messages if t == f"{C1}/energy_total_wh"]
        assert totals and totals == sorted(totals) and totals[0] > 0
        sessions = [float(p) for t, p in watcher.messages if t == f"{C1}/session_energy_wh"]
        assert sessions == sorted(sessions)


async def test_commands_change_the_user_limit_and_the_availability(
    tmp_path: Path, broker: Broker
) -> None:
    async with (
        watching(broker) as watcher,
        charger_with_mqtt(tmp_path, broker.url()) as charger,
    ):
        supervisor = charger.supervisor
        await watcher.becomes(f"{C1}/status", "Available")
        await charger.charging()
        client = watcher.client

        await client.publish(f"{C1}/set/current_limit", "10")
        await until(lambda: supervisor.snapshot().connector(1).limits == (("user", 10.0),))
        await watcher.becomes(f"{C1}/user_limit_a", "10.0")
        await watcher.becomes(f"{C1}/limited_by", "user")
        await watcher.becomes(f"{C1}/limit_a", "10.0")
        await until(lambda: abs(charger.hw("offered_current_a") - 10.0) < 0.5)

        bad = [
            ("current_limit", b"abc"),
            ("current_limit", b"-5"),
            ("current_limit", b"33"),  # above the connector's 32 A
            ("current_limit", b"nan"),
            ("current_limit", b"\xff\xfe"),
            ("current_limit", b"1" * 100),
            ("enabled", b"maybe"),
        ]
        for command, payload in bad:
            await client.publish(f"{C1}/set/{command}", payload)
        await client.publish(f"{PREFIX}/connector/9/set/current_limit", b"10")
        bridge = bridge_of(charger)
        await until(lambda: bridge.commands_rejected == len(bad) + 1)
        assert supervisor.snapshot().connector(1).limits == (("user", 10.0),)
        assert bridge.state == "connected" and bridge.crashes == 0

        await client.publish(f"{C1}/set/current_limit", "none")
        await until(lambda: supervisor.snapshot().connector(1).limits == ())
        await watcher.becomes(f"{C1}/user_limit_a", "32.0")

        # disabling while charging is scheduled: the session goes on, the switch says OFF
        await client.publish(f"{C1}/set/enabled", "OFF")
        await watcher.becomes(f"{C1}/enabled", "OFF")
        assert charger.status() is ConnectorStatus.CHARGING
        await charger.act("unplug")
        await watcher.becomes(f"{C1}/status", "Unavailable")
        await client.publish(f"{C1}/set/enabled", "on")
        await watcher.becomes(f"{C1}/status", "Available")
        await watcher.becomes(f"{C1}/enabled", "ON")


async def test_a_restarted_broker_gets_discovery_and_retained_state_again(
    tmp_path: Path, broker: Broker
) -> None:
    async with charger_with_mqtt(tmp_path, broker.url()) as charger:
        bridge = bridge_of(charger)
        await until(lambda: bridge.state == "connected")
        await charger.charging()
        broker.stop()  # keeps nothing: every retained message is gone
        await until(lambda: bridge.state == "backoff")
        assert charger.status() is ConnectorStatus.CHARGING
        broker.start()
        await until(lambda: bridge.connections == 2, 15.0)
        async with watching(broker) as watcher:
            await watcher.becomes(f"{C1}/status", "Charging")
            await watcher.becomes(f"{PREFIX}/availability", "online")
            await watcher.value(config_topic("sensor", "energy_total_wh"))
        async with watching(broker) as late:  # a new subscriber: the broker kept them again
            await late.becomes(f"{C1}/status", "Charging")
            await late.value(config_topic("switch", "enabled"))
            assert late.retained[f"{C1}/status"]
            assert late.retained[config_topic("switch", "enabled")]
            assert late.retained[f"{PREFIX}/availability"]
        assert charger.status() is ConnectorStatus.CHARGING
        assert len(charger.transactions()) == 1


async def test_a_clean_stop_says_offline_and_is_prompt(tmp_path: Path, broker: Broker) -> None:
    """A clean disconnect sends no will: the bridge says offline itself, and its stop
    never holds up the controller's (aiomqtt's waits can swallow a cancellation on
    Python 3.11; the bridge honours it all the same)."""
    async with watching(broker) as watcher:
        for _ in range(3):  # the stop lands at a different await each time
            async with charger_with_mqtt(tmp_path, broker.url()) as charger:
                await watcher.becomes(f"{PREFIX}/availability", "online")
                bridge = bridge_of(charger)
                stopping = time.monotonic()
            assert time.monotonic() - stopping < 3.0
            await watcher.becomes(f"{PREFIX}/availability", "offline")
            assert bridge.state == "stopped"


async def test_the_last_will_says_offline_when_the_controller_is_killed(
    tmp_path: Path, broker: Broker
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[chargepoint]\nid = "{CP}"\n[mqtt]\nurl = "{broker.url()}"\n')
    async with watching(broker) as watcher:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "controller.cli",
            "run",
            "--sim",
            "--config",
            str(config),
            "--state-dir",
            str(tmp_path / "state"),
            "--sim-control",
            f"127.0.0.1:{free_port()}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await watcher.becomes(f"{C1}/status", "Available", 30.0)
            await watcher.becomes(f"{PREFIX}/availability", "online")
        finally:
            process.kill()
            await process.wait()
        await watcher.becomes(f"{PREFIX}/availability", "offline")


class SilentBroker:
    """Accepts TCP and reads, never answers CONNACK; counts connections."""

    def __init__(self) -> None:
        self.accepted: list[float] = []
        self.open = 0
        self.most_open = 0
        self.server: asyncio.Server | None = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.append(time.monotonic())
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while await reader.read(4096):
                pass
        finally:
            self.open -= 1
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])


async def test_a_broker_that_never_answers_is_backed_off_while_the_car_charges(
    tmp_path: Path,
) -> None:
    silent = SilentBroker()
    port = await silent.start()
    async with running(tmp_path / "state", chargepoint={"id": CP}) as charger:
        from controller.config import parse_config

        config = parse_config(
            {"chargepoint": {"id": CP}, "mqtt": {"url": f"mqtt://127.0.0.1:{port}"}}
        )
        timing = BridgeTiming(connect_timeout_s=0.3, backoff_initial_s=0.2, backoff_max_s=1.6)
        bridge = MqttBridge.from_config(config, charger.supervisor)
        bridge.timing = timing
        task = asyncio.create_task(bridge.run())
        try:
            await charger.charging()
            await until(lambda: len(silent.accepted) >= 5, 20.0)
            assert charger.status() is ConnectorStatus.CHARGING
            assert charger.hw("contactor_closed")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert bridge.connections == 0 and bridge.failures >= 4
        gaps = [b - a for a, b in zip(silent.accepted, silent.accepted[1:], strict=False)]
        # each gap is the CONNACK wait plus a backoff that doubles (±20 %) up to its cap
        assert gaps[-1] > gaps[0] * 1.5, gaps
        assert silent.most_open == 1  # each abandoned attempt's socket was closed
        await until(lambda: silent.open == 0)
        await silent.stop()


async def test_a_crash_of_the_bridge_restarts_it_and_charging_goes_on(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        watching(broker) as watcher,
        charger_with_mqtt(tmp_path, broker.url()) as charger,
    ):
        bridge = bridge_of(charger)
        await charger.charging()
        await watcher.becomes(f"{C1}/status", "Charging")
        transaction = charger.supervisor.view(1).transaction
        coil: list[bool] = []  # every change of the contactor's coil from here on
        charger.app.sim.connectors[0].contactor.add_coil_listener(coil.append)
        real = bridge_module.connector_state
        calls = {"n": 0}

        def broken_once(*args: object, **kwargs: object) -> object:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("a bug in the bridge")
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(bridge_module, "connector_state", broken_once)
        await until(lambda: bridge.crashes == 1)
        await until(lambda: bridge.connections == 2 and bridge.state == "connected", 15.0)
        assert coil == []  # the crash and the restart never moved the contactor
        assert charger.status() is ConnectorStatus.CHARGING
        watcher.clear()
        await charger.act("pause")
        await watcher.becomes(f"{C1}/status", "SuspendedEV")
        await until(lambda: coil == [False])  # the listener does hear the coil
        # the session was never touched: same transaction, contactor as the car wants
        assert charger.supervisor.view(1).transaction is transaction
        await charger.act("charge")
        await watcher.becomes(f"{C1}/status", "Charging")
        assert charger.hw("contactor_closed")


FLOOD = """
import sys, time, paho.mqtt.client as mqtt
port, topic, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
c.connect("127.0.0.1", port)
c.loop_start()
payloads = [b"16", b"garbage", b"ON", b"8", b"\\xff"]
start = time.monotonic()
end, i = start + seconds, 0
while time.monotonic() < end:
    info = c.publish(topic + ("current_limit" if i % 3 else "enabled"), payloads[i % 5])
    i += 1
    if i % 100 == 0:  # about 5000 messages a second: far more than any automation sends
        info.wait_for_publish()
        time.sleep(max(0.0, start + i / 5000 - time.monotonic()))
c.disconnect(); c.loop_stop()
"""


@pytest.mark.timing  # the coil's bound is wall-clock time: run alone
async def test_a_flood_of_commands_never_delays_the_rcd_trip(
    tmp_path: Path, broker: Broker
) -> None:
    async with charger_with_mqtt(tmp_path, broker.url()) as charger:
        bridge = bridge_of(charger)
        await until(lambda: bridge.state == "connected")
        await charger.charging()
        flood = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOOD, str(broker.port), f"{C1}/set/", "4"
        )
        try:
            await until(lambda: bridge.commands_rejected > 1000, 20.0)
            assert flood.returncode is None  # the trip comes while the flood goes on
            coil_low = await rcd_trip_to_coil_low_s(charger)
            print(f"RCD trip to coil low during an MQTT command flood: {coil_low * 1000:.2f} ms")
            assert coil_low < COIL_LOW_WITHIN_S
            await asyncio.wait_for(flood.wait(), 30.0)
        finally:
            if flood.returncode is None:
                flood.kill()
                await flood.wait()
        assert flood.returncode == 0
        await until(lambda: charger.status() is ConnectorStatus.FAULTED)
        # the flood was collapsed, nothing of it crashed the bridge, and the next command
        # (the broker may have dropped some of the flood) is taken as usual
        async with watching(broker, topic=f"{C1}/user_limit_a") as watcher:
            await watcher.client.publish(f"{C1}/set/current_limit", "12", qos=1)
            await until(
                lambda: charger.supervisor.snapshot().connector(1).limits == (("user", 12.0),)
            )
            await watcher.becomes(f"{C1}/user_limit_a", "12.0")
        assert bridge.crashes == 0 and bridge.state == "connected"
        assert bridge.commands_applied < bridge.commands_rejected / 10


async def test_the_password_reaches_no_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    password = "s3cret-Pa55word"
    broker = Broker(tmp_path / "broker", users={"charger": password, "ha": "ha-password"})
    broker.start()
    caplog.set_level(logging.DEBUG)
    try:
        async with (
            watching(broker, user="ha") as watcher,
            charger_with_mqtt(tmp_path, broker.url("charger")) as charger,
        ):
            await watcher.becomes(f"{PREFIX}/availability", "online")  # logged in
            bridge = bridge_of(charger)
            assert password not in repr(charger.app.config)
        # and a wrong password: refused, retried, still never written out
        wrong = "Wr0ng-pa55word"
        async with charger_with_mqtt(
            tmp_path, f"mqtt://charger:{wrong}@127.0.0.1:{broker.port}"
        ) as charger:
            bridge = bridge_of(charger)
            await until(lambda: bridge.failures >= 1)
    finally:
        broker.stop()
    logged = caplog.text + "".join(
        p.read_text(errors="replace") for p in (tmp_path / "state").rglob("*.log*")
    )
    assert "charger:***@127.0.0.1" in logged
    assert password not in logged and wrong not in logged


async def test_mqtts_checks_the_broker_against_the_configured_ca(tmp_path: Path) -> None:
    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    ca, ca_cert, ca_key = issue(pki_dir, "ca", "broker CA", None, ca=True)
    other, _, _ = issue(pki_dir, "other", "someone else's CA", None, ca=True)
    server, _, _ = issue(pki_dir, "server", "broker", (ca_cert, ca_key), server=True)
    broker = Broker(tmp_path / "broker", tls=(server.cert, server.key))
    broker.start()
    url = f"mqtts://127.0.0.1:{broker.port}"
    try:
        async with charger_with_mqtt(tmp_path / "good", url, ca_file=str(ca.cert)) as charger:
            bridge = bridge_of(charger)
            await until(lambda: bridge.state == "connected")
        async with charger_with_mqtt(tmp_path / "bad", url, ca_file=str(other.cert)) as charger:
            bridge = bridge_of(charger)
            await until(lambda: bridge.failures >= 1)
            assert bridge.connections == 0  # a broker it cannot verify gets nothing
    finally:
        broker.stop()
