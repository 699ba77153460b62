"""The MQTT client of the charger: state out, two commands in, reconnecting for ever.

One task (:meth:`MqttBridge.run`, started by the app) owns everything that waits on the
broker. The supervisor only ever sees the bridge as a listener of its event broadcast
whose coroutine sets an :class:`asyncio.Event` and returns: a stuck broker, a slow
network or a flood of commands can fill nothing and delay nothing on the charger's side.

Per connection to the broker:

1. connect with a last will (``<prefix>/availability`` = ``offline``, retained), within
   ``connect_timeout_s`` (a broker that accepts TCP but never sends CONNACK is abandoned
   and its socket closed);
2. subscribe to the commands, publish ``online`` and the Home Assistant discovery
   messages (retained), then every state topic once (the cache of what was published is
   emptied at each connection, so a restarted broker that lost its retained messages
   gets them all again);
3. three tasks: the publisher (woken by the broadcast, it reads
   :meth:`~controller.supervisor.Supervisor.snapshot` and publishes what changed, at most
   once per ``publish_interval_s``), the receiver (parses each command; a bad one is
   logged, rate-limited, and dropped) and the applier (applies the latest command of each
   kind and connector at most once per ``command_interval_s``, so a flood collapses to
   its last value, through Supervisor methods only).

With ``[grid_meter] source = "mqtt"`` it also subscribes to the grid readings' topic and
hands each message to :class:`~controller.mqtt.grid_input.GridInput` as it arrives (a
reading is not a command: it is taken at once, never collapsed or delayed).

Any failure ends the connection: a broker error waits a capped, jittered backoff; any
other exception (a bug) is logged with its traceback and the bridge starts over the same
way, without touching charging. On shutdown the bridge says ``offline`` itself (a clean
disconnect sends no will), waiting at most ``goodbye_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TypeVar

import aiomqtt

from controller.backoff import Backoff
from controller.config import Config, MqttConfig
from controller.energy.grid import GridFeed
from controller.energy.modes import ModeControl
from controller.events import SupervisorEvent
from controller.limits import LimitSource
from controller.mqtt.commands import (
    BadCommand,
    Command,
    SetCurrentLimit,
    SetMode,
    SetThreshold,
    parse_command,
    slot,
)
from controller.mqtt.discovery import Device, discovery_messages
from controller.mqtt.grid_input import GridInput
from controller.mqtt.rejects import REJECT_LOG_PERIOD_S, Rejects
from controller.mqtt.state import EnergyFloor, connector_state, energy_state
from controller.mqtt.topics import OFFLINE, ONLINE, Topics, default_prefix, node_id
from controller.supervisor import Supervisor
from drivers.errors import ConfigurationError

log = logging.getLogger(__name__)
T = TypeVar("T")
#: paho-mqtt's own log lines (through aiomqtt), rate-limited: a flood must not flood the log.
wire_log = logging.getLogger("controller.mqtt.wire")


@dataclass(frozen=True, slots=True)
class BridgeTiming:
    """The bridge's timing (s); tests shrink it, a charger keeps the defaults."""

    connect_timeout_s: float = 10.0
    keepalive_s: int = 30
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    backoff_jitter: float = 0.2
    publish_interval_s: float = 0.25
    command_interval_s: float = 0.2
    goodbye_s: float = 1.0


class _RateLimit(logging.Filter):
    """Lets each distinct warning or error through at most once per ``period_s``."""

    def __init__(self, period_s: float) -> None:
        super().__init__()
        self._period_s = period_s
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:  # debug lines are off on a charger anyway
            return True
        now = time.monotonic()
        key = str(record.msg)
        if now - self._last.get(key, -self._period_s) < self._period_s:
            return False
        self._last[key] = now
        return True


wire_log.addFilter(_RateLimit(REJECT_LOG_PERIOD_S))


async def _io(awaitable: Awaitable[T]) -> T:
    """Await one aiomqtt call (or anything built on ``asyncio.wait_for``) and honour a
    cancellation it swallowed.

    On Python 3.11, ``asyncio.wait_for`` drops a cancellation that arrives as the awaited
    operation completes (CPython gh-86296); aiomqtt awaits every PUBACK, SUBACK and CONNACK
    that way. The task's own ``cancelling()`` count still says it was cancelled: without
    this check the app's shutdown would wait for a bridge that never stops.
    """
    result = await awaitable
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    return result


def software_version() -> str:
    try:
        return version("picharge")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "dev"


class MqttBridge:
    """Publishes the charger's state to an MQTT broker and takes its commands.

    Create it on the loop (the app does, from ``[mqtt]``), then ``await run()`` in a task
    of its own; cancel the task to stop. The counters are for tests and diagnostics.
    """

    def __init__(
        self,
        settings: MqttConfig,
        supervisor: Supervisor,
        device: Device,
        max_current_a: Mapping[int, float],
        timing: BridgeTiming = BridgeTiming(),
        energy: ModeControl | None = None,
        grid: GridFeed | None = None,
        grid_topic: str | None = None,
    ) -> None:
        """``grid``: the feed that takes grid readings published on ``grid_topic`` (None:
        ``<prefix>/grid/set``), for ``[grid_meter] source = "mqtt"``."""
        self.settings = settings
        self._supervisor = supervisor
        self._energy = energy
        self._device = device
        self._max_current_a = dict(max_current_a)
        self.timing = timing
        self.topics = Topics(settings.topic_prefix or default_prefix(device.chargepoint_id))
        self.grid = None if grid is None else GridInput(grid, grid_topic or self.topics.grid)
        self._tls = self._tls_context(settings)
        self._floor = EnergyFloor()
        self._published: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._pending: dict[tuple[str, int], Command] = {}
        self._command_ready = asyncio.Event()
        self._rejects = Rejects(log, "a command")
        #: "stopped", "connecting" (until discovery and state are published), "connected"
        #: or "backoff".
        self.state = "stopped"
        self.connections = 0
        self.failures = 0
        self.crashes = 0
        self.commands_applied = 0
        self.commands_rejected = 0

    @classmethod
    def from_config(
        cls,
        config: Config,
        supervisor: Supervisor,
        energy: ModeControl | None = None,
        grid: GridFeed | None = None,
    ) -> MqttBridge:
        """``grid``: the feed of ``[grid_meter] source = "mqtt"`` (its ``topic`` was checked
        by controller.energy.grid_meter when the feed was built)."""
        assert config.mqtt is not None
        device = Device(
            config.chargepoint_id, config.vendor, config.model, config.serial, software_version()
        )
        maxima = {c.id: c.max_current_a for c in config.connectors}
        topic = config.grid_meter.get("topic") if grid is not None else None
        return cls(
            config.mqtt, supervisor, device, maxima, energy=energy, grid=grid, grid_topic=topic
        )

    @staticmethod
    def _tls_context(settings: MqttConfig) -> ssl.SSLContext | None:
        if not settings.tls:
            return None
        cafile = None if settings.ca_file is None else str(settings.ca_file)
        return ssl.create_default_context(cafile=cafile)

    # --- the task ---------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve, reconnect after a backoff; for ever, until cancelled."""
        subscription = self._supervisor.events.subscribe("mqtt", self._on_event, maxlen=8)
        t = self.timing
        backoff = Backoff(t.backoff_initial_s, t.backoff_max_s, t.backoff_jitter)
        log.info("mqtt: broker %s, topics under %s", self.settings.safe_url(), self.topics.prefix)
        try:
            while True:
                try:
                    await self._connection(backoff)
                except aiomqtt.MqttError as exc:
                    self.failures += 1
                    log.warning("mqtt: broker %s: %s", self.settings.safe_url(), exc)
                except Exception:
                    self.crashes += 1
                    log.exception("mqtt: the bridge failed; it starts over (charging goes on)")
                self.state = "backoff"
                delay = backoff.next_delay()
                log.info("mqtt: next connection attempt in %.1f s", delay)
                await asyncio.sleep(delay)
        finally:
            self.state = "stopped"
            self._supervisor.events.unsubscribe(subscription)

    async def _on_event(self, event: SupervisorEvent) -> None:
        """The broadcast listener: wake the publisher, nothing else (never waits)."""
        self._wake.set()

    async def _connection(self, backoff: Backoff) -> None:
        t = self.timing
        self.state = "connecting"
        client = aiomqtt.Client(
            self.settings.host,
            self.settings.port,
            username=self.settings.username,
            password=self.settings.password,
            identifier=f"picharge-{node_id(self._device.chargepoint_id)}",
            will=aiomqtt.Will(self.topics.availability, OFFLINE, qos=1, retain=True),
            tls_context=self._tls,
            timeout=t.connect_timeout_s,
            keepalive=t.keepalive_s,
            logger=wire_log,
            queue_type=self._command_queue(),
        )
        entered = False
        try:
            async with client:
                entered = True
                await _io(asyncio.sleep(0))  # a cancellation the CONNACK wait swallowed
                backoff.reset()
                await self._serve(client)
        finally:
            if not entered:
                _abandon(client)

    def _command_queue(self) -> type[asyncio.Queue[aiomqtt.Message]]:
        """aiomqtt's incoming queue, replaced by :meth:`_take` as each message arrives.

        A queue of messages would let a flood grow it without bound, or (bounded) drop
        the newest command, the one that should win. Taking each message on arrival (a
        parse, a dict entry: it never waits and never raises) keeps only the latest
        command of each kind; the queue stays empty, and its iterator still ends with an
        MqttError when the connection drops, which is how :meth:`_receiver` notices.
        """
        bridge = self

        class Commands(asyncio.Queue[aiomqtt.Message]):
            def put_nowait(self, item: aiomqtt.Message) -> None:
                bridge._take(str(item.topic), item.payload, item.retain)

        return Commands

    async def _serve(self, client: aiomqtt.Client) -> None:
        log.info("mqtt: connected to %s", self.settings.safe_url())
        self._published.clear()
        try:
            await _io(client.subscribe(self.topics.command_filter, qos=1))
            if self.grid is not None:  # readings: the newest counts, a lost one ages out
                await _io(client.subscribe(self.grid.topic, qos=0))
            await _io(client.publish(self.topics.availability, ONLINE, qos=1, retain=True))
            await self._publish_discovery(client)
            await self._publish_state(client)
            self.state = "connected"  # announced: discovery and every state topic are out
            self.connections += 1
            await self._run_tasks(client)
        except asyncio.CancelledError:
            await self._goodbye(client)
            raise

    async def _run_tasks(self, client: aiomqtt.Client) -> None:
        """The publisher, receiver and applier until the first of them fails (raised).

        Not an asyncio.TaskGroup: on Python 3.11 a TaskGroup whose child fails leaves its
        parent's ``cancelling()`` count raised, which :func:`_io` reads as a shutdown.
        """
        tasks = [
            asyncio.create_task(self._publisher(client), name="mqtt-publish"),
            asyncio.create_task(self._receiver(client), name="mqtt-receive"),
            asyncio.create_task(self._applier(), name="mqtt-commands"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            failure = task.exception()
            if failure is not None:
                raise failure
        raise aiomqtt.MqttError("the connection's message stream ended")

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """``offline`` before a clean disconnect (which sends no will), briefly."""
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await asyncio.wait_for(
                client.publish(self.topics.availability, OFFLINE, qos=1, retain=True),
                self.timing.goodbye_s,
            )

    # --- state out --------------------------------------------------------------------

    async def _publish_discovery(self, client: aiomqtt.Client) -> None:
        prefix = self.settings.discovery_prefix
        if not prefix:
            return
        energy = None if self._energy is None else self._energy.status()
        modes = None if energy is None else energy["modes"]
        grid = energy is not None and energy["grid_meter"]
        for topic, payload in discovery_messages(
            prefix, self.topics, self._device, self._max_current_a, modes, grid
        ):
            await _io(client.publish(topic, payload, qos=1, retain=True))

    async def _publisher(self, client: aiomqtt.Client) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._publish_state(client)
            # Events come in bursts (a status change brings limits, faults, a sample):
            # one round per interval publishes all of them, and no faster.
            await asyncio.sleep(self.timing.publish_interval_s)

    async def _publish_state(self, client: aiomqtt.Client) -> None:
        """Publish every state topic whose value differs from the last one published."""
        snapshot = self._supervisor.snapshot()
        await self._publish(client, self.topics.csms_link, snapshot.csms_link, retain=True)
        energy = None if self._energy is None else self._energy.status()
        by_id = {} if energy is None else {c["id"]: c for c in energy["connectors"]}
        if energy is not None:
            for key, publication in energy_state(energy).items():
                await self._publish(client, self.topics.energy(key), publication.payload, False)
        for connector in snapshot.connectors:
            tx = self._supervisor.view(connector.id).transaction
            state = connector_state(
                connector,
                meter_start_wh=None if tx is None or not tx.running else tx.meter_start_wh,
                max_current_a=self._max_current_a.get(connector.id, 0.0),
                floor=self._floor,
                energy=by_id.get(connector.id),
            )
            for key, publication in state.items():
                topic = self.topics.state(connector.id, key)
                await self._publish(client, topic, publication.payload, publication.retain)

    async def _publish(
        self, client: aiomqtt.Client, topic: str, payload: str, retain: bool
    ) -> None:
        if self._published.get(topic) == payload:
            return
        await _io(client.publish(topic, payload, qos=0, retain=retain))
        self._published[topic] = payload

    # --- commands in ------------------------------------------------------------------

    async def _receiver(self, client: aiomqtt.Client) -> None:
        """Ends (MqttError) when the connection drops; the messages never queue here."""
        async for message in client.messages:
            self._take(str(message.topic), message.payload, message.retain)

    def _take(self, topic: str, payload: object, retained: bool = False) -> None:
        """Parse one command and keep it as the latest of its kind, or push a grid
        reading; never raises."""
        if isinstance(payload, bytes | bytearray):
            data = bytes(payload)
        else:
            data = b"" if payload is None else str(payload).encode()
        if self.grid is not None and topic == self.grid.topic:
            self.grid.take(data, retained)
            return
        parsed = self.topics.parse_command(topic)
        if parsed is None:
            self._reject(topic, "not a command topic")
            return
        try:
            command = parse_command(*parsed, data, self._max_current_a)
        except BadCommand as exc:
            self._reject(topic, str(exc))
            return
        self._pending[slot(command)] = command
        self._command_ready.set()

    def _reject(self, topic: str, why: str) -> None:
        self.commands_rejected += 1
        self._rejects.note(topic, why)

    async def _applier(self) -> None:
        while True:
            await self._command_ready.wait()
            self._command_ready.clear()
            pending, self._pending = self._pending, {}
            for command in pending.values():
                await self._apply(command)
            self._wake.set()  # publish the outcome without waiting for the next event
            await asyncio.sleep(self.timing.command_interval_s)

    async def _apply(self, command: Command) -> None:
        """Through Supervisor methods only, as every edge acts on the charger."""
        self.commands_applied += 1
        cid = command.connector_id
        if isinstance(command, SetMode):
            await self._set_mode(command)
        elif isinstance(command, SetThreshold):
            await self._set_threshold(command)
        elif isinstance(command, SetCurrentLimit):
            self._supervisor.set_limit(cid, LimitSource.USER, command.current_a)
            shown = "cleared" if command.current_a is None else f"{command.current_a:g} A"
            log.info("mqtt: user current limit on connector %d %s", cid, shown)
        else:
            answer = await _io(self._supervisor.change_availability(cid, command.enabled))
            log.info(
                "mqtt: connector %d %s (%s)",
                cid,
                "enabled" if command.enabled else "disabled",
                answer,
            )

    async def _set_mode(self, command: SetMode) -> None:
        cid = command.connector_id
        if self._energy is None:
            log.warning("mqtt: no charging modes without [energy] or [site]: %s ignored", command)
            return
        try:
            await self._energy.set_mode(cid, command.mode)
        except (KeyError, ValueError) as exc:
            log.warning(
                "mqtt: charging mode %s on connector %d refused: %s", command.mode, cid, exc
            )
            return
        log.info("mqtt: charging mode of connector %d set to %s", cid, command.mode)

    async def _set_threshold(self, command: SetThreshold) -> None:
        cid, key = command.connector_id, command.key
        if self._energy is None:
            log.warning("mqtt: no charging modes without [energy] or [site]: %s ignored", command)
            return
        try:
            await self._energy.set_thresholds(cid, {key: command.value})
        except (KeyError, ConfigurationError) as exc:
            log.warning("mqtt: %s on connector %d refused: %s", key, cid, exc)
            return
        shown = "the configured value" if command.value is None else repr(command.value)
        log.info("mqtt: %s of connector %d set to %s", key, cid, shown)


def _abandon(client: aiomqtt.Client) -> None:
    """Close the socket of a connection attempt that never completed.

    aiomqtt 2.5 leaves paho's socket open (and watched by the loop) when CONNACK does not
    come in time or the attempt is cancelled; each retry against a broker that accepts TCP
    and never answers would leak one until paho's keepalive check closes it. paho's public
    ``disconnect()`` closes it now (it sends DISCONNECT, then closes).
    """
    paho = client._client  # aiomqtt keeps its paho client private; pinned to 2.5 for this
    # aiomqtt's disconnect callback reads the connect future, which a cancelled attempt
    # left cancelled (it would raise in the loop's callback): nothing waits for it now.
    paho.on_disconnect = None
    paho.disconnect()
