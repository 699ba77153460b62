"""SecurityEventNotification: refused connections, resets and changed security keys reach
the CSMS in order, survive a restart, and never carry the AuthorizationKey."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path

from ocpp.v16 import call

from controller.csms.security_events import (
    HISTORY_KEY,
    MAX_HISTORY,
    MAX_PENDING,
    NAMESPACE,
    PENDING_KEY,
    SecurityEvent,
    SecurityEvents,
)
from controller.local_csms import LocalCsms
from controller.storage import Storage
from tests.support.disk_writes import storage_thread, written_by
from tests.support.security import CP_ID, PASSWORD, captured_log, charger
from tests.support.wait import until

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


class Boom(Exception):
    """A call failure as the adapter's CALL_FAILURES would raise."""


async def test_pending_events_survive_a_restart_in_order_and_bounded(tmp_path: Path) -> None:
    storage = await Storage.open(tmp_path)
    try:
        events = SecurityEvents(storage, lambda: NOW)
        events.record(SecurityEvent.RESET_OR_REBOOT, "Soft reset requested by the CSMS")
        for n in range(MAX_PENDING):
            events.record(SecurityEvent.FAILED_TO_AUTHENTICATE, f"attempt {n}")
        await events.flush()
        again = SecurityEvents(storage, lambda: NOW)
        await again.restore()
    finally:
        await storage.close()
    pending = again.pending
    assert len(pending) == MAX_PENDING  # the oldest (the reset) made room
    assert pending[0] == {
        "type": "FailedToAuthenticateAtCentralSystem",
        "timestamp": "2026-11-23T12:00:00.000Z",
        "techInfo": "attempt 0",
    }
    assert pending[-1]["techInfo"] == f"attempt {MAX_PENDING - 1}"


async def test_drain_sends_in_order_drops_a_refused_event_and_keeps_one_cut_off(
    tmp_path: Path,
) -> None:
    storage = await Storage.open(tmp_path)
    try:
        events = SecurityEvents(storage, lambda: NOW)
        events.record(SecurityEvent.INVALID_CSMS_CERTIFICATE, "unknown issuer")
        events.record(SecurityEvent.RECONFIGURATION, "SecurityProfile now 2")
        events.record(SecurityEvent.RESET_OR_REBOOT)
        sent: list[str] = []
        hang = asyncio.Event()

        async def send(event: Mapping[str, str]) -> None:
            sent.append(event["type"])
            if event["type"] == "ReconfigurationOfSecurityParameters":
                raise Boom("NotImplemented")
            if event["type"] == "ResetOrReboot":
                await hang.wait()  # the link closes while it is being sent

        task = asyncio.create_task(events.drain(send, (Boom,)))
        await until(lambda: len(sent) >= 3, 2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await events.flush()
    finally:
        await storage.close()
    assert sent == [
        "InvalidCentralSystemCertificate",
        "ReconfigurationOfSecurityParameters",
        "ResetOrReboot",
    ]
    assert [e["type"] for e in events.pending] == ["ResetOrReboot"]


async def test_a_refused_charger_reports_it_once_in_then_resets_and_key_changes(
    tmp_path: Path,
) -> None:
    new_key = "00112233445566778899aabb"
    with captured_log() as log_text:
        async with (
            LocalCsms(basic_auth={CP_ID: "not-the-chargers-password"}) as csms,
            charger(csms, tmp_path, {"password": PASSWORD}),
        ):
            await until(lambda: any(a.refused for a in csms.connection_attempts), 5)
            csms.basic_auth = {CP_ID: PASSWORD}
            refused = await csms.wait_for(
                "SecurityEventNotification",
                lambda p: p["type"] == "FailedToAuthenticateAtCentralSystem",
                timeout_s=8,
            )
            assert "HTTP 401" in refused["techInfo"]
            await csms.call(CP_ID, call.ChangeConfiguration(key="AuthorizationKey", value=new_key))
            changed = await csms.wait_for(
                "SecurityEventNotification",
                lambda p: p["type"] == "ReconfigurationOfSecurityParameters",
            )
            assert changed["techInfo"] == "AuthorizationKey changed"
            reset = await csms.call(CP_ID, call.Reset(type="Soft"))
            assert reset.status == "Accepted"
            await csms.wait_for(
                "SecurityEventNotification", lambda p: p["type"] == "ResetOrReboot", timeout_s=3
            )
            frames = "".join(f.text for f in csms.raw_received)
    text = log_text.getvalue()
    assert new_key not in frames  # nothing the charger sent carries the key
    assert new_key not in text and PASSWORD not in text
    told = [line for line in text.splitlines() if "refused our credentials (HTTP 401)" in line]
    link_lines = [line for line in told if "SecurityEventNotification" not in line]
    # one WARNING per refused attempt, from the link; the rest is the event going out
    assert len(link_lines) == sum(a.refused for a in csms.connection_attempts) >= 1
    assert all(" WARNING controller.ocppj.link_loop: " in line for line in link_lines)


async def test_one_security_event_appends_one_row_and_never_rewrites_the_history(
    tmp_path: Path,
) -> None:
    """SD-card wear (issue 12 §6): with a full history (about 150 kB), one more event costs
    a row's write, not the history's; a CSMS refusing us once a minute would otherwise
    have the charger write some 200 MB a day."""
    storage = await Storage.open(tmp_path)
    try:
        events = SecurityEvents(storage, lambda: NOW)
        for n in range(MAX_HISTORY):
            events.record(SecurityEvent.FAILED_TO_AUTHENTICATE, f"HTTP 401, attempt {n}")
        await events.flush()
        tid = await storage_thread(storage)
        before = written_by(tid)
        events.record(SecurityEvent.RESET_OR_REBOOT, "Soft reset requested by the CSMS")
        await events.flush()
        written = written_by(tid) - before
        again = SecurityEvents(storage, lambda: NOW)
        await again.restore()
    finally:
        await storage.close()
    assert written < 16_000, f"one event wrote {written} bytes"
    assert len(again.history()) == MAX_HISTORY  # the oldest made room
    assert again.history()[-1]["techInfo"] == "Soft reset requested by the CSMS"
    assert again.history()[0]["techInfo"] == "HTTP 401, attempt 1"
    assert len(again.pending) == MAX_PENDING


async def test_events_stored_the_earlier_way_are_taken_over(tmp_path: Path) -> None:
    """A state directory from before the table: its two JSON lists become rows, once."""
    old = {"type": "ResetOrReboot", "timestamp": "2026-11-22T10:00:00.000Z"}
    waiting = {
        "type": "FailedToAuthenticateAtCentralSystem",
        "timestamp": "2026-11-22T11:00:00.000Z",
    }
    storage = await Storage.open(tmp_path)
    try:
        await storage.save_setting(NAMESPACE, HISTORY_KEY, json.dumps([old, waiting]))
        await storage.save_setting(NAMESPACE, PENDING_KEY, json.dumps([waiting]))
        events = SecurityEvents(storage, lambda: NOW)
        await events.restore()
        again = SecurityEvents(storage, lambda: NOW)
        await again.restore()
        leftover = await storage.load_settings(NAMESPACE)
    finally:
        await storage.close()
    assert again.history() == [old, waiting]
    assert again.pending == [waiting]
    assert leftover == {}
