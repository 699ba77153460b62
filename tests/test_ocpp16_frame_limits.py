"""What the charge point advertises it takes, it takes in one frame.

The incoming frame limit (``LinkTiming.max_frame_bytes``; websockets closes the link with
1009 beyond it) must hold the largest message of every kind whose size the charger
advertises in its configuration keys, or a CSMS that believes the advertisement loses the
link each time it sends one. Each message below is the largest of its kind: every maximum
read from the charger's own GetConfiguration answer, every string at its schema's maximum
length, and written the way Python's ``json.dumps`` writes it (a space after ``,`` and
``:``). Each must be answered on the same connection.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from ocpp.v16 import call

from controller.csms.link import LinkTiming
from tests.support.ocpp16_adapter import CP_ID, AdapterRig, MakeRig

#: The longest unique id OCPP-J allows.
LONGEST_ID = "u" * 36
EXPIRY = "2030-12-31T23:59:59.999000+00:00"


async def answer(rig: AdapterRig, frame: str) -> list[Any]:
    """Send ``frame`` (a CALL with :data:`LONGEST_ID`) raw; its CALLRESULT or CALLERROR."""
    after = len(rig.csms.raw_received)
    await rig.csms.send_raw(CP_ID, frame)
    text = await rig.csms.wait_for_raw(
        CP_ID, lambda t: t.startswith(("[3,", "[4,")) and LONGEST_ID in t, after=after
    )
    reply: list[Any] = json.loads(text)
    return reply


async def advertised(rig: AdapterRig, key: str) -> int:
    conf = await rig.csms.call(CP_ID, call.GetConfiguration(key=[key]))
    (entry,) = conf.configuration_key
    return int(entry["value"])


def send_local_list(entries: int) -> dict[str, Any]:
    """A full update of ``entries`` cards, each with expiry and parent (idTag 20)."""
    return {
        "listVersion": 2_147_483_647,
        "updateType": "Full",
        "localAuthorizationList": [
            {
                "idTag": f"TAG{n:017d}",
                "idTagInfo": {
                    "status": "ConcurrentTx",
                    "expiryDate": EXPIRY,
                    "parentIdTag": f"PARENT{n:014d}",
                },
            }
            for n in range(entries)
        ],
    }


def set_charging_profile(periods: int) -> dict[str, Any]:
    """A TxDefaultProfile of ``periods`` periods with every optional field set."""
    return {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 2_147_483_647,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "validFrom": "2020-01-01T00:00:00.000000+00:00",
            "validTo": EXPIRY,
            "chargingSchedule": {
                "duration": 2_147_483_647,
                "startSchedule": "2020-01-01T00:00:00.000000+00:00",
                "chargingRateUnit": "A",
                "minChargingRate": 6.1,
                "chargingSchedulePeriod": [
                    {"startPeriod": 60 * n, "limit": 31.9, "numberPhases": 3}
                    for n in range(periods)
                ],
            },
        },
    }


async def largest(rig: AdapterRig, kind: str) -> tuple[str, dict[str, Any]]:
    """The largest message of ``kind`` the charger says it takes, as (action, payload)."""
    if kind == "SendLocalList":
        return kind, send_local_list(await advertised(rig, "SendLocalListMaxLength"))
    if kind == "SetChargingProfile":
        return kind, set_charging_profile(await advertised(rig, "ChargingScheduleMaxPeriods"))
    if kind == "GetConfiguration":
        keys = await advertised(rig, "GetConfigurationMaxKeys")
        return kind, {"key": [f"{n:050d}" for n in range(keys)]}  # keys of 50 characters
    if kind == "CertificateSigned":
        size = await advertised(rig, "CertificateSignedMaxChainSize")
        return kind, {"certificateChain": "A" * size}
    assert kind == "ChangeConfiguration"  # the largest value a key may be given
    return kind, {"key": "k" * 50, "value": "v" * 500}


KINDS = [
    "SendLocalList",
    "SetChargingProfile",
    "GetConfiguration",
    "CertificateSigned",
    "ChangeConfiguration",
]


@pytest.mark.parametrize("kind", KINDS)
async def test_the_largest_advertised_message_is_answered_on_the_same_link(
    make_rig: MakeRig, kind: str
) -> None:
    rig = await make_rig()
    await rig.registered()
    action, payload = await largest(rig, kind)
    frame = json.dumps([2, LONGEST_ID, action, payload])
    assert len(frame.encode()) <= LinkTiming().max_frame_bytes
    reply = await answer(rig, frame)
    assert reply[0] == 3, reply  # a CALLRESULT: judged on its content, not its size
    assert len(rig.csms.connection_attempts) == 1


async def test_the_advertised_local_list_fits_and_is_kept(make_rig: MakeRig) -> None:
    """SendLocalListMaxLength entries with expiry and parent are over 64 KiB (78 kB written
    compactly): the limit once dropped the link for this message."""
    rig = await make_rig()
    await rig.registered()
    _, payload = await largest(rig, "SendLocalList")
    frame = json.dumps([2, LONGEST_ID, "SendLocalList", payload], separators=(",", ":"))
    assert len(frame.encode()) > 64 * 1024
    assert await answer(rig, frame) == [3, LONGEST_ID, {"status": "Accepted"}]
    conf = await rig.csms.call(CP_ID, call.GetLocalListVersion())
    assert conf.list_version == 2_147_483_647
    assert len(rig.csms.connection_attempts) == 1
