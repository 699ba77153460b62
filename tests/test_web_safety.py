"""The web page never at the expense of charging (issue 15): a flood of API requests and a
live client that stopped reading do not delay the safety reaction, and a web server that
cannot run does not stop the charger from charging."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import sys
import textwrap
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest

from controller.connector_types import ConnectorStatus
from controller.events import StatusEvent
from tests.support.hazards import rcd_trip_to_coil_low_s
from tests.support.wait import until
from tests.support.web import web_charger

pytestmark = pytest.mark.timeout(90)

#: The bound tests/test_event_broadcast.py holds the RCD trip to (trip to coil low).
COIL_LOW_WITHIN_S = 0.07

#: A browser tab gone mad, from another process: 4 connections asking as fast as they can,
#: for at most ``seconds`` or ``count`` requests each.
FLOOD = textwrap.dedent(
    """
    import sys, threading, time, http.client
    host, port, seconds, count = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    done = [0]
    def run():
        conn = http.client.HTTPConnection(host, port, timeout=5)
        end = time.monotonic() + seconds
        for i in range(count):
            if time.monotonic() > end:
                break
            conn.request("GET", ("/api/v1/status", "/", "/static/app.js")[i % 3])
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
            done[0] += 1
    threads = [threading.Thread(target=run) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(done[0])
    """
)


def stuck_live_client(host: str, port: int) -> socket.socket:
    """Open the live stream and never read from it again (a phone that went to sleep)."""
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /api/v1/live HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert b"101" in sock.recv(12)
    return sock


@pytest.mark.timing  # the coil's bound is wall-clock time: run alone
async def test_a_request_flood_and_a_stuck_live_client_do_not_delay_an_rcd_trip(
    tmp_path: Path,
) -> None:
    async with web_charger(tmp_path, web={"public_status": True}) as rig:
        charger = rig.charger
        host, port = rig.web.address
        await charger.charging()
        stuck = await asyncio.to_thread(stuck_live_client, host, port)
        healthy: list[str] = []
        ws = await rig.http.ws_connect(rig.base + "/api/v1/live")

        async def read() -> None:
            async for message in ws:
                healthy.append(message.data)

        reader = asyncio.create_task(read())
        await until(lambda: rig.web.hub.clients == 2)
        flood = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOOD, host, str(port), "8", "100000", stdout=PIPE
        )
        try:
            await asyncio.sleep(1.0)  # the flood is running
            # A chattering input's worth of events for the live stream to push out: the stuck
            # client's queue fills and it is cut off, nobody else waits for it.
            for n in range(12_000):  # ~18 MB of live messages, more than the socket buffers
                status = ConnectorStatus.CHARGING if n % 2 else ConnectorStatus.SUSPENDED_EV
                charger.supervisor.events.publish(StatusEvent(1, status, None))
                await asyncio.sleep(0)  # as fast as the live stream takes them
            coil_low = await rcd_trip_to_coil_low_s(charger)
            print(f"RCD trip to coil low under a request flood: {coil_low * 1000:.2f} ms")
            assert coil_low < COIL_LOW_WITHIN_S
            await until(lambda: charger.status() is ConnectorStatus.FAULTED)
            # the reading client heard of the trip while the stuck one was being cut off
            await until(lambda: any('"FaultsChanged"' in m and "rcd_trip" in m for m in healthy))
            await until(lambda: rig.web.hub.dropped_clients == 1, 10.0)
            assert rig.web.hub.clients == 1
            out, _ = await asyncio.wait_for(flood.communicate(), 30)
        finally:
            if flood.returncode is None:
                flood.kill()
                await flood.communicate()
            stuck.close()
            await ws.close()
            reader.cancel()
        assert flood.returncode == 0
        served = int(out)
        print(f"requests served during the flood: {served}")
        assert served > 100
        await charger.act("unplug")
        await charger.act("fault", fault="clear")
        await until(lambda: charger.status() is ConnectorStatus.AVAILABLE)


async def test_a_web_server_that_cannot_start_leaves_charging_alone_and_retries(
    tmp_path: Path,
) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    try:
        async with web_charger(tmp_path, wait_for_web=False, listen=f"127.0.0.1:{taken}") as rig:
            await until(lambda: rig.web.restarts >= 1)  # the port is taken: it failed
            assert not rig.web.started.is_set()
            await rig.charger.charging()  # charging never needed the page
            blocker.close()
            await asyncio.wait_for(rig.web.started.wait(), 10)  # the retry found the port free
            status, body = await rig.call("GET", "/api/v1/me")
            assert status == 200 and body["logged_in"] is False
            assert rig.charger.status() is ConnectorStatus.CHARGING
    finally:
        blocker.close()
