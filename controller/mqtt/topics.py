"""The topic names of one charger: state under ``<prefix>/connector/<n>/``, commands under
``<prefix>/connector/<n>/set/``, and Home Assistant's discovery topics. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from controller.config_keys import ENERGY_THRESHOLD_KEYS

#: What the connector topics carry, by topic suffix (docs/mqtt.md lists the payloads).
STATE_KEYS = (
    "status",
    "fault",
    "enabled",
    "power_w",
    "current_l1_a",
    "current_l2_a",
    "current_l3_a",
    "session_energy_wh",
    "energy_total_wh",
    "limit_a",
    "limited_by",
    "user_limit_a",
    "mode",
    "surplus_w",
    *ENERGY_THRESHOLD_KEYS,
)
#: The charger's energy topics (``<prefix>/energy/<key>``; local energy management only).
ENERGY_KEYS = ("grid_power_w", "grid_current_l1_a", "grid_current_l2_a", "grid_current_l3_a")
#: The commands a connector takes: ``<prefix>/connector/<n>/set/<command>``.
COMMANDS = ("current_limit", "enabled", "mode", *ENERGY_THRESHOLD_KEYS)

ONLINE = "online"
OFFLINE = "offline"


def default_prefix(chargepoint_id: str) -> str:
    """``picharge/<id>``; an id may hold characters MQTT reserves (+ #), not in a topic."""
    return "picharge/" + re.sub(r"[+#\s]", "_", chargepoint_id)


def node_id(chargepoint_id: str) -> str:
    """The charger's id as Home Assistant wants a node id: [a-zA-Z0-9_-] only."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", chargepoint_id)


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic of one charger under ``prefix``."""

    prefix: str

    @property
    def availability(self) -> str:
        """``online`` while connected, ``offline`` (the last will) otherwise; retained."""
        return f"{self.prefix}/availability"

    @property
    def csms_link(self) -> str:
        return f"{self.prefix}/csms_link"

    def energy(self, key: str) -> str:
        """The house's grid reading (:data:`ENERGY_KEYS`)."""
        return f"{self.prefix}/energy/{key}"

    @property
    def grid(self) -> str:
        """Where grid readings come by default (``[grid_meter] source = "mqtt"``)."""
        return f"{self.prefix}/grid/set"

    def state(self, connector_id: int, key: str) -> str:
        return f"{self.prefix}/connector/{connector_id}/{key}"

    def command(self, connector_id: int, command: str) -> str:
        return f"{self.prefix}/connector/{connector_id}/set/{command}"

    @property
    def command_filter(self) -> str:
        """The one subscription for every command of every connector."""
        return f"{self.prefix}/connector/+/set/+"

    def parse_command(self, topic: str) -> tuple[int, str] | None:
        """(connector id, command) of a command topic; None for anything else."""
        head = f"{self.prefix}/connector/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head) :].split("/")
        if len(parts) != 3 or parts[1] != "set" or parts[2] not in COMMANDS:
            return None
        if not parts[0].isdigit() or len(parts[0]) > 3:
            return None
        return int(parts[0]), parts[2]
