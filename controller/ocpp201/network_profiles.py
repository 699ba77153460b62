"""Network connection profiles (B09, B10): SetNetworkProfile's slots and which one is used.

The CSMS stores a NetworkConnectionProfile in a slot (:data:`SLOTS`); the answer is
Accepted once it is stored, Rejected when it is unusable by this charger, Failed when the
state database refused it (B09.FR.01-03). Rejected, with the reason in the log and in
``statusInfo``, are: a slot outside :data:`SLOTS`; the slot the current connection uses; an
``ocppVersion`` other than OCPP20 or a transport other than JSON (this adapter speaks
2.0.1 over JSON only: switching the OCPP version stays the installer's ``[ocpp] version``);
a URL that is not ``ws://`` or ``wss://``, or ``ws://`` with security profile 2 or 3 (TLS);
and a securityProfile below the current SecurityCtrlr.SecurityProfile (B09.FR.02: never a
downgrade). ``messageTimeout``, ``ocppInterface``, ``vpn`` and ``apn`` are stored as sent
but not acted on (one network interface, no VPN or modem under the controller's control).

What is honoured: at the next boot, the first slot of
OCPPCommCtrlr.NetworkConfigurationPriority holding a profile gives the CSMS URL (the
charger's identity appended, as for ``[ocpp] url``) and the security profile (raised to it,
never lowered below the configuration); with no such slot the ``[ocpp]`` URL is used. A
change of NetworkConfigurationPriority answers RebootRequired. When the profile's URL has
not registered within OCPPCommCtrlr.NetworkProfileConnectionAttempts tries, the link falls
back to the ``[ocpp]`` URL for the rest of the run (B10's fallback, simplified: not to the
next slot of the priority; the raised security profile stays). Loop thread only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.storage import Storage

log = logging.getLogger(__name__)

#: The state database's settings namespace (key: the slot number).
NAMESPACE = "ocpp201.network"
#: The slots a profile may be stored in.
SLOTS = range(1, 5)


@dataclass(frozen=True, slots=True)
class NetworkProfile:
    """The parts of a NetworkConnectionProfile this charger acts on, and all it was sent."""

    url: str
    security_profile: int
    wire: Mapping[str, Any]  # the connectionData as sent (snake_case keys)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> NetworkProfile:
        return cls(str(data["ocpp_csms_url"]), int(data["security_profile"]), dict(data))


def problem(data: Mapping[str, Any], current_security_profile: int) -> str | None:
    """Why ``data`` (a connectionData, snake_case) cannot be used by this charger, or None."""
    url = str(data["ocpp_csms_url"])
    profile = int(data["security_profile"])
    if data["ocpp_version"] != "OCPP20":
        return f"ocppVersion {data['ocpp_version']}: this link speaks OCPP 2.0.1 only"
    if data["ocpp_transport"] != "JSON":
        return f"ocppTransport {data['ocpp_transport']}: only JSON"
    if not url.startswith(("ws://", "wss://")):
        return "ocppCsmsUrl must be ws:// or wss://"
    if profile not in (0, 1, 2, 3):
        return f"securityProfile {profile} is no OCPP security profile"
    if profile >= 2 and not url.startswith("wss://"):
        return f"securityProfile {profile} needs a wss:// URL"
    if profile < current_security_profile:
        return f"securityProfile {profile} is below the current {current_security_profile}"
    return None


class NetworkProfiles:
    """The stored profiles by slot, and the slot this run connected with (None: ``[ocpp]``)."""

    def __init__(self, storage: Storage, stored: Mapping[int, NetworkProfile]) -> None:
        self._storage = storage
        self._slots = dict(stored)
        self.active_slot: int | None = None

    @classmethod
    async def load(cls, storage: Storage) -> NetworkProfiles:
        """The stored profiles; an unreadable one is logged and left out."""
        stored: dict[int, NetworkProfile] = {}
        for key, text in (await storage.load_settings(NAMESPACE)).items():
            try:
                stored[int(key)] = NetworkProfile.from_wire(json.loads(text))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring stored network profile of slot %s: %s", key, exc)
        return cls(storage, stored)

    def get(self, slot: int) -> NetworkProfile | None:
        return self._slots.get(slot)

    def slot_problem(self, slot: int) -> str | None:
        """Why a profile may not be stored in ``slot`` now, or None."""
        if slot not in SLOTS:
            return f"configurationSlot {slot} is not one of {SLOTS.start}..{SLOTS.stop - 1}"
        if slot == self.active_slot:
            return f"configurationSlot {slot} is the connection in use"
        return None

    async def store(self, slot: int, data: Mapping[str, Any]) -> None:
        """Keep ``data`` in ``slot``; durable when this returns (StorageError otherwise)."""
        profile = NetworkProfile.from_wire(data)
        await self._storage.save_setting(NAMESPACE, str(slot), json.dumps(dict(data)))
        self._slots[slot] = profile
        log.info("network profile stored in slot %d: %s", slot, profile.url)

    def preferred(self, priority: list[str]) -> tuple[int, NetworkProfile] | None:
        """The first slot of NetworkConfigurationPriority holding a profile, or None."""
        for item in priority:
            profile = self._slots.get(int(item))
            if profile is not None:
                return int(item), profile
        return None

    def priority_problem(self, value: str) -> str | None:
        """Why ``value`` cannot be NetworkConfigurationPriority: each slot must hold a
        profile (the SetVariables check)."""
        for item in (i for i in value.split(",") if i):
            if not item.isdigit() or int(item) not in self._slots:
                return f"slot {item} holds no network profile"
        return None
